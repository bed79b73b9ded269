//! The worker against a scripted adapter, on SQLite and (when configured) PostgreSQL.

use async_trait::async_trait;
use domain::*;
use passback::{AdapterResolver, Backoff, LimiterConfig, Worker, WorkerConfig};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::testing::{TestDatabase, seed_launch};
use store::{EnqueueOutcome, ScoreRequest, now_micros};

/// Answers each send with the next scripted result, then succeeds.
#[derive(Debug, Default)]
struct Scripted {
    answers: Mutex<VecDeque<Result<DeliveryReceipt, DeliveryError>>>,
    sent: Mutex<Vec<ScoreDelivery>>,
}

#[async_trait]
impl LmsAdapter for Scripted {
    async fn send_score(&self, score: &ScoreDelivery) -> Result<DeliveryReceipt, DeliveryError> {
        self.sent.lock().unwrap().push(score.clone());
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Ok(DeliveryReceipt::new(200, "")))
    }
    async fn roster_page(&self, _: &RosterRequest) -> Result<RosterPage, DeliveryError> {
        unreachable!("not used by the worker")
    }
}

#[derive(Debug)]
struct One(Arc<Scripted>);
impl AdapterResolver for One {
    fn adapter(&self, kind: PlatformKind) -> Option<Arc<dyn LmsAdapter>> {
        (kind == PlatformKind::Moodle).then(|| self.0.clone() as Arc<dyn LmsAdapter>)
    }
}

fn config(max_attempts: i64) -> WorkerConfig {
    WorkerConfig {
        id: "test-worker".into(),
        batch: 8,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(50),
        backoff: Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
        },
        max_attempts,
        max_age: Duration::from_secs(3600),
        limiter: LimiterConfig {
            rate_per_sec: 10_000.0,
            burst: 1_000.0,
            ..LimiterConfig::default()
        },
    }
}

