//! Everything the client sends is a request Google's discovery document defines. One test
//! drives every client call against one fake and re-validates each recorded request with the
//! fake's validator (every other test in this suite ends the same way); the others show the
//! validator is not a rubber stamp: an invented query parameter, an invented body field and
//! an unknown path are refused as Google refuses them.

mod common;

use classroom::model::{GradeUpdate, NewAddOnAttachment, NewCourseWork, PubSubTopic, UserRef};
use classroom::{AddOnToken, CourseId, CourseQuery, Credentials, scopes};
use common::{Harness, assert_all_valid, http};
use std::collections::BTreeSet;
use testkit::classroom::RequestInvalid;
use url::Url;

#[tokio::test]
async fn every_client_call_is_a_request_the_discovery_document_defines() {
    let h = Harness::start().await;
    let all: Vec<&str> = scopes::ROSTER
        .iter()
        .chain(scopes::COURSEWORK)
        .chain(scopes::ADDONS)
        .chain(scopes::PUSH)
        .copied()
        .collect();
    let creds = h.teacher(&all).await;
    let course = CourseId::new(h.fake.algebra_course_id());
    let api = &h.api;

    let query = CourseQuery {
        teacher_id: Some(UserRef::Me),
        student_id: None,
        course_states: vec![classroom::model::CourseState::Active],
        page_size: Some(1),
    };
    api.list_courses(&creds, &query).await.unwrap();
    api.list_students(&creds, &course, Some(3)).await.unwrap();
    api.list_teachers(&creds, &course, Some(1)).await.unwrap();
    let work = api
        .create_course_work(
            &creds,
            &course,
            &NewCourseWork {
                title: "Tour".into(),
                description: Some("every call once".into()),
                max_points: 10,
            },
        )
        .await
        .unwrap();
    api.get_course_work(&creds, &course, &work.id)
        .await
        .unwrap();
    let subs = api
        .list_submissions(&creds, &course, &work.id, Some(&UserRef::Me))
        .await
        .unwrap();
    assert!(
        subs.is_empty(),
        "the teacher has no submission of their own"
    );
    let subs = api
        .list_submissions(&creds, &course, &work.id, None)
        .await
        .unwrap();
    api.patch_grades(
        &creds,
        &course,
        &work.id,
        &subs[0].id,
        GradeUpdate::both(9.5),
    )
    .await
    .unwrap();
    api.return_submission(&creds, &course, &work.id, &subs[0].id)
        .await
        .unwrap();
    let token = AddOnToken::new(h.fake.issue_add_on_token(course.as_str(), work.id.as_str()));
    api.get_add_on_context(&creds, &course, &work.id, Some(&token), None)
        .await
        .unwrap();
    let base = Url::parse("https://lmsbridge.example/addon/").unwrap();
    let attachment = api
        .create_add_on_attachment(
            &creds,
            &course,
            &work.id,
            Some(&token),
            &NewAddOnAttachment {
                title: "Tour attachment".into(),
                teacher_view_uri: base.join("t").unwrap(),
                student_view_uri: base.join("s").unwrap(),
                student_work_review_uri: Some(base.join("r").unwrap()),
                max_points: Some(10),
            },
        )
        .await
        .unwrap();
    api.get_add_on_context(&creds, &course, &work.id, None, Some(&attachment.id))
        .await
        .unwrap();
    api.patch_add_on_points(&creds, &course, &work.id, &attachment.id, &subs[1].id, 4.0)
        .await
        .unwrap();
    let topic = PubSubTopic::new("projects/p/topics/t").unwrap();
    api.register_roster_changes(&creds, &course, &topic)
        .await
        .unwrap();

    let recorded = h.recorded();
    assert!(recorded.iter().all(|r| r.status == 200), "{recorded:#?}");
    let methods: BTreeSet<_> = recorded
        .iter()
        .filter_map(|r| r.method_id.clone())
        .collect();
    let expected: BTreeSet<String> = [
        "classroom.courses.list",
        "classroom.courses.students.list",
        "classroom.courses.teachers.list",
        "classroom.courses.courseWork.create",
        "classroom.courses.courseWork.get",
        "classroom.courses.courseWork.studentSubmissions.list",
        "classroom.courses.courseWork.studentSubmissions.patch",
        "classroom.courses.courseWork.studentSubmissions.return",
        "classroom.courses.courseWork.getAddOnContext",
        "classroom.courses.courseWork.addOnAttachments.create",
        "classroom.courses.courseWork.addOnAttachments.studentSubmissions.patch",
        "classroom.registrations.create",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(methods, expected);
    // The add-on token is a bearer secret: the record does not keep it.
    assert!(
        recorded
            .iter()
            .flat_map(|r| &r.query)
            .all(|(_, v)| v != token.secret())
    );
    h.finish();
}

/// A bearer token of the teacher, for requests written by hand.
async fn raw_token(h: &Harness, scopes: &[&str]) -> String {
    let Credentials::Offline(refresh) = h.teacher(scopes).await else {
        unreachable!()
    };
    h.api
        .tokens()
        .access_token(&refresh)
        .await
        .unwrap()
        .token
        .secret()
        .to_owned()
}

#[tokio::test]
async fn an_invented_query_parameter_is_refused_like_google_does() {
    let h = Harness::start().await;
    let token = raw_token(&h, scopes::ROSTER).await;
    let mut url = h.fake.urls().api_base.join("v1/courses").unwrap();
    url.query_pairs_mut()
        .append_pair("teacherId", "me")
        .append_pair("includeArchivedStudents", "true");
    let resp = http().get(url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(body["error"]["code"], 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown name \"includeArchivedStudents\"")
    );

    // The record says so, and the validator judges the recorded request the same way.
    let recorded = h.recorded();
    let last = recorded.last().unwrap();
    assert_eq!(last.method_id.as_deref(), Some("classroom.courses.list"));
    assert!(last.invalid.is_some());
    let again = h
        .fake
        .discovery()
        .validate(&last.method, &last.path, &last.query, b"")
        .unwrap_err();
    assert_eq!(
        again,
        RequestInvalid::UnknownQueryParameter("includeArchivedStudents".into())
    );
    // Everything else (the consent flow aside, only this) was valid.
    assert_all_valid(&h.fake, &recorded[..recorded.len() - 1]);
}

#[tokio::test]
async fn an_invented_body_field_and_an_unknown_path_are_refused() {
    let h = Harness::start().await;
    let token = raw_token(&h, scopes::COURSEWORK).await;
    let base = h.fake.urls().api_base;
    let course = h.fake.algebra_course_id();
    let url = base
        .join(&format!("v1/courses/{course}/courseWork"))
        .unwrap();
    let resp = http()
        .post(url.clone())
        .bearer_auth(&token)
        .json(&serde_json::json!({"title": "T", "workType": "ASSIGNMENT", "points": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown name \"points\"")
    );
    // Nothing was created by the refused request; the same body without the field works.
    let before = h.fake.submissions("").len();
    let resp = http()
        .post(url)
        .bearer_auth(&token)
        .json(&serde_json::json!({"title": "T", "workType": "ASSIGNMENT", "maxPoints": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(before, 0);

    let resp = http()
        .get(
            base.join(&format!("v1/courses/{course}/gradebook"))
                .unwrap(),
        )
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["status"], "NOT_FOUND");

    let recorded = h.recorded();
    let invalid: Vec<_> = recorded.iter().filter(|r| r.invalid.is_some()).collect();
    assert_eq!(invalid.len(), 2);
    assert_eq!(invalid[1].method_id, None);
}

#[tokio::test]
async fn a_page_token_only_continues_the_request_it_came_from() {
    let h = Harness::start().await;
    let token = raw_token(&h, scopes::ROSTER).await;
    let base = h.fake.urls().api_base;
    let page = |course: &str, page_token: Option<&str>| {
        let mut url = base.join(&format!("v1/courses/{course}/students")).unwrap();
        url.query_pairs_mut().append_pair("pageSize", "2");
        if let Some(t) = page_token {
            url.query_pairs_mut().append_pair("pageToken", t);
        }
        http().get(url).bearer_auth(&token).send()
    };
    let first: serde_json::Value = page(&h.fake.algebra_course_id(), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let next = first["nextPageToken"].as_str().unwrap().to_owned();
    let elsewhere = page("300000000002", Some(&next)).await.unwrap();
    assert_eq!(elsewhere.status(), 400);
    let same = page(&h.fake.algebra_course_id(), Some(&next))
        .await
        .unwrap();
    assert_eq!(same.status(), 200);
    h.finish();
}
