//! Who set each grade: corrections keep the value they replace, superseded scores are
//! recorded, and the log can be filtered by person, target, actor kind, action and time.

use domain::{
    ActivityProgress, Actor, ActorKind, GradingProgress, NewScore, PlatformKind, ScoreId,
};
use store::testing::{SeededLaunch, TestDatabase, seed_launch};
use store::{AuditFilter, EnqueueOutcome, ScoreRequest, now_micros};

async fn submit(seed: &SeededLaunch, store: &store::Store, given: f64, kind: ActorKind) -> ScoreId {
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
                kind,
                id: format!("{kind:?}-1"),
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
async fn corrections_and_supersessions_are_audited_and_filterable() {
    let base = url::Url::parse("https://lms.example/").unwrap();
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let seed = seed_launch(&store, "aq", PlatformKind::Moodle, &base)
            .await
            .unwrap();
        let other = seed_launch(&store, "aq-other", PlatformKind::Moodle, &base)
            .await
            .unwrap();
        let started = now_micros();
        let first = submit(&seed, &store, 6.0, ActorKind::AiGrader).await;
        let second = submit(&seed, &store, 8.0, ActorKind::Instructor).await;
        submit(&other, &store, 1.0, ActorKind::AiGrader).await;
        let t = store.tenant(&seed.scope);
        let person = seed.launch.person_id.unwrap().to_string();
        let target = seed.launch.grade_target_id.unwrap().to_string();

        let scores = t
            .query_audit(&AuditFilter {
                person_id: Some(person.clone()),
                action_prefix: Some("score.".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let actions: Vec<&str> = scores.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            ["score.queued", "score.corrected", "score.superseded"]
        );
        let corrected: serde_json::Value = serde_json::from_str(&scores[1].detail).unwrap();
        assert_eq!(scores[1].subject, format!("score:{second}"));
        assert_eq!(corrected["score_given"], 8.0);
        assert_eq!(corrected["before"]["score_given"], 6.0);
        assert_eq!(corrected["before"]["score_id"], first.to_string());
        assert_eq!(corrected["before"]["actor"]["kind"], "ai_grader");
        assert_eq!(scores[1].actor_kind, "instructor");
        assert_eq!(scores[2].subject, format!("score:{first}"));

        // Filters narrow; another tenant's entries never appear.
        let by_ai = t
            .query_audit(&AuditFilter {
                actor_kind: Some("ai_grader".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by_ai.len(), 1);
        assert!(
            by_ai
                .iter()
                .all(|e| e.chain == seed.scope.tenant_id().to_string())
        );
        let by_target = t
            .query_audit(&AuditFilter {
                grade_target_id: Some(target),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by_target.len(), 3);
        let nobody = t
            .query_audit(&AuditFilter {
                person_id: Some(other.launch.person_id.unwrap().to_string()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(
            nobody.is_empty(),
            "the other tenant's person is not visible here"
        );
        let later = t
            .query_audit(&AuditFilter {
                since: Some(now_micros() + 1_000_000),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(later.is_empty());
        let window = t
            .query_audit(&AuditFilter {
                since: Some(started),
                until: Some(now_micros() + 1),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(window.len(), 3);
        // A prefix with LIKE wildcards in it matches literally.
        let literal = t
            .query_audit(&AuditFilter {
                action_prefix: Some("score%".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(literal.is_empty());
        // Paging by cursor.
        let all = t.query_audit(&AuditFilter::default()).await.unwrap();
        let page = t
            .query_audit(&AuditFilter {
                limit: Some(2),
                ..Default::default()
            })
            .await
            .unwrap();
        let rest = t
            .query_audit(&AuditFilter {
                after_seq: Some(page[1].seq),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(page.len() + rest.len(), all.len());
        assert!(
            store
                .verify_audit(None)
                .await
                .unwrap()
                .iter()
                .all(|r| r.broken_at.is_none())
        );
        db.cleanup().await;
    }
}
