//! The Classroom adapter against the simulated Classroom: a roster read in small pages walks
//! every `nextPageToken` of the students, then the teachers, keeping `pageSize`; a score is
//! scaled and patched; a grant Google revoked is reported once and the score refused as a
//! configuration problem. Every request must be valid against the discovery document.

use adapters::{
    ClassroomAdapter, ClassroomGrants, CourseGrant, CourseWorkGrant, GradeField, course_roster_url,
};
use async_trait::async_trait;
use classroom::oauth::AuthorizationRequest;
use classroom::{
    ClassroomClient, ClientId, ClientSecret, Credentials, GoogleEndpoints, OAuthClient,
    OAuthConfig, RefreshToken, TokenCache,
};
use domain::{
    ActivityProgress, DeliveryError, GradingProgress, LmsAdapter, PlatformEndpoints, PlatformKind,
    Role, RosterRequest, ScoreDelivery, TargetLocation,
};
use std::sync::{Arc, Mutex};
use testkit::SimulatedClassroom;
use url::Url;

#[derive(Debug)]
struct Grants {
    client: ClassroomClient,
    refresh: RefreshToken,
    course_work: Mutex<Option<String>>,
    revoked: Mutex<Vec<String>>,
}

#[async_trait]
impl ClassroomGrants for Grants {
    async fn course_work_grant(
        &self,
        _: &PlatformEndpoints,
        _: &str,
        course_work_id: &str,
    ) -> Result<CourseWorkGrant, DeliveryError> {
        if self.course_work.lock().unwrap().as_deref() != Some(course_work_id) {
            return Err(DeliveryError::Misconfigured {
                detail: "unknown".into(),
            });
        }
        Ok(CourseWorkGrant {
            grant_id: "grant-1".into(),
            client: self.client.clone(),
            credentials: Credentials::Offline(self.refresh.clone()),
            grade: GradeField::Both,
            return_on_grade: false,
            max_points: 40.0,
        })
    }

    async fn course_grant(
        &self,
        _: &PlatformEndpoints,
        _: &str,
    ) -> Result<CourseGrant, DeliveryError> {
        Ok(CourseGrant {
            grant_id: "grant-1".into(),
            client: self.client.clone(),
            credentials: Credentials::Offline(self.refresh.clone()),
        })
    }

    async fn grant_revoked(&self, _: &PlatformEndpoints, grant_id: &str, _: &str) {
        self.revoked.lock().unwrap().push(grant_id.to_owned());
    }
}

/// Our OAuth client at the fake, and a refresh token the teacher granted it.
async fn connect(fake: &SimulatedClassroom) -> (ClassroomClient, RefreshToken) {
    let urls = fake.urls();
    let registered = fake.client();
    let oauth = OAuthClient::new(
        reqwest::Client::new(),
        OAuthConfig {
            client_id: ClientId::new(registered.client_id.clone()),
            client_secret: ClientSecret::new(registered.client_secret.clone()),
            redirect_uri: registered.redirect_uris[0].clone(),
            endpoints: GoogleEndpoints {
                authorization: urls.authorization,
                token: urls.token,
                revocation: urls.revocation,
                userinfo: urls.userinfo,
                api_base: urls.api_base,
            },
        },
    );
    let mut scopes: Vec<&str> = classroom::scopes::ROSTER.to_vec();
    scopes.extend_from_slice(classroom::scopes::COURSEWORK);
    let pending = oauth.authorization_url(&AuthorizationRequest::new(&scopes));
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_redirects.get(pending.url.clone()).send().await.unwrap();
    let back = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let callback = OAuthClient::parse_callback(&back, &pending.state).unwrap();
    let grant = oauth
        .exchange_code(&callback.code, &pending.verifier)
        .await
        .unwrap();
    let refresh = grant.refresh_token.expect("offline access");
    let client = ClassroomClient::with_token_cache(reqwest::Client::new(), TokenCache::new(oauth));
    (client, refresh)
}

fn platform() -> PlatformEndpoints {
    PlatformEndpoints {
        kind: PlatformKind::GoogleClassroom,
        issuer: "https://accounts.google.com".into(),
        client_id: "client".into(),
        token_url: Url::parse("https://oauth2.googleapis.com/token").unwrap(),
        token_audience: None,
    }
}

