//! The LTI adapter against the simulated LMS: scores through AGS with token caching and a
//! refresh on 401, rosters through NRPS across pages, and every failure classified.

use adapters::{LtiAdapter, SigningKeySource};
use axum::routing::get;
use domain::*;
use lti::ToolKey;
use std::sync::Arc;
use std::time::Duration;
use testkit::{FaultKind, SimulatedLms, SpawnedLms, ToolRegistration};
use url::Url;

#[derive(Debug)]
struct Key(ToolKey);
impl SigningKeySource for Key {
    fn signing_key(&self) -> Option<ToolKey> {
        Some(self.0.clone())
    }
}

struct Env {
    lms: SimulatedLms,
    _server: SpawnedLms,
    adapter: LtiAdapter,
    platform: PlatformEndpoints,
}

/// The tool's JWKS is served on loopback so the LMS can verify our client assertions.
async fn env(page_size: usize) -> Env {
    let key = ToolKey::generate("adapter-test-key").unwrap();
    let jwks = serde_json::json!({"keys": [key.public_jwk()]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tool = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let router = axum::Router::new().route("/jwks", get(move || async move { axum::Json(jwks) }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let (lms, server) = SimulatedLms::spawn_with(
        ToolRegistration {
            client_id: "adapter-client".into(),
            deployment_id: "d1".into(),
            login_url: tool.join("login").unwrap(),
            launch_url: tool.join("launch").unwrap(),
            jwks_url: tool.join("jwks").unwrap(),
        },
        |mut c| {
            c.page_size = page_size;
            c
        },
    )
    .await
    .unwrap();
    let platform = PlatformEndpoints {
        kind: PlatformKind::Lti,
        issuer: lms.issuer(),
        client_id: "adapter-client".into(),
        token_url: lms.token_url(),
        token_audience: None,
    };
    Env {
        adapter: LtiAdapter::new(reqwest::Client::new(), Arc::new(Key(key))),
        lms,
        _server: server,
        platform,
    }
}

fn score(e: &Env, user: &str, given: f64, ts: i64) -> ScoreDelivery {
    ScoreDelivery {
        platform: e.platform.clone(),
        target: TargetLocation::LtiLineItem(e.lms.line_item_url("1")),
        platform_user_id: user.into(),
        score_given: Some(given),
        score_maximum: Some(100.0),
        comment: Some("ok".into()),
        activity_progress: ActivityProgress::Completed,
        grading_progress: GradingProgress::FullyGraded,
        timestamp_micros: ts,
    }
}

#[tokio::test]
async fn scores_land_reuse_the_token_and_survive_a_revoked_one() {
    let e = env(50).await;
    let t0 = 1_800_000_000_000_000;
    e.adapter
        .send_score(&score(&e, "student-1", 70.0, t0))
        .await
        .unwrap();
    e.adapter
        .send_score(&score(&e, "student-2", 80.0, t0))
        .await
        .unwrap();
    assert_eq!(
        e.lms.stats().token_requests,
        1,
        "one token serves both scores"
    );
    e.lms.faults().expire_tokens_now();
    e.adapter
        .send_score(&score(&e, "student-1", 75.0, t0 + 1))
        .await
        .unwrap();
    assert_eq!(
        e.lms.stats().token_requests,
        2,
        "a 401 gets exactly one fresh token"
    );
    let book = e.lms.gradebook();
    let ada = book.iter().find(|g| g.user_id == "student-1").unwrap();
    assert_eq!(ada.score_given, Some(75.0));
    assert_eq!(ada.timestamp, "2027-01-15T08:00:00.000001Z");
}

#[tokio::test]
async fn platform_answers_are_classified_for_the_retry_policy() {
    let e = env(50).await;
    let t = 1_800_000_000_000_000;
    e.lms.faults().fail_next_scores(
        1,
        FaultKind::TooManyRequests {
            retry_after_secs: 7,
        },
    );
    let err = e
        .adapter
        .send_score(&score(&e, "student-1", 1.0, t))
        .await
        .unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(matches!(err, DeliveryError::RateLimited { .. }), "{err:?}");
    e.lms.faults().fail_next_scores(1, FaultKind::RateLimit403);
    let err = e
        .adapter
        .send_score(&score(&e, "student-1", 1.0, t))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeliveryError::RateLimited { .. }),
        "Canvas's 403 throttle: {err:?}"
    );
    e.lms.faults().fail_next_scores(1, FaultKind::ServerError);
    let err = e
        .adapter
        .send_score(&score(&e, "student-1", 1.0, t))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DeliveryError::Transient {
                status: Some(500),
                ..
            }
        ),
        "{err:?}"
    );
    // A teacher is not gradable: refused for good, with the platform's words.
    let err = e
        .adapter
        .send_score(&score(&e, "teacher-1", 1.0, t))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeliveryError::Rejected { status: 422, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    // A stale timestamp is refused like Moodle does.
    e.adapter
        .send_score(&score(&e, "student-2", 5.0, t + 10))
        .await
        .unwrap();
    let err = e
        .adapter
        .send_score(&score(&e, "student-2", 6.0, t))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeliveryError::Rejected { status: 409, .. }),
        "{err:?}"
    );
    // A platform that cannot be reached is worth retrying.
    let mut gone = score(&e, "student-1", 1.0, t + 20);
    gone.platform.token_url = Url::parse("http://127.0.0.1:9/token").unwrap();
    let err = e.adapter.send_score(&gone).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn roster_pages_follow_link_headers_to_the_end() {
    let e = env(2).await;
    let mut request = RosterRequest {
        platform: e.platform.clone(),
        roster_url: e.lms.memberships_url(),
        page: None,
    };
    let mut members = Vec::new();
    let mut pages = 0;
    loop {
        let page = e.adapter.roster_page(&request).await.unwrap();
        pages += 1;
        members.extend(page.members);
        match page.next {
            Some(next) => request.page = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 2);
    let mut ids: Vec<&str> = members
        .iter()
        .map(|m| m.platform_user_id.as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["student-1", "student-2", "teacher-1"]);
    let grace = members
        .iter()
        .find(|m| m.platform_user_id == "teacher-1")
        .unwrap();
    assert_eq!(grace.roles, [Role::Instructor]);
    assert_eq!(grace.name.as_deref(), Some("Grace Hopper"));
    assert_eq!(grace.status, EnrollmentStatus::Active);
}
