//! Repository behaviour on SQLite and, when configured, PostgreSQL: one body of tests, run
//! against each backend.

use domain::*;
use store::audit::SYSTEM_CHAIN;
use store::crypto::{MasterKey, sha256_hex};
use store::testing::TestDatabase;
use store::*;
use url::Url;

fn admin() -> Actor {
    Actor::system("test")
}

struct Fixture {
    scope: TenantScope,
    api_key: String,
    platform: Platform,
    launch: RecordedLaunch,
    handoff_code: String,
}

async fn fixture(store: &Store, name: &str, issuer: &str) -> Fixture {
    let (tenant, key) = store.create_tenant(name, None, &admin()).await.unwrap();
    let scope = store
        .authenticate_api_key(key.secret())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(scope.tenant_id(), tenant.id);
    let platform = store
        .tenant(&scope)
        .add_platform(
            &NewPlatform {
                kind: PlatformKind::Canvas,
                issuer: issuer.into(),
                client_id: format!("client-{name}"),
                auth_url: Url::parse("https://lms.example/auth").unwrap(),
                token_url: Url::parse("https://lms.example/token").unwrap(),
                jwks_url: Url::parse("https://lms.example/jwks").unwrap(),
                token_audience: None,
                accept_new_deployments: false,
                deployment_ids: vec!["dep-1".into()],
            },
            &admin(),
        )
        .await
        .unwrap();
    let handoff_code = format!("code-{name}");
    let launch = store
        .tenant(&scope)
        .record_launch(&new_launch(
            platform.id,
            &format!("nonce-{name}"),
            &handoff_code,
        ))
        .await
        .unwrap();
    Fixture {
        scope,
        api_key: key.secret().to_owned(),
        platform,
        launch,
        handoff_code,
    }
}

fn new_launch(platform: PlatformId, nonce: &str, code: &str) -> NewLaunch {
    NewLaunch {
        platform_id: platform,
        deployment_id: "dep-1".into(),
        nonce: nonce.into(),
        nonce_expires_at: now_micros() + 3_600_000_000,
        message_type: "LtiResourceLinkRequest".into(),
        person: Some(store::LaunchPerson {
            platform_user_id: "user-1".into(),
            name: Some("Ada Lovelace".into()),
            ..Default::default()
        }),
        roles: vec![Role::Learner],
        context: Some(store::LaunchContext {
            platform_context_id: "course-1".into(),
            title: Some("Biology".into()),
            ..Default::default()
        }),
        resource: Some(("res-1".into(), Some("Quiz".into()))),
        line_item: Some((
            "https://lms.example/api/lti/courses/1/line_items/1".into(),
            None,
        )),
        extras: serde_json::json!({}),
        handoff_code_hash: sha256_hex(code.as_bytes()),
        handoff_expires_at: now_micros() + 60_000_000,
    }
}

