//! Product webhooks end to end: configured over the API, queued with the score outcome they
//! report, signed, retried when the product's endpoint fails, and logged per attempt.

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use domain::{ActivityProgress, Actor, ActorKind, GradingProgress, NewScore, PlatformKind};
use server::{AppBuilder, Settings};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use store::testing::{TestDatabase, seed_launch};
use store::{EnqueueOutcome, ScoreRequest};

/// A platform that refuses the first score (422) and accepts the rest.
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
                        (StatusCode::UNPROCESSABLE_ENTITY, "user is not gradable")
                    } else {
                        (StatusCode::OK, "")
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    url::Url::parse(&format!("http://{addr}/")).unwrap()
}

type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// The product's endpoint: fails its first request with 500, then accepts.
async fn receiver() -> (url::Url, Received) {
    let received: Received = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let r = received.clone();
    let app = Router::new().route(
        "/hooks",
        post(move |headers: HeaderMap, body: String| {
            let r = r.clone();
            let calls = calls.clone();
            async move {
                r.lock().unwrap().push((headers, body));
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        url::Url::parse(&format!("http://{addr}/hooks")).unwrap(),
        received,
    )
}

fn verify(secret: &str, header: &str, body: &str) -> bool {
    let (t, mac) = header.split_once(",v1=").unwrap();
    let t: i64 = t.strip_prefix("t=").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expected =
        store::crypto::hmac_sha256_hex(secret.as_bytes(), format!("{t}.{body}").as_bytes());
    (now - t).abs() < 300 && store::crypto::constant_time_eq(expected.as_bytes(), mac.as_bytes())
}

#[tokio::test]
async fn score_outcomes_reach_the_product_signed_and_retried() {
    let db = TestDatabase::sqlite().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let dir = std::env::temp_dir().join(format!("lmsbridge-hooks-{}", uuid::Uuid::new_v4()));
    let mut settings = Settings::defaults_for(listener.local_addr().unwrap(), dir);
    settings.database_url = db.url.clone();
    let running = AppBuilder::new(settings).build().await.unwrap();
    let store = running.app.store().clone();
    let worker = running.worker;
    tokio::spawn(async move { axum::serve(listener, server::router(running.app)).await });
    let lms = platform().await;
    let seed = seed_launch(&store, "hooks", PlatformKind::Moodle, &lms)
        .await
        .unwrap();
    let (hook_url, received) = receiver().await;
    let http = reqwest::Client::new();
    let api = |path: &str| base.join(path).unwrap();

    // Only https, or http to loopback while lmsbridge itself is on loopback.
    for bad in [
        "ftp://127.0.0.1/x",
        "not a url",
        "http://user:pw@127.0.0.1/x",
    ] {
        let r = http
            .put(api("api/v1/webhook"))
            .bearer_auth(&seed.api_key)
            .json(&serde_json::json!({"url": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{bad}");
    }
    let set: serde_json::Value = http
        .put(api("api/v1/webhook"))
        .bearer_auth(&seed.api_key)
        .json(&serde_json::json!({"url": hook_url}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = set["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));

    let submit = |given: f64| {
        let store = store.clone();
        let seed = seed.clone();
        async move {
            let req = ScoreRequest {
                score: NewScore {
                    grade_target_id: seed.launch.grade_target_id.unwrap(),
                    person_id: seed.launch.person_id.unwrap(),
                    score_given: Some(given),
                    score_maximum: Some(10.0),
                    comment: None,
                    activity_progress: ActivityProgress::Completed,
                    grading_progress: GradingProgress::FullyGraded,
                    actor: Actor {
                        kind: ActorKind::AiGrader,
                        id: "g".into(),
                    },
                },
                idempotency_key: None,
                request_hash: given.to_string(),
            };
            match store.tenant(&seed.scope).enqueue_score(&req).await.unwrap() {
                EnqueueOutcome::Created(r) | EnqueueOutcome::Replayed(r) => r.id,
            }
        }
    };
    let dead = submit(2.0).await;
    worker.run_once().await.unwrap();
    let delivered = submit(9.0).await;
    // Rounds until both scores are final and both webhooks are delivered (the endpoint's
    // first 500 is retried after a short backoff).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        worker.run_once().await.unwrap();
        let view: serde_json::Value = http
            .get(api("api/v1/webhook"))
            .bearer_auth(&seed.api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let deliveries = view["deliveries"].as_array().unwrap();
        if deliveries.len() == 2 && deliveries.iter().all(|d| d["state"] == "delivered") {
            let logged: usize = deliveries
                .iter()
                .map(|d| d["attempt_log"].as_array().unwrap().len())
                .sum();
            assert_eq!(logged, 3, "one failed attempt and two deliveries: {view}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "webhooks not delivered: {view}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    let mut events = Vec::new();
    for (headers, body) in &got {
        let sig = headers["lmsbridge-signature"].to_str().unwrap();
        assert!(verify(&secret, sig, body), "signature verifies");
        assert!(!verify("whsec_wrong", sig, body));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(headers["lmsbridge-event"].to_str().unwrap(), v["event"]);
        assert_eq!(headers["lmsbridge-delivery"].to_str().unwrap(), v["id"]);
        events.push((
            v["event"].as_str().unwrap().to_owned(),
            v["data"]["score_id"].as_str().unwrap().to_owned(),
        ));
    }
    events.dedup();
    assert!(
        events.contains(&("score.dead".to_owned(), dead.to_string())),
        "{events:?}"
    );
    assert!(
        events.contains(&("score.delivered".to_owned(), delivered.to_string())),
        "{events:?}"
    );

    // Without an endpoint, outcomes queue nothing.
    let r = http
        .delete(api("api/v1/webhook"))
        .bearer_auth(&seed.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    submit(10.0).await;
    for _ in 0..5 {
        worker.run_once().await.unwrap();
    }
    let view: serde_json::Value = http
        .get(api("api/v1/webhook"))
        .bearer_auth(&seed.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["url"], serde_json::Value::Null);
    assert_eq!(view["deliveries"].as_array().unwrap().len(), 2);
    db.cleanup().await;
}
