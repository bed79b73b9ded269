//! The webhook outbox on SQLite and PostgreSQL: events queue with the score outcome only
//! when the tenant has an endpoint, claims are leased, attempts are logged, tenants isolated.

use domain::{ActivityProgress, Actor, ActorKind, GradingProgress, NewScore, PlatformKind};
use store::crypto::MasterKey;
use store::testing::{TestDatabase, seed_launch};
use store::{AttemptOutcome, ScoreRequest, WebhookOutcome, now_micros};

#[tokio::test]
async fn outcomes_queue_signed_deliveries_that_are_claimed_once_and_logged() {
    let base = url::Url::parse("https://lms.example/").unwrap();
    let master = MasterKey::generate();
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let seed = seed_launch(&store, "wh", PlatformKind::Moodle, &base)
            .await
            .unwrap();
        let other = seed_launch(&store, "wh-other", PlatformKind::Moodle, &base)
            .await
            .unwrap();
        let t = store.tenant(&seed.scope);
        let url = url::Url::parse("https://product.example/hooks").unwrap();
        let secret = t
            .set_webhook(&url, &master, &Actor::system("t"))
            .await
            .unwrap();
        assert_eq!(
            t.webhook_url().await.unwrap().as_deref(),
            Some(url.as_str())
        );
        assert_eq!(
            store.tenant(&other.scope).webhook_url().await.unwrap(),
            None
        );

        for s in [&seed, &other] {
            store
                .tenant(&s.scope)
                .enqueue_score(&ScoreRequest {
                    score: NewScore {
                        grade_target_id: s.launch.grade_target_id.unwrap(),
                        person_id: s.launch.person_id.unwrap(),
                        score_given: Some(5.0),
                        score_maximum: Some(5.0),
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
        }
        let claimed = store
            .claim_scores("w", now_micros() + 60_000_000, 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2);
        for c in &claimed {
            store
                .finish_attempt(
                    c,
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
        }
        // Only the tenant with an endpoint owes a delivery.
        let hooks = store
            .claim_webhooks("w1", now_micros() + 60_000_000, 10)
            .await
            .unwrap();
        assert_eq!(hooks.len(), 1);
        let h = &hooks[0];
        assert_eq!(h.tenant_id, seed.scope.tenant_id());
        assert_eq!(h.event, "score.delivered");
        assert_eq!(h.secret(&master).unwrap().as_deref(), Some(secret.as_str()));
        let payload: serde_json::Value = serde_json::from_str(&h.payload).unwrap();
        assert_eq!(payload["id"], h.id.as_str());
        assert_eq!(payload["data"]["score_given"], 5.0);
        // Leased: a second sender gets nothing.
        assert!(
            store
                .claim_webhooks("w2", now_micros() + 60_000_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let kept = store
            .finish_webhook(
                h,
                "w1",
                now_micros(),
                7,
                &WebhookOutcome::Retry {
                    at: 0,
                    status: Some(503),
                    error: "busy".into(),
                },
            )
            .await
            .unwrap();
        assert!(kept);
        let again = store
            .claim_webhooks("w2", now_micros() + 60_000_000, 10)
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert!(
            !store
                .finish_webhook(
                    h,
                    "w1",
                    now_micros(),
                    1,
                    &WebhookOutcome::Delivered { status: 200 }
                )
                .await
                .unwrap(),
            "a stale lease cannot record"
        );
        store
            .finish_webhook(
                &again[0],
                "w2",
                now_micros(),
                3,
                &WebhookOutcome::Delivered { status: 204 },
            )
            .await
            .unwrap();
        let listed = t.webhook_deliveries(10).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state, "delivered");
        let statuses: Vec<Option<i64>> = listed[0].attempt_log.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [Some(503), Some(204)]);
        assert!(
            store
                .tenant(&other.scope)
                .webhook_deliveries(10)
                .await
                .unwrap()
                .is_empty()
        );
        db.cleanup().await;
    }
}