fn score_request(f: &Fixture, key: Option<&str>, given: f64) -> ScoreRequest {
    ScoreRequest {
        score: NewScore {
            grade_target_id: f.launch.grade_target_id.unwrap(),
            person_id: f.launch.person_id.unwrap(),
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
        idempotency_key: key.map(str::to_owned),
        request_hash: format!("hash-{given}"),
    }
}

async fn for_each_db<F, Fut>(test: F)
where
    F: Fn(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for db in TestDatabase::all().await.unwrap() {
        eprintln!("running on {}", db.label);
        test(db.store.clone()).await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn tenant_a_cannot_reach_tenant_b_through_any_repository_function() {
    for_each_db(|store| async move {
        let a = fixture(&store, "a", "https://canvas.instructure.com").await;
        let b = fixture(&store, "b", "https://canvas.instructure.com").await;
        let sa = store.tenant(&a.scope);

        assert!(matches!(
            sa.platform(b.platform.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(
            sa.list_platforms()
                .await
                .unwrap()
                .iter()
                .all(|p| p.tenant_id == a.scope.tenant_id())
        );
        assert_eq!(sa.list_platforms().await.unwrap().len(), 1);
        assert!(sa.deployments(b.platform.id).await.unwrap().is_empty());
        assert!(matches!(
            sa.add_deployment(b.platform.id, "sneaky", &admin()).await,
            Err(StoreError::NotFound)
        ));
        // B's handoff code does not redeem under A's scope, and stays usable for B.
        assert_eq!(
            sa.redeem_handoff(&sha256_hex(b.handoff_code.as_bytes()))
                .await
                .unwrap(),
            None
        );
        let sb = store.tenant(&b.scope);
        assert!(
            sb.redeem_handoff(&sha256_hex(b.handoff_code.as_bytes()))
                .await
                .unwrap()
                .is_some()
        );

        // Scores: A cannot queue against B's target or person, nor read B's scores.
        let mut cross = score_request(&a, None, 5.0);
        cross.score.grade_target_id = b.launch.grade_target_id.unwrap();
        assert!(matches!(
            sa.enqueue_score(&cross).await,
            Err(StoreError::NotFound)
        ));
        let mut cross = score_request(&a, None, 5.0);
        cross.score.person_id = b.launch.person_id.unwrap();
        assert!(matches!(
            sa.enqueue_score(&cross).await,
            Err(StoreError::NotFound)
        ));
        let EnqueueOutcome::Created(b_score) = sb
            .enqueue_score(&score_request(&b, None, 1.0))
            .await
            .unwrap()
        else {
            panic!("expected a new score")
        };
        assert_eq!(sa.score(b_score.id).await.unwrap(), None);
        assert!(sa.score_attempts(b_score.id).await.unwrap().is_empty());
        // Idempotency keys are per tenant: the same key in A is a different score.
        let ka = sa
            .enqueue_score(&score_request(&a, Some("k"), 2.0))
            .await
            .unwrap();
        let kb = sb
            .enqueue_score(&score_request(&b, Some("k"), 3.0))
            .await
            .unwrap();
        let (EnqueueOutcome::Created(ka), EnqueueOutcome::Created(kb)) = (ka, kb) else {
            panic!("both keys are new in their tenant")
        };
        assert_ne!(ka.id, kb.id);

        // The audit trail of A holds only A's entries.
        let entries = sa.audit_entries().await.unwrap();
        assert!(!entries.is_empty());
        assert!(
            entries
                .iter()
                .all(|e| e.tenant_id.as_deref() == Some(&*a.scope.tenant_id().to_string()))
        );
        assert_eq!(sa.tenant().await.unwrap().name, "a");

        // Launch data of B's platform cannot be attached to A by recording it under A's scope.
        let err = sa
            .record_launch(&new_launch(b.platform.id, "nonce-x", "code-x"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::UnknownDeployment | StoreError::Conflict(_)),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn api_keys_authenticate_only_exactly() {
    for_each_db(|store| async move {
        let a = fixture(&store, "keys", "https://lms.example").await;
        assert!(
            store
                .authenticate_api_key(&a.api_key)
                .await
                .unwrap()
                .is_some()
        );
        let mut tampered = a.api_key.clone();
        tampered.push('x');
        assert!(
            store
                .authenticate_api_key(&tampered)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .authenticate_api_key("lmsb_nope_nope")
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.authenticate_api_key("").await.unwrap().is_none());
        let second = store
            .issue_api_key(&a.scope, Some("ci"), &admin())
            .await
            .unwrap();
        assert_eq!(
            store.authenticate_api_key(second.secret()).await.unwrap(),
            Some(a.scope.clone())
        );
        assert!(!format!("{second:?}").contains(second.secret()));
    })
    .await;
}

#[tokio::test]
async fn platform_lookup_by_issuer_and_client_id() {
    for_each_db(|store| async move {
        let a = fixture(&store, "one", "https://canvas.instructure.com").await;
        let _b = fixture(&store, "two", "https://canvas.instructure.com").await;
        let found = store
            .find_platforms("https://canvas.instructure.com", Some("client-one"))
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].scope, a.scope);
        // Without client_id the shared Canvas issuer is ambiguous: both come back.
        assert_eq!(
            store
                .find_platforms("https://canvas.instructure.com", None)
                .await
                .unwrap()
                .len(),
            2
        );
        // Registering the same (issuer, client_id) twice is refused.
        let dup = store
            .tenant(&a.scope)
            .add_platform(
                &NewPlatform {
                    kind: PlatformKind::Canvas,
                    issuer: "https://canvas.instructure.com".into(),
                    client_id: "client-one".into(),
                    auth_url: a.platform.auth_url.clone(),
                    token_url: a.platform.token_url.clone(),
                    jwks_url: a.platform.jwks_url.clone(),
                    token_audience: None,
                    accept_new_deployments: false,
                    deployment_ids: vec![],
                },
                &admin(),
            )
            .await;
        assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    })
    .await;
}

#[tokio::test]
async fn launch_records_are_single_use_and_upsert() {
    for_each_db(|store| async move {
        let a = fixture(&store, "launch", "https://moodle.example").await;
        let sa = store.tenant(&a.scope);
        // The same nonce cannot launch twice.
        let replay = sa
            .record_launch(&new_launch(a.platform.id, "nonce-launch", "code-2"))
            .await;
        assert!(matches!(replay, Err(StoreError::Conflict(_))), "{replay:?}");
        // An unknown deployment is refused and writes nothing.
        let mut unknown = new_launch(a.platform.id, "nonce-3", "code-3");
        unknown.deployment_id = "dep-unknown".into();
        assert!(matches!(
            sa.record_launch(&unknown).await,
            Err(StoreError::UnknownDeployment)
        ));
        assert_eq!(
            sa.redeem_handoff(&sha256_hex(b"code-3")).await.unwrap(),
            None
        );
        // A second launch by the same user upserts the same person, context and target.
        let again = sa
            .record_launch(&new_launch(a.platform.id, "nonce-4", "code-4"))
            .await
            .unwrap();
        assert_eq!(again.person_id, a.launch.person_id);
        assert_eq!(again.context_id, a.launch.context_id);
        assert_eq!(again.grade_target_id, a.launch.grade_target_id);
        assert_ne!(again.launch_id, a.launch.launch_id);
        // Handoff codes redeem once.
        let code = sha256_hex(b"code-4");
        let summary = sa.redeem_handoff(&code).await.unwrap().unwrap();
        assert_eq!(summary["person"]["name"], "Ada Lovelace");
        assert_eq!(summary["context"]["title"], "Biology");
        assert_eq!(sa.redeem_handoff(&code).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn scores_are_idempotent_coalesced_claimed_and_finished() {
    for_each_db(|store| async move {
        let a = fixture(&store, "scores", "https://lms.example").await;
        let sa = store.tenant(&a.scope);
        let EnqueueOutcome::Created(first) = sa
            .enqueue_score(&score_request(&a, Some("k1"), 4.0))
            .await
            .unwrap()
        else {
            panic!("new")
        };
        assert_eq!(first.state, ScoreState::Queued);
        let again = sa
            .enqueue_score(&score_request(&a, Some("k1"), 4.0))
            .await
            .unwrap();
        assert_eq!(again, EnqueueOutcome::Replayed(first.clone()));
        let conflict = sa.enqueue_score(&score_request(&a, Some("k1"), 9.0)).await;
        assert!(
            matches!(conflict, Err(StoreError::Conflict(_))),
            "{conflict:?}"
        );

        // A newer score supersedes the queued one and carries a later timestamp.
        let EnqueueOutcome::Created(second) = sa
            .enqueue_score(&score_request(&a, Some("k2"), 6.0))
            .await
            .unwrap()
        else {
            panic!("new")
        };
        assert!(second.timestamp_micros > first.timestamp_micros);
        assert_eq!(
            sa.score(first.id).await.unwrap().unwrap().state,
            ScoreState::Superseded
        );

        let lease = now_micros() + 30_000_000;
        let claimed = store.claim_scores("w1", lease, 10).await.unwrap();
        assert_eq!(claimed.len(), 1, "only the newest score is sent");
        let c = &claimed[0];
        assert_eq!(c.id, second.id);
        assert_eq!(c.platform_user_id, "user-1");
        assert_eq!(c.attempts, 1);
        // Leased rows are not claimed twice.
        assert!(
            store
                .claim_scores("w2", lease, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // Another worker cannot finish a row it does not hold.
        let retry = AttemptOutcome::Retry {
            at: now_micros() - 1,
            status: Some(503),
            detail: "busy".into(),
        };
        assert!(
            !store
                .finish_attempt(c, "w2", now_micros(), 5, &retry)
                .await
                .unwrap()
        );
        assert!(
            store
                .finish_attempt(c, "w1", now_micros(), 5, &retry)
                .await
                .unwrap()
        );
        let rec = sa.score(c.id).await.unwrap().unwrap();
        assert_eq!(rec.state, ScoreState::Retrying);
        assert_eq!(rec.last_status, Some(503));
        // Due again: claimed with attempt 2, then delivered.
        let claimed = store.claim_scores("w1", lease, 10).await.unwrap();
        assert_eq!(claimed[0].attempts, 2);
        let done = AttemptOutcome::Delivered {
            status: 200,
            detail: "{}".into(),
        };
        assert!(
            store
                .finish_attempt(&claimed[0], "w1", now_micros(), 7, &done)
                .await
                .unwrap()
        );
        let rec = sa.score(c.id).await.unwrap().unwrap();
        assert_eq!(rec.state, ScoreState::Delivered);
        assert!(rec.delivered_at.is_some());
        let attempts = sa.score_attempts(c.id).await.unwrap();
        assert_eq!(
            attempts
                .iter()
                .map(|a| a.outcome.as_str())
                .collect::<Vec<_>>(),
            ["retry", "delivered"]
        );
        assert_eq!(store.next_score_due().await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    for_each_db(|store| async move {
        let a = fixture(&store, "lease", "https://lms.example").await;
        store
            .tenant(&a.scope)
            .enqueue_score(&score_request(&a, None, 1.0))
            .await
            .unwrap();
        let crashed = store
            .claim_scores("dead-worker", now_micros() - 1, 10)
            .await
            .unwrap();
        assert_eq!(crashed.len(), 1);
        let taken = store
            .claim_scores("w2", now_micros() + 30_000_000, 10)
            .await
            .unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].attempts, 2);
        // The crashed worker's late answer is ignored.
        let done = AttemptOutcome::Delivered {
            status: 200,
            detail: String::new(),
        };
        assert!(
            !store
                .finish_attempt(&crashed[0], "dead-worker", now_micros(), 1, &done)
                .await
                .unwrap()
        );
        assert!(
            store
                .finish_attempt(&taken[0], "w2", now_micros(), 1, &done)
                .await
                .unwrap()
        );
    })
    .await;
}

#[tokio::test]
async fn audit_chain_verifies_refuses_edits_and_detects_tampering() {
    for_each_db(|store| async move {
        let a = fixture(&store, "audit", "https://lms.example").await;
        store.tenant(&a.scope).enqueue_score(&score_request(&a, None, 1.0)).await.unwrap();
        let chain = a.scope.tenant_id().to_string();
        let reports = store.verify_audit(Some(&chain)).await.unwrap();
        assert_eq!(reports.len(), 1);
        assert!(reports[0].is_intact(), "{reports:?}");
        let actions: Vec<String> = store.audit_entries(&chain).await.unwrap().into_iter().map(|e| e.action).collect();
        assert_eq!(actions, ["tenant.created", "platform.registered", "launch.accepted", "score.queued"]);

        // The database refuses edits and deletions.
        assert!(store.execute_unchecked("UPDATE audit_log SET detail = '{}'").await.is_err());
        assert!(store.execute_unchecked("DELETE FROM audit_log").await.is_err());

        // Tampering around the triggers is detected.
        let drop = match store.backend() {
            Backend::Sqlite => "DROP TRIGGER audit_log_no_update",
            Backend::Postgres => "DROP TRIGGER audit_log_no_update ON audit_log",
        };
        store.execute_unchecked(drop).await.unwrap();
        store
            .execute_unchecked(&format!(
                "UPDATE audit_log SET detail = '{{\"score_given\":10}}' WHERE chain = '{chain}' AND seq = 4"
            ))
            .await
            .unwrap();
        let reports = store.verify_audit(Some(&chain)).await.unwrap();
        assert_eq!(reports[0].broken_at.as_ref().map(|b| b.0), Some(4), "{reports:?}");
    })
    .await;
}

#[tokio::test]
async fn tool_keys_are_encrypted_at_rest() {
    for_each_db(|store| async move {
        let master = MasterKey::generate();
        store
            .add_tool_key(&master, "k1", b"private-der", now_micros(), None, &admin())
            .await
            .unwrap();
        let keys = store.tool_keys(&master).await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].pkcs8_der(), b"private-der");
        assert!(
            store.tool_keys(&MasterKey::generate()).await.is_err(),
            "wrong master key must not decrypt"
        );
        store
            .add_tool_key(
                &master,
                "k2",
                b"next",
                now_micros() + 1_000,
                Some(now_micros() + 2_000),
                &admin(),
            )
            .await
            .unwrap();
        let keys = store.tool_keys(&master).await.unwrap();
        assert!(
            keys.iter()
                .find(|k| k.kid == "k1")
                .unwrap()
                .retires_at
                .is_some()
        );
        assert_eq!(
            keys.iter().find(|k| k.kid == "k2").unwrap().retires_at,
            None
        );
        assert!(store.verify_audit(Some(SYSTEM_CHAIN)).await.unwrap()[0].is_intact());
    })
    .await;
}

#[tokio::test]
async fn concurrent_writers_keep_one_unbroken_chain() {
    for_each_db(|store| async move {
        let a = fixture(&store, "busy", "https://lms.example").await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..24 {
            let (store, scope) = (store.clone(), a.scope.clone());
            let mut req = score_request(&a, Some(&format!("k{i}")), f64::from(i % 10));
            req.request_hash = format!("h{i}");
            tasks.spawn(async move { store.tenant(&scope).enqueue_score(&req).await });
        }
        let mut records = Vec::new();
        while let Some(r) = tasks.join_next().await {
            match r.unwrap().unwrap() {
                store::EnqueueOutcome::Created(rec) | store::EnqueueOutcome::Replayed(rec) => {
                    records.push(rec)
                }
            }
        }
        // Concurrent scores for one pair still get distinct, ordered timestamps, and only the
        // newest stays queued.
        let mut stamps: Vec<i64> = records.iter().map(|r| r.timestamp_micros).collect();
        stamps.sort_unstable();
        stamps.dedup();
        assert_eq!(stamps.len(), 24, "timestamps are unique per pair");
        let newest = records
            .iter()
            .max_by_key(|r| r.timestamp_micros)
            .unwrap()
            .id;
        let t = store.tenant(&a.scope);
        for r in &records {
            let state = t.score(r.id).await.unwrap().unwrap().state;
            let expected = if r.id == newest {
                domain::ScoreState::Queued
            } else {
                domain::ScoreState::Superseded
            };
            assert_eq!(state, expected);
        }
        let chain = a.scope.tenant_id().to_string();
        let report = store.verify_audit(Some(&chain)).await.unwrap().remove(0);
        assert!(report.is_intact(), "{report:?}");
        // The fixture's 3, one per score, and one per score superseded while still queued
        // (all but the last: the 24 are for the same pair and none was sent).
        assert_eq!(report.entries, 3 + 24 + 23);
    })
    .await;
}

#[tokio::test]
async fn a_batch_records_each_launch_or_refuses_it_alone() {
    for_each_db(|store| async move {
        let a = fixture(&store, "batch-a", "https://lms.example").await;
        let b = fixture(&store, "batch-b", "https://lms.example").await;
        let launch = |f: &Fixture, nonce: &str, user: &str, code: &str| {
            let mut l = new_launch(f.platform.id, nonce, code);
            l.person.as_mut().unwrap().platform_user_id = user.into();
            (f.scope.clone(), l)
        };
        let mut unknown = launch(&a, "n-5", "u-5", "c-5");
        unknown.1.deployment_id = "nope".into();
        let batch = vec![
            launch(&a, "n-1", "u-1", "c-1"),
            launch(&a, "n-2", "u-1", "c-2"), // the same person twice
            launch(&b, "n-1", "u-1", "c-3"), // same nonce, other platform: fine
            launch(&a, "n-1", "u-2", "c-4"), // nonce reused within the batch
            unknown,                         // unknown deployment
            launch(&a, "nonce-batch-a", "u-3", "c-6"), // nonce used by the fixture's launch
            (a.scope.clone(), new_launch(b.platform.id, "n-7", "c-7")), // B's platform under A
        ];
        let results = store.record_launches(&batch).await.unwrap();
        let kinds: Vec<Result<(), LaunchRefusal>> = results
            .iter()
            .map(|r| r.as_ref().map(|_| ()).map_err(|e| *e))
            .collect();
        assert_eq!(
            kinds,
            vec![
                Ok(()),
                Ok(()),
                Ok(()),
                Err(LaunchRefusal::NonceReplayed),
                Err(LaunchRefusal::UnknownDeployment),
                Err(LaunchRefusal::NonceReplayed),
                Err(LaunchRefusal::UnknownDeployment),
            ]
        );
        let r0 = results[0].as_ref().unwrap();
        let r1 = results[1].as_ref().unwrap();
        assert_eq!(r0.person_id, r1.person_id, "one person, one id");
        assert_ne!(
            r0.person_id,
            results[2].as_ref().unwrap().person_id,
            "other platform, other person"
        );
        // The handoffs work, each for its own tenant.
        assert!(
            store
                .tenant(&a.scope)
                .redeem_handoff(&sha256_hex(b"c-2"))
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .tenant(&a.scope)
                .redeem_handoff(&sha256_hex(b"c-3"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .tenant(&b.scope)
                .redeem_handoff(&sha256_hex(b"c-3"))
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .tenant(&a.scope)
                .redeem_handoff(&sha256_hex(b"c-4"))
                .await
                .unwrap()
                .is_none()
        );
        // Both chains hold their new entries, intact.
        for (f, expected) in [(&a, 2), (&b, 1)] {
            let chain = f.scope.tenant_id().to_string();
            let report = store.verify_audit(Some(&chain)).await.unwrap().remove(0);
            assert!(report.is_intact(), "{report:?}");
            let launches = store
                .audit_entries(&chain)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.action == "launch.accepted")
                .count();
            assert_eq!(launches, 1 + expected);
        }
    })
    .await;
}
