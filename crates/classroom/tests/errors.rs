//! Google's failure answers through the client, over loopback: 429 with `Retry-After` in
//! both forms, 500 and 503, an expired access token refreshed exactly once, one refresh for
//! many concurrent callers, and Classroom's `@Type` refusals.

mod common;

use classroom::model::NewCourseWork;
use classroom::{
    ApiError, ClassroomClient, CourseId, CourseWorkId, Credentials, RpcStatus, scopes,
};
use common::{Harness, http};
use std::time::Duration;
use testkit::classroom::{ClassroomFault, RetryAfter};

#[tokio::test]
async fn resource_exhausted_carries_retry_after_in_either_form() {
    let h = Harness::start().await;
    let creds = h.teacher(scopes::ROSTER).await;
    let course = CourseId::new(h.fake.algebra_course_id());
    h.fake.faults().fail_next(
        1,
        ClassroomFault::ResourceExhausted {
            retry_after: Some(RetryAfter::Seconds(7)),
        },
    );
    let err = h
        .api
        .list_students(&creds, &course, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::RateLimited { .. }), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.is_retryable());
    assert_eq!(err.code(), "rate_limited");

    h.fake.faults().fail_next(
        1,
        ClassroomFault::ResourceExhausted {
            retry_after: Some(RetryAfter::HttpDate(Duration::from_secs(30))),
        },
    );
    let err = h
        .api
        .list_students(&creds, &course, None)
        .await
        .unwrap_err();
    let wait = err.retry_after().unwrap();
    assert!(
        wait >= Duration::from_secs(27) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );

    h.fake
        .faults()
        .fail_next(1, ClassroomFault::ResourceExhausted { retry_after: None });
    let err = h
        .api
        .list_students(&creds, &course, None)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ApiError::RateLimited {
            retry_after: None,
            ..
        }
    ));

    // The throttle passes; the same call works.
    assert_eq!(
        h.api
            .list_students(&creds, &course, None)
            .await
            .unwrap()
            .len(),
        7
    );
    h.finish();
}

#[tokio::test]
async fn server_failures_are_transient() {
    let h = Harness::start().await;
    let creds = h.teacher(scopes::ROSTER).await;
    let course = CourseId::new(h.fake.algebra_course_id());
    h.fake.faults().fail_next(1, ClassroomFault::Internal);
    h.fake.faults().fail_next(1, ClassroomFault::Unavailable);
    for status in [500, 503] {
        let err = h
            .api
            .list_teachers(&creds, &course, None)
            .await
            .unwrap_err();
        match &err {
            ApiError::Transient { http_status, .. } => assert_eq!(*http_status, status),
            other => panic!("{other:?}"),
        }
        assert!(err.is_retryable());
    }
    assert_eq!(
        h.api
            .list_teachers(&creds, &course, None)
            .await
            .unwrap()
            .len(),
        2
    );
    h.finish();
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_once() {
    let h = Harness::start().await;
    let creds = h.teacher(scopes::ROSTER).await;
    let course = CourseId::new(h.fake.algebra_course_id());
    h.api.list_teachers(&creds, &course, None).await.unwrap();
    assert_eq!(h.api.tokens().refresh_count(), 1);
    h.api.list_teachers(&creds, &course, None).await.unwrap();
    assert_eq!(
        h.api.tokens().refresh_count(),
        1,
        "the cached token is reused"
    );

    h.fake.faults().expire_access_tokens();
    let teachers = h.api.list_teachers(&creds, &course, None).await.unwrap();
    assert_eq!(teachers.len(), 2);
    assert_eq!(h.api.tokens().refresh_count(), 2);
    assert_eq!(h.fake.stats().api_unauthorized, 1);

    // A token we cannot refresh ends the call at the first 401.
    let Credentials::Offline(refresh) = &creds else {
        unreachable!()
    };
    let access = h.api.tokens().access_token(refresh).await.unwrap().token;
    h.fake.faults().expire_access_tokens();
    let err = h
        .api
        .list_teachers(&Credentials::Bearer(access), &course, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::TokenExpired { .. }), "{err:?}");
    assert_eq!(h.api.tokens().refresh_count(), 2);
    h.finish();
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh() {
    let h = Harness::start().await;
    let creds = h.teacher(scopes::ROSTER).await;
    let course = CourseId::new(h.fake.algebra_course_id());
    let before = h.fake.stats().refreshes;
    let client = ClassroomClient::new(http(), h.oauth.clone());
    let calls = (0..8).map(|_| {
        let (client, creds, course) = (client.clone(), creds.clone(), course.clone());
        tokio::spawn(async move { client.list_teachers(&creds, &course, None).await })
    });
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().len(), 2);
    }
    assert_eq!(h.fake.stats().refreshes - before, 1);
    assert_eq!(client.tokens().refresh_count(), 1);
    h.finish();
}

