//! An older score is never sent after a newer one for the same target and person (LTI AGS
//! 2.0 §3.4: the platform keeps the score with the latest timestamp, and not every platform
//! refuses an older one). Enqueueing supersedes the waiting scores it finds, but two kinds
//! come back later: a score that was being sent returns as `retrying`, and a score whose
//! worker died stays `sending` until its lease lapses. Claiming supersedes both instead.

use domain::{
    ActivityProgress, Actor, ActorKind, GradingProgress, NewScore, PlatformKind, ScoreState,
};
use store::testing::{SeededLaunch, TestDatabase, seed_launch};
use store::{AttemptOutcome, AuditFilter, EnqueueOutcome, ScoreRecord, ScoreRequest, now_micros};

fn request(seeded: &SeededLaunch, given: f64) -> ScoreRequest {
    ScoreRequest {
        score: NewScore {
            grade_target_id: seeded.launch.grade_target_id.unwrap(),
            person_id: seeded.launch.person_id.unwrap(),
            score_given: Some(given),
            score_maximum: Some(10.0),
            comment: None,
            activity_progress: ActivityProgress::Completed,
            grading_progress: GradingProgress::FullyGraded,
            actor: Actor {
                kind: ActorKind::AiGrader,
                id: "grader".into(),
            },
        },
        idempotency_key: None,
        request_hash: format!("hash-{given}"),
    }
}

async fn enqueue(store: &store::Store, seeded: &SeededLaunch, given: f64) -> ScoreRecord {
    match store
        .tenant(&seeded.scope)
        .enqueue_score(&request(seeded, given))
        .await
        .unwrap()
    {
        EnqueueOutcome::Created(r) => r,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_older_score_back_from_a_retry_or_a_dead_worker_is_superseded_not_sent() {
    for db in TestDatabase::all().await.unwrap() {
        let store = &db.store;
        let lms = url::Url::parse("https://lms.example/").unwrap();
        let seeded = seed_launch(store, "stale", PlatformKind::Lti, &lms)
            .await
            .unwrap();
        let tenant = store.tenant(&seeded.scope);
        let lease = || now_micros() + 30_000_000;

        // Being sent when a newer score arrives, then refused for now.
        let older = enqueue(store, &seeded, 1.0).await;
        let claimed = store.claim_scores("w1", lease(), 10).await.unwrap();
        assert_eq!(claimed.len(), 1, "{}", db.label);
        let newer = enqueue(store, &seeded, 2.0).await;
        let retry = AttemptOutcome::Retry {
            at: now_micros() - 1,
            status: Some(503),
            detail: "busy".into(),
        };
        assert!(
            store
                .finish_attempt(&claimed[0], "w1", now_micros(), 5, &retry)
                .await
                .unwrap()
        );
        // Both are due now; only the newer one goes.
        let claimed = store.claim_scores("w1", lease(), 10).await.unwrap();
        let ids: Vec<_> = claimed.iter().map(|c| c.id).collect();
        assert_eq!(ids, [newer.id], "{}", db.label);
        let tenant = &tenant;
        let state = |id| async move { tenant.score(id).await.unwrap().unwrap().state };
        assert_eq!(state(older.id).await, ScoreState::Superseded);
        let done = AttemptOutcome::Delivered {
            status: 200,
            detail: "ok".into(),
        };
        assert!(
            store
                .finish_attempt(&claimed[0], "w1", now_micros(), 5, &done)
                .await
                .unwrap()
        );

        // Its worker died while sending (the lease has lapsed); a newer score was queued
        // meanwhile.
        let orphan = enqueue(store, &seeded, 3.0).await;
        let crashed = store
            .claim_scores("dead-worker", now_micros() - 1, 10)
            .await
            .unwrap();
        assert_eq!(crashed.len(), 1);
        let newest = enqueue(store, &seeded, 4.0).await;
        assert_eq!(state(orphan.id).await, ScoreState::Sending);
        let claimed = store.claim_scores("w2", lease(), 10).await.unwrap();
        let ids: Vec<_> = claimed.iter().map(|c| c.id).collect();
        assert_eq!(ids, [newest.id], "{}", db.label);
        assert_eq!(state(orphan.id).await, ScoreState::Superseded);
        // Nothing left to supersede, and nothing claimable while the newest is in flight.
        assert_eq!(store.supersede_stale_scores().await.unwrap(), 0);
        assert!(
            store
                .claim_scores("w3", lease(), 10)
                .await
                .unwrap()
                .is_empty()
        );

        // Each is on record as superseded by the newest score at the time.
        let entries = tenant
            .query_audit(&AuditFilter {
                action_prefix: Some("score.superseded".into()),
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        for (old, by) in [(older.id, newer.id), (orphan.id, newest.id)] {
            let entry = entries
                .iter()
                .find(|e| e.subject == format!("score:{old}"))
                .unwrap_or_else(|| panic!("no audit entry for {old} ({})", db.label));
            let detail: serde_json::Value = serde_json::from_str(&entry.detail).unwrap();
            assert_eq!(detail["superseded_by"], by.to_string());
            assert_eq!(entry.actor_id, "passback-worker");
        }
        let reports = store.verify_audit(None).await.unwrap();
        assert!(reports.iter().all(|r| r.is_intact()), "{reports:?}");
        db.cleanup().await;
    }
}