async fn run_until_settled(worker: &Worker, store: &store::Store) {
    for _ in 0..200 {
        worker.run_once().await.unwrap();
        if store.next_score_due().await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("queue did not settle");
}

async fn enqueue(store: &store::Store, seed: &store::testing::SeededLaunch, given: f64) -> ScoreId {
    let req = ScoreRequest {
        score: NewScore {
            grade_target_id: seed.launch.grade_target_id.unwrap(),
            person_id: seed.launch.person_id.unwrap(),
            score_given: Some(given),
            score_maximum: Some(10.0),
            comment: Some("well done".into()),
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
async fn retries_transient_failures_then_delivers_with_the_original_values() {
    let base = url::Url::parse("https://lms.example/").unwrap();
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let seed = seed_launch(&store, "retry", PlatformKind::Moodle, &base)
            .await
            .unwrap();
        let adapter = Arc::new(Scripted::default());
        adapter.answers.lock().unwrap().extend([
            Err(DeliveryError::Transient {
                status: Some(502),
                retry_after: None,
                detail: "bad gateway".into(),
            }),
            Err(DeliveryError::RateLimited {
                retry_after: None,
                detail: "slow down".into(),
            }),
        ]);
        let worker = Worker::new(store.clone(), Arc::new(One(adapter.clone())), config(10));
        let id = enqueue(&store, &seed, 7.5).await;
        run_until_settled(&worker, &store).await;
        let rec = store.tenant(&seed.scope).score(id).await.unwrap().unwrap();
        assert_eq!(rec.state, ScoreState::Delivered, "{}", db.label);
        assert_eq!(rec.attempts, 3);
        let sent = adapter.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 3);
        assert!(
            sent.iter()
                .all(|s| s.timestamp_micros == rec.timestamp_micros),
            "resends keep the timestamp"
        );
        assert_eq!(sent[0].score_given, Some(7.5));
        assert_eq!(sent[0].platform_user_id, "user-1");
        let outcomes: Vec<String> = store
            .tenant(&seed.scope)
            .score_attempts(id)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.outcome)
            .collect();
        assert_eq!(outcomes, ["retry", "retry", "delivered"]);
        let entries = store.tenant(&seed.scope).audit_entries().await.unwrap();
        assert_eq!(entries.last().unwrap().action, "score.delivered");
        db.cleanup().await;
    }
}

#[tokio::test]
async fn permanent_refusals_and_exhausted_retries_go_dead_with_the_reason() {
    let base = url::Url::parse("https://lms.example/").unwrap();
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let seed = seed_launch(&store, "dead", PlatformKind::Moodle, &base)
            .await
            .unwrap();
        let adapter = Arc::new(Scripted::default());
        adapter
            .answers
            .lock()
            .unwrap()
            .push_back(Err(DeliveryError::Rejected {
                status: 422,
                detail: "User not found in course or is not a student".into(),
            }));
        let worker = Worker::new(store.clone(), Arc::new(One(adapter.clone())), config(2));
        let refused = enqueue(&store, &seed, 1.0).await;
        run_until_settled(&worker, &store).await;
        let rec = store
            .tenant(&seed.scope)
            .score(refused)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.state, ScoreState::Dead);
        assert_eq!(rec.attempts, 1, "a 422 is not retried");
        assert_eq!(rec.last_status, Some(422));
        assert!(rec.last_error.unwrap().contains("not a student"));

        // Two transient failures with max_attempts = 2: dead after the second.
        adapter.answers.lock().unwrap().extend([
            Err(DeliveryError::Transient {
                status: Some(500),
                retry_after: None,
                detail: "oops".into(),
            }),
            Err(DeliveryError::Transient {
                status: Some(500),
                retry_after: None,
                detail: "oops".into(),
            }),
        ]);
        let exhausted = enqueue(&store, &seed, 2.0).await;
        run_until_settled(&worker, &store).await;
        let rec = store
            .tenant(&seed.scope)
            .score(exhausted)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.state, ScoreState::Dead);
        assert_eq!(rec.attempts, 2);
        assert!(rec.last_error.unwrap().contains("gave up after 2 attempts"));
        db.cleanup().await;
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let base = url::Url::parse("https://lms.example/").unwrap();
    let db = TestDatabase::sqlite().await.unwrap();
    let store = db.store.clone();
    let seed = seed_launch(&store, "ra", PlatformKind::Moodle, &base)
        .await
        .unwrap();
    let adapter = Arc::new(Scripted::default());
    adapter
        .answers
        .lock()
        .unwrap()
        .push_back(Err(DeliveryError::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
            detail: "429".into(),
        }));
    let mut cfg = config(10);
    cfg.backoff.cap = Duration::from_secs(60);
    let worker = Worker::new(store.clone(), Arc::new(One(adapter.clone())), cfg);
    let id = enqueue(&store, &seed, 3.0).await;
    let before = now_micros();
    worker.run_once().await.unwrap();
    let rec = store.tenant(&seed.scope).score(id).await.unwrap().unwrap();
    assert_eq!(rec.state, ScoreState::Retrying);
    assert!(
        rec.next_attempt_at.unwrap() >= before + 2_000_000,
        "next attempt respects Retry-After"
    );
    // Not due yet: a round now sends nothing.
    assert_eq!(worker.run_once().await.unwrap(), 0);
    assert_eq!(adapter.sent.lock().unwrap().len(), 1);
    db.cleanup().await;
}