#[tokio::test]
async fn classroom_refusals_keep_their_type() {
    let h = Harness::start().await;
    let creds = h.teacher(scopes::COURSEWORK).await;
    let course = CourseId::new(h.fake.algebra_course_id());
    let fault = |code: u16, status: &str, message: &str| ClassroomFault::Error {
        http_status: code,
        status: status.to_owned(),
        message: message.to_owned(),
    };

    h.fake.faults().fail_next(
        1,
        fault(
            403,
            "PERMISSION_DENIED",
            "@ClassroomApiDisabled The user is not permitted to access the Classroom API.",
        ),
    );
    let err = h
        .api
        .get_course_work(
            &creds,
            &course,
            &CourseWorkId::new(h.fake.foreign_course_work_id()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::PermissionDenied { .. }), "{err:?}");
    assert_eq!(err.error_type(), Some("ClassroomApiDisabled"));

    h.fake.faults().fail_next(
        1,
        fault(
            403,
            "PERMISSION_DENIED",
            "Access Not Configured. Classroom API has not been used in project 1234 before or it is disabled.",
        ),
    );
    let err = h
        .api
        .get_course_work(
            &creds,
            &course,
            &CourseWorkId::new(h.fake.foreign_course_work_id()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::AdminApprovalRequired { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("administrator must allow this app")
    );

    // Real refusals of the fake: an archived course, an unknown courseWork.
    let err = h
        .api
        .create_course_work(
            &creds,
            &CourseId::new("300000000002"),
            &NewCourseWork {
                title: "Late quiz".into(),
                description: None,
                max_points: 5,
            },
        )
        .await
        .unwrap_err();
    match &err {
        ApiError::Rejected {
            status, error_type, ..
        } => {
            assert_eq!(*status, RpcStatus::FailedPrecondition);
            assert_eq!(error_type.as_deref(), Some("CourseNotModifiable"));
        }
        other => panic!("{other:?}"),
    }
    let err = h
        .api
        .get_course_work(&creds, &course, &CourseWorkId::new("499999999999"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ApiError::Rejected {
                status: RpcStatus::NotFound,
                http_status: 404,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    h.finish();
}

#[tokio::test]
async fn an_unreachable_google_is_a_transport_error() {
    let h = Harness::start().await;
    let creds = h.teacher(scopes::ROSTER).await;
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut endpoints = common::endpoints(&h.fake);
    endpoints.api_base = url::Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    let registration = h.fake.client();
    let oauth = classroom::OAuthClient::new(
        http(),
        classroom::OAuthConfig {
            client_id: classroom::ClientId::new(registration.client_id.clone()),
            client_secret: classroom::ClientSecret::new(registration.client_secret.clone()),
            redirect_uri: registration.redirect_uris[0].clone(),
            endpoints,
        },
    );
    let client = ClassroomClient::new(http(), oauth);
    let err = client
        .list_students(&creds, &CourseId::new(h.fake.algebra_course_id()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Transport { .. }), "{err:?}");
    assert!(err.is_retryable());
    h.finish();
}
