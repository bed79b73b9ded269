//! Holding a score back and sending one again under a fresh timestamp
//! (`Store::hold_if_final_grade_delivered`, `Store::retry_with_fresh_timestamp`), on SQLite
//! and, when configured, PostgreSQL.

use domain::*;
use store::testing::{SeededLaunch, TestDatabase, seed_launch};
use store::*;
use url::Url;

fn request(seed: &SeededLaunch, given: f64, progress: GradingProgress) -> ScoreRequest {
    ScoreRequest {
        score: NewScore {
            grade_target_id: seed.launch.grade_target_id.unwrap(),
            person_id: seed.launch.person_id.unwrap(),
            score_given: Some(given),
            score_maximum: Some(10.0),
            comment: None,
            activity_progress: ActivityProgress::Completed,
            grading_progress: progress,
            actor: Actor {
                kind: ActorKind::Instructor,
                id: "t-1".into(),
            },
        },
        idempotency_key: None,
        request_hash: format!("{given}:{}", progress.as_str()),
    }
}

async fn enqueue(
    store: &Store,
    seed: &SeededLaunch,
    given: f64,
    progress: GradingProgress,
) -> ScoreRecord {
    match store
        .tenant(&seed.scope)
        .enqueue_score(&request(seed, given, progress))
        .await
        .unwrap()
    {
        EnqueueOutcome::Created(r) => r,
        other => panic!("{other:?}"),
    }
}

async fn claim_one(store: &Store, worker: &str) -> ClaimedScore {
    let mut claimed = store
        .claim_scores(worker, now_micros() + 30_000_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "exactly one score is due");
    claimed.remove(0)
}

async fn deliver(store: &Store, claimed: &ClaimedScore) {
    let ok = store
        .finish_attempt(
            claimed,
            "w",
            now_micros(),
            5,
            &AttemptOutcome::Delivered {
                status: 200,
                detail: String::new(),
            },
        )
        .await
        .unwrap();
    assert!(ok);
}

fn actions(entries: &[audit::AuditEntry], subject: ScoreId) -> Vec<String> {
    let subject = format!("score:{subject}");
    entries
        .iter()
        .filter(|e| e.subject == subject)
        .map(|e| e.action.clone())
        .collect()
}

