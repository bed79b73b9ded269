//! The LTI adapter's gradebook side against the simulated LMS: line items created, listed
//! across pages with filters, changed without losing what was not changed, deleted; results
//! paged; and Canvas's submission extension on scores to Canvas only.

use adapters::{LtiAdapter, SigningKeySource};
use axum::routing::{get, post};
use domain::*;
use lti::ToolKey;
use std::sync::{Arc, Mutex};
use testkit::{SimulatedLms, SpawnedLms, ToolRegistration};
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

async fn env(page_size: usize) -> Env {
    let key = ToolKey::generate("gradebook-test-key").unwrap();
    let jwks = serde_json::json!({"keys": [key.public_jwk()]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tool = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let router = axum::Router::new().route("/jwks", get(move || async move { axum::Json(jwks) }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let (lms, server) = SimulatedLms::spawn_with(
        ToolRegistration {
            client_id: "gradebook-client".into(),
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
        client_id: "gradebook-client".into(),
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

fn fields(label: &str, tag: Option<&str>) -> LineItemFields {
    LineItemFields {
        label: label.into(),
        score_maximum: 20.0,
        resource_id: Some(format!("product-{label}")),
        resource_link_id: Some("resource-2".into()),
        tag: tag.map(str::to_owned),
        start_date_time: None,
        end_date_time: Some(time::macros::datetime!(2027-01-31 17:00 UTC)),
        grades_released: None,
    }
}

#[tokio::test]
async fn line_items_are_created_listed_changed_and_deleted() {
    let e = env(2).await;
    let mut created = Vec::new();
    for (label, tag) in [
        ("Draft", Some("draft")),
        ("Final", Some("final")),
        ("Bonus", None),
    ] {
        let item = e
            .adapter
            .create_line_item(&e.platform, &e.lms.line_items_url(), &fields(label, tag))
            .await
            .unwrap();
        assert_eq!(item.fields, fields(label, tag));
        created.push(item);
    }
    let on_platform = e.lms.line_items();
    assert_eq!(on_platform.len(), 5, "two seeded, three created");
    let draft = on_platform.iter().find(|li| li.label == "Draft").unwrap();
    assert_eq!(draft.url, created[0].location);
    assert_eq!(draft.tag.as_deref(), Some("draft"));
    assert_eq!(draft.resource_link_id.as_deref(), Some("resource-2"));
    assert_eq!(draft.end_date_time.as_deref(), Some("2027-01-31T17:00:00Z"));

    // Five items at two a page: three pages, all read.
    let all = e
        .adapter
        .list_line_items(&LineItemsRequest {
            platform: e.platform.clone(),
            container: e.lms.line_items_url(),
            resource_link_id: None,
            resource_id: None,
            tag: None,
        })
        .await
        .unwrap();
    let labels: Vec<&str> = all.iter().map(|li| li.fields.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "Cell structure quiz",
            "Photosynthesis essay",
            "Draft",
            "Final",
            "Bonus"
        ]
    );
    let bound = e
        .adapter
        .list_line_items(&LineItemsRequest {
            platform: e.platform.clone(),
            container: e.lms.line_items_url(),
            resource_link_id: Some("resource-2".into()),
            resource_id: None,
            tag: Some("final".into()),
        })
        .await
        .unwrap();
    assert_eq!(bound.len(), 1);
    assert_eq!(bound[0], created[1]);

    // A change of the label and a cleared tag; the rest stays as the platform holds it.
    let changed = e
        .adapter
        .update_line_item(
            &e.platform,
            &created[0].location,
            &LineItemChanges {
                label: Some("Draft (late)".into()),
                tag: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.fields.label, "Draft (late)");
    assert_eq!(changed.fields.tag, None);
    assert_eq!(changed.fields.score_maximum, 20.0);
    assert_eq!(
        changed.fields.resource_link_id.as_deref(),
        Some("resource-2")
    );
    assert_eq!(
        changed.fields.end_date_time,
        fields("Draft", None).end_date_time
    );
    let fetched = e
        .adapter
        .get_line_item(&e.platform, &created[0].location)
        .await
        .unwrap();
    assert_eq!(fetched, changed);

    // An invalid change is the platform's to refuse, and is refused for good.
    let err = e
        .adapter
        .update_line_item(
            &e.platform,
            &created[0].location,
            &LineItemChanges {
                score_maximum: Some(0.0),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeliveryError::Rejected { status: 400, .. }),
        "{err:?}"
    );

    e.adapter
        .delete_line_item(&e.platform, &created[0].location)
        .await
        .unwrap();
    assert_eq!(e.lms.line_items().len(), 4);
    let err = e
        .adapter
        .get_line_item(&e.platform, &created[0].location)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeliveryError::Rejected { status: 404, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn results_are_read_page_by_page_and_by_learner() {
    let e = env(1).await;
    let line_item = e.lms.line_item_url("1");
    for (user, given) in [("student-1", 7.0), ("student-2", 9.0)] {
        e.adapter
            .send_score(&ScoreDelivery {
                platform: e.platform.clone(),
                target: TargetLocation::LtiLineItem(line_item.clone()),
                platform_user_id: user.into(),
                score_given: Some(given),
                score_maximum: Some(10.0),
                comment: Some(format!("{user} done")),
                activity_progress: ActivityProgress::Completed,
                grading_progress: GradingProgress::FullyGraded,
                timestamp_micros: 1_800_000_000_000_000,
            })
            .await
            .unwrap();
    }
    let mut request = ResultsRequest {
        platform: e.platform.clone(),
        line_item: line_item.clone(),
        platform_user_id: None,
        limit: None,
        page: None,
    };
    let first = e.adapter.results_page(&request).await.unwrap();
    assert_eq!(first.results.len(), 1);
    assert_eq!(first.results[0].platform_user_id, "student-1");
    // Rescaled to the line item's maximum of 100.
    assert_eq!(first.results[0].result_score, Some(70.0));
    assert_eq!(first.results[0].result_maximum, Some(100.0));
    assert_eq!(first.results[0].comment.as_deref(), Some("student-1 done"));
    request.page = first.next.clone();
    let second = e.adapter.results_page(&request).await.unwrap();
    assert_eq!(second.results[0].platform_user_id, "student-2");
    assert_eq!(second.next, None);

    let only = e
        .adapter
        .results_page(&ResultsRequest {
            platform_user_id: Some("student-2".into()),
            page: None,
            ..request.clone()
        })
        .await
        .unwrap();
    assert_eq!(only.results.len(), 1);
    assert_eq!(only.results[0].result_score, Some(90.0));

    // A page on another host is never fetched with the platform's token.
    let err = e
        .adapter
        .results_page(&ResultsRequest {
            page: Some(Url::parse("http://collector.invalid/results?page=2").unwrap()),
            ..request
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeliveryError::Misconfigured { .. }),
        "{err:?}"
    );
}

/// A platform that accepts any token and keeps the score bodies it receives.
async fn capturing_platform() -> (Url, Arc<Mutex<Vec<serde_json::Value>>>) {
    let bodies: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let kept = bodies.clone();
    let router = axum::Router::new()
        .route(
            "/token",
            post(|| async {
                axum::Json(serde_json::json!({"access_token": "t", "token_type": "Bearer", "expires_in": 600}))
            }),
        )
        .route(
            "/li/1/scores",
            post(move |body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    kept.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap_or_default());
                    axum::http::StatusCode::OK
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, bodies)
}

#[tokio::test]
async fn canvas_gets_its_submission_extension_and_no_one_else_does() {
    let (base, bodies) = capturing_platform().await;
    let adapter = LtiAdapter::new(
        reqwest::Client::new(),
        Arc::new(Key(ToolKey::generate("k").unwrap())),
    );
    for (kind, progress) in [
        (PlatformKind::Canvas, ActivityProgress::Completed),
        (PlatformKind::Canvas, ActivityProgress::InProgress),
        (PlatformKind::Moodle, ActivityProgress::Completed),
        (PlatformKind::Lti, ActivityProgress::Completed),
    ] {
        adapter
            .send_score(&ScoreDelivery {
                platform: PlatformEndpoints {
                    kind,
                    issuer: base.to_string(),
                    client_id: format!("client-{kind}"),
                    token_url: base.join("token").unwrap(),
                    token_audience: None,
                },
                target: TargetLocation::LtiLineItem(base.join("li/1").unwrap()),
                platform_user_id: "u1".into(),
                score_given: Some(1.0),
                score_maximum: Some(2.0),
                comment: None,
                activity_progress: progress,
                grading_progress: GradingProgress::FullyGraded,
                timestamp_micros: 1_800_000_000_000_042,
            })
            .await
            .unwrap();
    }
    let bodies = bodies.lock().unwrap().clone();
    let ext = |i: usize| bodies[i][lti::ags::CANVAS_SUBMISSION_EXTENSION].clone();
    assert_eq!(
        ext(0),
        serde_json::json!({"new_submission": true, "submitted_at": "2027-01-15T08:00:00.000042Z"})
    );
    assert_eq!(ext(1)["new_submission"], false);
    assert!(ext(2).is_null() && ext(3).is_null(), "{bodies:#?}");
    assert!(
        bodies
            .iter()
            .all(|b| b["timestamp"] == "2027-01-15T08:00:00.000042Z")
    );
}