#[tokio::test]
async fn rosters_page_by_token_and_grades_land_scaled() {
    let (fake, _server) = SimulatedClassroom::spawn().await.unwrap();
    let (client, refresh) = connect(&fake).await;
    let grants = Arc::new(Grants {
        client: client.clone(),
        refresh: refresh.clone(),
        course_work: Mutex::new(None),
        revoked: Mutex::default(),
    });
    let adapter = ClassroomAdapter::new(grants.clone());
    let algebra = fake.algebra_course_id();

    // Pages of three: students over three pages, then the teachers.
    let mut url = course_roster_url(fake.base_url(), &algebra);
    url.query_pairs_mut().append_pair("pageSize", "3");
    let mut pages = 0;
    let mut members = Vec::new();
    let mut next = Some(url);
    while let Some(u) = next {
        let page = adapter
            .roster_page(&RosterRequest {
                platform: platform(),
                roster_url: u,
                page: None,
            })
            .await
            .unwrap();
        pages += 1;
        assert!(page.members.len() <= 3);
        members.extend(page.members);
        next = page.next;
        assert!(pages < 20, "paging ends");
    }
    let students = fake.students();
    assert_eq!(
        members
            .iter()
            .filter(|m| m.roles == [Role::Learner])
            .count(),
        students.len()
    );
    assert_eq!(
        members
            .iter()
            .filter(|m| m.roles == [Role::Instructor])
            .count(),
        2
    );
    assert!(pages >= 4, "{pages} pages");
    assert!(
        members.iter().all(|m| m.email.is_some()),
        "profile.emails granted"
    );
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.query.iter().any(|(k, _)| k == "pageToken"))
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.path.ends_with("/students") || r.path.ends_with("/teachers"))
            .all(|r| r.query.iter().any(|(k, v)| k == "pageSize" && v == "3"))
    );

    // A grade: 3 of 4 on a 40-point assignment is 30, draft and assigned.
    let work = client
        .create_course_work(
            &Credentials::Offline(refresh.clone()),
            &classroom::CourseId::new(algebra.as_str()),
            &classroom::model::NewCourseWork {
                title: "Quiz".into(),
                description: None,
                max_points: 40,
            },
        )
        .await
        .unwrap();
    *grants.course_work.lock().unwrap() = Some(work.id.as_str().to_owned());
    let student = &students[1];
    let delivery = ScoreDelivery {
        platform: platform(),
        target: TargetLocation::ClassroomCourseWork {
            course_id: algebra.clone(),
            course_work_id: work.id.as_str().to_owned(),
        },
        platform_user_id: student.id.clone(),
        score_given: Some(3.0),
        score_maximum: Some(4.0),
        comment: None,
        activity_progress: ActivityProgress::Completed,
        grading_progress: GradingProgress::FullyGraded,
        timestamp_micros: 0,
    };
    let receipt = adapter.send_score(&delivery).await.unwrap();
    assert!(receipt.detail.contains("30"), "{}", receipt.detail);
    let sub = fake
        .submissions(work.id.as_str())
        .into_iter()
        .find(|s| s.user_id == student.id)
        .unwrap();
    assert_eq!(
        (sub.draft_grade, sub.assigned_grade),
        (Some(30.0), Some(30.0))
    );

    // Sent again: the same grade, no harm (the worker resends after a crash).
    adapter.send_score(&delivery).await.unwrap();

    // Revoked at Google: the grant is reported revoked and the score is not retryable.
    reqwest::Client::new()
        .post(fake.urls().revocation)
        .form(&[("token", refresh.secret())])
        .send()
        .await
        .unwrap();
    fake.faults().expire_access_tokens();
    let err = adapter.send_score(&delivery).await.unwrap_err();
    assert!(
        matches!(&err, DeliveryError::Misconfigured { detail } if detail.contains("connect Google Classroom again")),
        "{err:?}"
    );
    assert_eq!(*grants.revoked.lock().unwrap(), vec!["grant-1".to_owned()]);

    for r in fake.requests() {
        assert!(
            r.invalid.is_none(),
            "{} {}: {:?}",
            r.method,
            r.path,
            r.invalid
        );
    }
}