#[tokio::test]
async fn a_saturated_limiter_hands_the_score_back_without_counting_an_attempt() {
    let base = url::Url::parse("https://lms.example/").unwrap();
    let db = TestDatabase::sqlite().await.unwrap();
    let store = db.store.clone();
    let seed = seed_launch(&store, "lim", PlatformKind::Moodle, &base)
        .await
        .unwrap();
    let adapter = Arc::new(Scripted::default());
    let mut cfg = config(10);
    // One request, then one per ~17 minutes: the second score cannot go within the lease.
    cfg.limiter = LimiterConfig {
        rate_per_sec: 0.001,
        burst: 1.0,
        ..LimiterConfig::default()
    };
    cfg.lease = Duration::from_millis(300);
    let worker = Worker::new(store.clone(), Arc::new(One(adapter.clone())), cfg);
    let first = enqueue(&store, &seed, 4.0).await;
    assert_eq!(worker.run_once().await.unwrap(), 1);
    let t = store.tenant(&seed.scope);
    assert_eq!(
        t.score(first).await.unwrap().unwrap().state,
        ScoreState::Delivered
    );

    let second = enqueue(&store, &seed, 5.0).await;
    let before = now_micros();
    assert_eq!(
        worker.run_once().await.unwrap(),
        1,
        "claimed, then handed back"
    );
    let rec = t.score(second).await.unwrap().unwrap();
    assert_eq!(rec.state, ScoreState::Queued);
    assert_eq!(rec.attempts, 0, "waiting for the limiter is not an attempt");
    assert!(rec.next_attempt_at.unwrap() >= before);
    assert_eq!(
        adapter.sent.lock().unwrap().len(),
        1,
        "nothing more was sent"
    );
    assert!(t.score_attempts(second).await.unwrap().is_empty());
    db.cleanup().await;
}

#[tokio::test]
async fn dead_scores_are_replayed_unless_a_newer_score_would_be_overwritten() {
    let base = url::Url::parse("https://lms.example/").unwrap();
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let seed = seed_launch(&store, "replay", PlatformKind::Moodle, &base)
            .await
            .unwrap();
        let adapter = Arc::new(Scripted::default());
        let refusal = || {
            Err(DeliveryError::Rejected {
                status: 400,
                detail: "course closed".into(),
            })
        };
        adapter.answers.lock().unwrap().push_back(refusal());
        let worker = Worker::new(store.clone(), Arc::new(One(adapter.clone())), config(3));
        let t = store.tenant(&seed.scope);
        let dead = enqueue(&store, &seed, 6.0).await;
        run_until_settled(&worker, &store).await;
        assert_eq!(
            t.score(dead).await.unwrap().unwrap().state,
            ScoreState::Dead
        );

        // The admin reopened the course: the replay queues it again and it is delivered.
        let admin = Actor {
            kind: ActorKind::Instructor,
            id: "admin".into(),
        };
        assert_eq!(
            t.replay_dead_scores(None, &admin).await.unwrap(),
            vec![dead]
        );
        let rec = t.score(dead).await.unwrap().unwrap();
        assert_eq!((rec.state, rec.attempts), (ScoreState::Queued, 0));
        run_until_settled(&worker, &store).await;
        assert_eq!(
            t.score(dead).await.unwrap().unwrap().state,
            ScoreState::Delivered
        );
        let sent = adapter.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1].score_given, Some(6.0));
        assert_eq!(
            sent[0].timestamp_micros, sent[1].timestamp_micros,
            "a replay sends the original timestamp"
        );
        let actions: Vec<String> = t
            .audit_entries()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert!(actions.iter().any(|a| a == "score.replayed"), "{actions:?}");

        // A dead score with a newer delivered score for the same person stays dead.
        adapter.answers.lock().unwrap().push_back(refusal());
        let old = enqueue(&store, &seed, 7.0).await;
        run_until_settled(&worker, &store).await;
        let newer = enqueue(&store, &seed, 8.0).await;
        run_until_settled(&worker, &store).await;
        assert_eq!(
            t.score(newer).await.unwrap().unwrap().state,
            ScoreState::Delivered
        );
        assert!(t.replay_dead_scores(None, &admin).await.unwrap().is_empty());
        assert_eq!(t.score(old).await.unwrap().unwrap().state, ScoreState::Dead);
        db.cleanup().await;
    }
}
