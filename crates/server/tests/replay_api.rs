//! Replaying dead scores through the product API: only the tenant's own, only dead ones, and
//! never one a newer score has replaced.

use domain::{
    ActivityProgress, Actor, ActorKind, GradingProgress, NewScore, PlatformKind, ScoreState,
};
use server::{AppBuilder, Settings};
use store::testing::{TestDatabase, seed_launch};
use store::{EnqueueOutcome, ScoreRequest};

#[tokio::test]
async fn dead_scores_are_replayed_through_the_api() {
    let db = TestDatabase::sqlite().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let dir = std::env::temp_dir().join(format!("lmsbridge-replay-{}", uuid::Uuid::new_v4()));
    let mut settings = Settings::defaults_for(listener.local_addr().unwrap(), dir);
    settings.database_url = db.url.clone();
    // No worker runs: the queue is only looked at, never sent.
    let running = AppBuilder::new(settings).build().await.unwrap();
    let store = running.app.store().clone();
    tokio::spawn(async move { axum::serve(listener, server::router(running.app)).await });
    let lms = url::Url::parse("http://127.0.0.1:9/").unwrap();
    let seed = seed_launch(&store, "a", PlatformKind::Moodle, &lms)
        .await
        .unwrap();
    let other = seed_launch(&store, "b", PlatformKind::Moodle, &lms)
        .await
        .unwrap();
    let score = NewScore {
        grade_target_id: seed.launch.grade_target_id.unwrap(),
        person_id: seed.launch.person_id.unwrap(),
        score_given: Some(3.0),
        score_maximum: Some(4.0),
        comment: None,
        activity_progress: ActivityProgress::Completed,
        grading_progress: GradingProgress::FullyGraded,
        actor: Actor {
            kind: ActorKind::AiGrader,
            id: "grader".into(),
        },
    };
    let id = match store
        .tenant(&seed.scope)
        .enqueue_score(&ScoreRequest {
            score,
            idempotency_key: None,
            request_hash: "h".into(),
        })
        .await
        .unwrap()
    {
        EnqueueOutcome::Created(r) | EnqueueOutcome::Replayed(r) => r.id,
    };
    let http = reqwest::Client::new();
    let post =
        |path: String, key: &str| http.post(base.join(&path).unwrap()).bearer_auth(key).send();

    // Queued, not dead: nothing to replay.
    let resp = post(format!("api/v1/scores/{id}/replay"), &seed.api_key)
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);

    db.store
        .execute_unchecked(&format!(
            "UPDATE scores SET state = 'dead', last_error = 'course closed' WHERE id = '{id}'"
        ))
        .await
        .unwrap();
    // Another tenant's key cannot see or replay it.
    let resp = post(format!("api/v1/scores/{id}/replay"), &other.api_key)
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = post("api/v1/scores:replay-dead".into(), &other.api_key)
        .await
        .unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["replayed"], serde_json::json!([]));

    let resp = post(format!("api/v1/scores/{id}/replay"), &seed.api_key)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["replayed"], serde_json::json!([id.to_string()]));
    let rec = store.tenant(&seed.scope).score(id).await.unwrap().unwrap();
    assert_eq!(rec.state, ScoreState::Queued);
    assert_eq!(rec.attempts, 0);

    let resp = post(format!("api/v1/scores/{id}/replay"), "lmsb_x_forged")
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = post("api/v1/scores/not-a-uuid/replay".into(), &seed.api_key)
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    db.cleanup().await;
}
