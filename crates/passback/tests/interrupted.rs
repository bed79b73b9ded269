//! A 409 on a score sent again after an attempt whose outcome was lost (its worker died
//! mid-send) means the platform already took it: delivered, not dead. A 409 with no lost
//! attempt stays a permanent refusal. On SQLite and (when configured) PostgreSQL.

use async_trait::async_trait;
use domain::*;
use passback::{AdapterResolver, Backoff, LimiterConfig, Worker, WorkerConfig};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::testing::{TestDatabase, seed_launch};
use store::{EnqueueOutcome, ScoreRequest, now_micros};

/// Answers every send with 409, as a platform holding a score with that timestamp does.
#[derive(Debug, Default)]
struct Conflict {
    sent: Mutex<Vec<i64>>,
}

#[async_trait]
impl LmsAdapter for Conflict {
    async fn send_score(&self, score: &ScoreDelivery) -> Result<DeliveryReceipt, DeliveryError> {
        self.sent.lock().unwrap().push(score.timestamp_micros);
        Err(DeliveryError::Rejected {
            status: 409,
            detail: "a score with the same or a later timestamp was already accepted".into(),
        })
    }
    async fn roster_page(&self, _: &RosterRequest) -> Result<RosterPage, DeliveryError> {
        unreachable!("not used by the worker")
    }
}

#[derive(Debug)]
struct Lti(Arc<Conflict>);
impl AdapterResolver for Lti {
    fn adapter(&self, kind: PlatformKind) -> Option<Arc<dyn LmsAdapter>> {
        (kind == PlatformKind::Lti).then(|| self.0.clone() as Arc<dyn LmsAdapter>)
    }
}

fn config() -> WorkerConfig {
    WorkerConfig {
        id: "second-worker".into(),
        batch: 8,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(50),
        backoff: Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
        },
        max_attempts: 5,
        max_age: Duration::from_secs(3600),
        limiter: LimiterConfig {
            rate_per_sec: 10_000.0,
            burst: 1_000.0,
            ..LimiterConfig::default()
        },
    }
}

async fn enqueue(store: &store::Store, seed: &store::testing::SeededLaunch, given: f64) -> ScoreId {
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
                kind: ActorKind::Instructor,
                id: "t-1".into(),
            },
        },
        idempotency_key: None,
        request_hash: given.to_string(),
    };
    match store.tenant(&seed.scope).enqueue_score(&req).await.unwrap() {
        EnqueueOutcome::Created(r) | EnqueueOutcome::Replayed(r) => r.id,
    }
}

#[tokio::test]
async fn a_conflict_after_a_lost_attempt_is_a_delivery_and_without_one_a_refusal() {
    let base = url::Url::parse("https://lms.example/").unwrap();
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let seed = seed_launch(&store, "interrupted", PlatformKind::Lti, &base)
            .await
            .unwrap();
        let tenant = store.tenant(&seed.scope);
        let adapter = Arc::new(Conflict::default());
        let worker = Worker::new(store.clone(), Arc::new(Lti(adapter.clone())), config());

        // A first send with no lost attempt before it: the 409 is the platform's refusal.
        let refused = enqueue(&store, &seed, 4.0).await;
        worker.run_once().await.unwrap();
        let rec = tenant.score(refused).await.unwrap().unwrap();
        assert_eq!(rec.state, ScoreState::Dead, "{}", db.label);
        assert_eq!(rec.last_status, Some(409));

        // A worker claimed the next score and died mid-send: no outcome recorded, lease
        // lapsed. The second worker's send meets the score already on the platform.
        let landed = enqueue(&store, &seed, 9.0).await;
        let crashed = store
            .claim_scores("dead-worker", now_micros() - 1, 8)
            .await
            .unwrap();
        assert_eq!(crashed.len(), 1, "{}", db.label);
        worker.run_once().await.unwrap();
        let rec = tenant.score(landed).await.unwrap().unwrap();
        assert_eq!(rec.state, ScoreState::Delivered, "{}", db.label);
        assert_eq!(rec.attempts, 2);
        let attempts = tenant.score_attempts(landed).await.unwrap();
        assert_eq!(attempts.len(), 1, "only the second attempt has an outcome");
        assert_eq!(attempts[0].outcome, "delivered");
        assert_eq!(attempts[0].status, Some(409));
        assert!(
            attempts[0]
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("already holds this score")),
            "{attempts:?}"
        );
        assert_eq!(adapter.sent.lock().unwrap().len(), 2);
        db.cleanup().await;
    }
}
