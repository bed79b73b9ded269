//! `GET /metrics` after a throttled then delivered score, through the real worker against a
//! loopback platform.

use axum::Router;
use axum::routing::post;
use domain::{ActivityProgress, Actor, ActorKind, GradingProgress, NewScore, PlatformKind};
use server::{AppBuilder, Settings};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use store::testing::{TestDatabase, seed_launch};
use store::{EnqueueOutcome, ScoreRequest};

async fn platform() -> url::Url {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/token",
            post(|body: String| async move {
                let form: std::collections::HashMap<String, String> =
                    url::form_urlencoded::parse(body.as_bytes())
                        .into_owned()
                        .collect();
                axum::Json(serde_json::json!({
                    "access_token": "t", "token_type": "Bearer", "expires_in": 3600,
                    "scope": form.get("scope").cloned().unwrap_or_default(),
                }))
            }),
        )
        .route(
            "/line_items/1/scores",
            post(move || {
                let calls = calls.clone();
                async move {
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        (
                            axum::http::StatusCode::TOO_MANY_REQUESTS,
                            [("retry-after", "0")],
                            "slow down",
                        )
                    } else {
                        (axum::http::StatusCode::OK, [("retry-after", "0")], "")
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    url::Url::parse(&format!("http://{addr}/")).unwrap()
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_show_the_queue_attempts_throttling_latency_and_limiters() {
    let db = TestDatabase::sqlite().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let dir = std::env::temp_dir().join(format!("lmsbridge-metrics-{}", uuid::Uuid::new_v4()));
    let mut settings = Settings::defaults_for(listener.local_addr().unwrap(), dir);
    settings.database_url = db.url.clone();
    settings.metrics_token = Some("scrape-secret".into());
    let mut worker = passback::WorkerConfig::default();
    worker.backoff.base = std::time::Duration::from_millis(1);
    worker.backoff.cap = std::time::Duration::from_millis(5);
    let running = AppBuilder::new(settings)
        .worker_config(worker)
        .build()
        .await
        .unwrap();
    let store = running.app.store().clone();
    let worker = running.worker;
    tokio::spawn(async move { axum::serve(listener, server::router(running.app)).await });
    let lms = platform().await;
    let seed = seed_launch(&store, "m", PlatformKind::Moodle, &lms)
        .await
        .unwrap();
    let req = ScoreRequest {
        score: NewScore {
            grade_target_id: seed.launch.grade_target_id.unwrap(),
            person_id: seed.launch.person_id.unwrap(),
            score_given: Some(1.0),
            score_maximum: Some(1.0),
            comment: None,
            activity_progress: ActivityProgress::Completed,
            grading_progress: GradingProgress::FullyGraded,
            actor: Actor {
                kind: ActorKind::System,
                id: "t".into(),
            },
        },
        idempotency_key: None,
        request_hash: "h".into(),
    };
    let id = match store.tenant(&seed.scope).enqueue_score(&req).await.unwrap() {
        EnqueueOutcome::Created(r) | EnqueueOutcome::Replayed(r) => r.id,
    };
    let http = reqwest::Client::new();
    let scrape = || async {
        http.get(base.join("metrics").unwrap())
            .bearer_auth("scrape-secret")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = scrape().await;
    assert_eq!(value(&before, "lmsbridge_scores{state=\"queued\"}"), 1.0);
    for _ in 0..100 {
        worker.run_once().await.unwrap();
        let rec = store.tenant(&seed.scope).score(id).await.unwrap().unwrap();
        if rec.state == domain::ScoreState::Delivered {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let after = scrape().await;
    assert_eq!(value(&after, "lmsbridge_scores{state=\"delivered\"}"), 1.0);
    assert_eq!(value(&after, "lmsbridge_scores{state=\"queued\"}"), 0.0);
    assert_eq!(
        value(
            &after,
            "lmsbridge_score_attempts_total{outcome=\"retry\",platform_kind=\"moodle\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "lmsbridge_score_attempts_total{outcome=\"delivered\",platform_kind=\"moodle\"}"
        ),
        1.0
    );
    assert_eq!(value(&after, "lmsbridge_score_throttled_total"), 1.0);
    assert_eq!(value(&after, "lmsbridge_score_delivery_seconds_count"), 2.0);
    assert_eq!(
        value(
            &after,
            "lmsbridge_score_delivery_seconds_bucket{le=\"+Inf\"}"
        ),
        2.0
    );
    let platform = seed.platform.id;
    let limit = value(
        &after,
        &format!("lmsbridge_platform_concurrency_limit{{platform=\"{platform}\"}}"),
    );
    assert!(limit < 16.0, "the 429 halved the limit: {limit}");
    assert_eq!(
        value(
            &after,
            &format!("lmsbridge_platform_in_flight{{platform=\"{platform}\"}}")
        ),
        0.0
    );

    let refused = http
        .get(base.join("metrics").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    db.cleanup().await;
}