#[tokio::test]
async fn a_refused_newest_score_is_due_again_under_a_later_timestamp() {
    let base = Url::parse("https://lms.example/").unwrap();
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let seed = seed_launch(&store, "restamp", PlatformKind::Moodle, &base)
            .await
            .unwrap();
        let t = store.tenant(&seed.scope);
        let first = enqueue(&store, &seed, 5.0, GradingProgress::FullyGraded).await;
        let claimed = claim_one(&store, "w").await;
        assert_eq!(claimed.id, first.id);

        // Another worker's word changes nothing.
        let at = now_micros() + 1_000_000;
        let lost = store
            .retry_with_fresh_timestamp(&claimed, "intruder", now_micros(), 3, 409, "stale", at)
            .await
            .unwrap();
        assert_eq!(lost, RestampOutcome::LeaseLost, "{}", db.label);
        assert_eq!(
            t.score(first.id).await.unwrap().unwrap().state,
            ScoreState::Sending
        );

        let outcome = store
            .retry_with_fresh_timestamp(&claimed, "w", now_micros(), 3, 409, "HTTP 409: stale", at)
            .await
            .unwrap();
        assert_eq!(
            outcome,
            RestampOutcome::Restamped {
                previous_micros: first.timestamp_micros,
                timestamp_micros: at,
            }
        );
        let rec = t.score(first.id).await.unwrap().unwrap();
        assert_eq!(rec.state, ScoreState::Retrying);
        assert_eq!(rec.timestamp_micros, at);
        assert_eq!(rec.next_attempt_at, Some(at));
        assert_eq!(rec.last_status, Some(409));
        assert_eq!(rec.last_error.as_deref(), Some("HTTP 409: stale"));
        let log = t.score_attempts(first.id).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].outcome.as_str(), log[0].status),
            ("restamped", Some(409))
        );
        assert!(
            store
                .claim_scores("w", now_micros() + 30_000_000, 10)
                .await
                .unwrap()
                .is_empty(),
            "not due before its time"
        );

        // A score queued meanwhile comes after it: timestamps stay strictly increasing.
        let second = enqueue(&store, &seed, 6.0, GradingProgress::FullyGraded).await;
        assert!(second.timestamp_micros > at);
        assert_eq!(
            t.score(first.id).await.unwrap().unwrap().state,
            ScoreState::Superseded,
            "and supersedes it like any queued score"
        );
        let entries = t.audit_entries().await.unwrap();
        assert_eq!(
            actions(&entries, first.id),
            ["score.queued", "score.restamped", "score.superseded"]
        );
        let restamped = entries
            .iter()
            .find(|e| e.action == "score.restamped")
            .unwrap();
        let detail: serde_json::Value = serde_json::from_str(&restamped.detail).unwrap();
        assert_eq!(detail["previous_timestamp_micros"], first.timestamp_micros);
        assert_eq!(detail["timestamp_micros"], at);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_refused_score_with_a_newer_one_queued_is_superseded_by_it() {
    let base = Url::parse("https://lms.example/").unwrap();
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let seed = seed_launch(&store, "newer", PlatformKind::Moodle, &base)
            .await
            .unwrap();
        let t = store.tenant(&seed.scope);
        let first = enqueue(&store, &seed, 5.0, GradingProgress::FullyGraded).await;
        let claimed = claim_one(&store, "w").await;
        // Queued while the first is in flight: it is not superseded (it is being sent).
        let second = enqueue(&store, &seed, 6.0, GradingProgress::FullyGraded).await;
        let outcome = store
            .retry_with_fresh_timestamp(
                &claimed,
                "w",
                now_micros(),
                3,
                409,
                "stale",
                now_micros() + 1_000_000,
            )
            .await
            .unwrap();
        assert_eq!(
            outcome,
            RestampOutcome::Superseded { by: second.id },
            "{}",
            db.label
        );
        let rec = t.score(first.id).await.unwrap().unwrap();
        assert_eq!(rec.state, ScoreState::Superseded);
        assert_eq!(
            rec.timestamp_micros, first.timestamp_micros,
            "not restamped"
        );
        assert_eq!(rec.last_status, Some(409));
        assert!(rec.last_error.unwrap().contains(&second.id.to_string()));
        assert_eq!(
            claim_one(&store, "w").await.id,
            second.id,
            "the newer one is sent"
        );
        let entries = t.audit_entries().await.unwrap();
        assert_eq!(
            actions(&entries, first.id),
            ["score.queued", "score.superseded"]
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_retry_time_in_the_past_never_moves_a_timestamp_backwards() {
    let base = Url::parse("https://lms.example/").unwrap();
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let seed = seed_launch(&store, "past", PlatformKind::Moodle, &base)
            .await
            .unwrap();
        let first = enqueue(&store, &seed, 5.0, GradingProgress::FullyGraded).await;
        let claimed = claim_one(&store, "w").await;
        let outcome = store
            .retry_with_fresh_timestamp(
                &claimed,
                "w",
                now_micros(),
                3,
                409,
                "stale",
                first.timestamp_micros - 5_000_000,
            )
            .await
            .unwrap();
        assert_eq!(
            outcome,
            RestampOutcome::Restamped {
                previous_micros: first.timestamp_micros,
                timestamp_micros: first.timestamp_micros + 1,
            },
            "{}",
            db.label
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_progress_score_is_held_only_when_a_final_grade_was_delivered() {
    let base = Url::parse("https://lms.example/").unwrap();
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let seed = seed_launch(&store, "hold", PlatformKind::Moodle, &base)
            .await
            .unwrap();
        let t = store.tenant(&seed.scope);

        // Nothing delivered yet: a progress score erases nothing and is sent.
        let early = enqueue(&store, &seed, 0.0, GradingProgress::Pending).await;
        let claimed = claim_one(&store, "w").await;
        assert_eq!(
            store
                .hold_if_final_grade_delivered(&claimed, "w", "why")
                .await
                .unwrap(),
            None,
            "{}",
            db.label
        );
        assert_eq!(
            t.score(early.id).await.unwrap().unwrap().state,
            ScoreState::Sending
        );
        deliver(&store, &claimed).await;
        // The newest delivered score is a progress score: nothing final to protect.
        let again = enqueue(&store, &seed, 0.0, GradingProgress::PendingManual).await;
        let claimed = claim_one(&store, "w").await;
        assert_eq!(
            store
                .hold_if_final_grade_delivered(&claimed, "w", "why")
                .await
                .unwrap(),
            None
        );
        deliver(&store, &claimed).await;
        assert_eq!(
            t.score(again.id).await.unwrap().unwrap().state,
            ScoreState::Delivered
        );

        let graded = enqueue(&store, &seed, 9.0, GradingProgress::FullyGraded).await;
        let claimed = claim_one(&store, "w").await;
        deliver(&store, &claimed).await;
        let progress = enqueue(&store, &seed, 0.0, GradingProgress::Pending).await;
        let claimed = claim_one(&store, "w").await;
        assert_eq!(
            store
                .hold_if_final_grade_delivered(&claimed, "intruder", "why")
                .await
                .unwrap(),
            None,
            "not without the lease"
        );
        assert_eq!(
            store
                .hold_if_final_grade_delivered(&claimed, "w", "held: it would erase the grade")
                .await
                .unwrap(),
            Some(graded.id)
        );
        let rec = t.score(progress.id).await.unwrap().unwrap();
        assert_eq!(rec.state, ScoreState::Held);
        assert_eq!(rec.attempts, 0, "nothing was sent");
        assert_eq!(
            rec.last_error.as_deref(),
            Some("held: it would erase the grade")
        );
        assert_eq!(rec.next_attempt_at, None);
        assert!(t.score_attempts(progress.id).await.unwrap().is_empty());
        assert_eq!(
            store.next_score_due().await.unwrap(),
            None,
            "a held score is never due"
        );
        let entries = t.audit_entries().await.unwrap();
        assert_eq!(
            actions(&entries, progress.id),
            ["score.corrected", "score.held"]
        );

        // The next final grade is sent as usual, and a held score is not superseded.
        let next = enqueue(&store, &seed, 10.0, GradingProgress::FullyGraded).await;
        assert_eq!(claim_one(&store, "w").await.id, next.id);
        assert_eq!(
            t.score(progress.id).await.unwrap().unwrap().state,
            ScoreState::Held
        );
        db.cleanup().await;
    }
}
