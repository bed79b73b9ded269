//! The passback figures behind `/metrics` read the same on SQLite and PostgreSQL.

use domain::{ActivityProgress, Actor, ActorKind, GradingProgress, NewScore, PlatformKind};
use store::testing::{TestDatabase, seed_launch};
use store::{AttemptOutcome, ScoreRequest};

#[tokio::test]
async fn figures_count_states_attempts_and_latency() {
    let base = url::Url::parse("https://lms.example/").unwrap();
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let empty = store.passback_figures().await.unwrap();
        assert_eq!(empty.latency_count, 0);
        assert!(empty.scores_by_state.is_empty());
        let seed = seed_launch(&store, "fig", PlatformKind::Canvas, &base)
            .await
            .unwrap();
        store
            .tenant(&seed.scope)
            .enqueue_score(&ScoreRequest {
                score: NewScore {
                    grade_target_id: seed.launch.grade_target_id.unwrap(),
                    person_id: seed.launch.person_id.unwrap(),
                    score_given: Some(2.0),
                    score_maximum: Some(2.0),
                    comment: None,
                    activity_progress: ActivityProgress::Completed,
                    grading_progress: GradingProgress::FullyGraded,
                    actor: Actor {
                        kind: ActorKind::Instructor,
                        id: "i".into(),
                    },
                },
                idempotency_key: None,
                request_hash: "h".into(),
            })
            .await
            .unwrap();
        let claimed = store
            .claim_scores("w", store::now_micros() + 60_000_000, 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        store
            .finish_attempt(
                &claimed[0],
                "w",
                store::now_micros(),
                120,
                &AttemptOutcome::Retry {
                    at: 0,
                    status: Some(429),
                    detail: "slow down".into(),
                },
            )
            .await
            .unwrap();
        let f = store.passback_figures().await.unwrap();
        assert_eq!(f.scores_by_state, vec![("retrying".to_owned(), 1)]);
        assert_eq!(
            f.attempts,
            vec![("retry".to_owned(), "canvas".to_owned(), 1)]
        );
        assert_eq!(f.throttled, 1);
        assert_eq!(f.latency_count, 1);
        assert_eq!(f.latency_sum_ms, 120);
        // 120 ms is above the 50 and 100 ms buckets and inside every other.
        assert_eq!(&f.latency_buckets[..3], &[0, 0, 1]);
        assert_eq!(*f.latency_buckets.last().unwrap(), 1);
        db.cleanup().await;
    }
}
