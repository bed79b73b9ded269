//! Recording launches in batches, on SQLite and (when configured) PostgreSQL: what the
//! faster batch path must still guarantee — a deployment's first sighting, a refused launch
//! that writes nothing, rows updated only when a launch changes them, and several writers at
//! once keeping one unbroken audit chain without deadlocking.

use domain::*;
use store::crypto::sha256_hex;
use store::testing::TestDatabase;
use store::*;
use url::Url;

struct Fixture {
    scope: TenantScope,
    platform: Platform,
}

async fn fixture(store: &Store, name: &str) -> Fixture {
    let actor = Actor::system("test");
    let (_, key) = store.create_tenant(name, None, &actor).await.unwrap();
    let scope = store
        .authenticate_api_key(key.secret())
        .await
        .unwrap()
        .unwrap();
    let platform = store
        .tenant(&scope)
        .add_platform(
            &NewPlatform {
                kind: PlatformKind::Canvas,
                issuer: format!("https://{name}.lms.example"),
                client_id: format!("client-{name}"),
                auth_url: Url::parse("https://lms.example/auth").unwrap(),
                token_url: Url::parse("https://lms.example/token").unwrap(),
                jwks_url: Url::parse("https://lms.example/jwks").unwrap(),
                token_audience: None,
                accept_new_deployments: false,
                deployment_ids: vec!["dep-1".into()],
            },
            &actor,
        )
        .await
        .unwrap();
    Fixture { scope, platform }
}

/// A launch by `user` in `course`, with its own nonce and handoff code.
fn launch(f: &Fixture, nonce: &str, user: &str, course: &str) -> (TenantScope, NewLaunch) {
    let now = now_micros();
    (
        f.scope.clone(),
        NewLaunch {
            platform_id: f.platform.id,
            deployment_id: "dep-1".into(),
            nonce: nonce.into(),
            nonce_expires_at: now + 3_600_000_000,
            message_type: "LtiResourceLinkRequest".into(),
            person: Some(LaunchPerson {
                platform_user_id: user.into(),
                name: Some(format!("Name of {user}")),
                ..Default::default()
            }),
            roles: vec![Role::Learner],
            context: Some(LaunchContext {
                platform_context_id: course.into(),
                title: Some(format!("Course {course}")),
                ..Default::default()
            }),
            resource: Some((format!("{course}-quiz"), Some("Quiz".into()))),
            line_item: Some((
                format!("https://lms.example/api/lti/courses/{course}/line_items/1"),
                None,
            )),
            extras: serde_json::json!({}),
            handoff_code_hash: sha256_hex(format!("code-{nonce}").as_bytes()),
            handoff_expires_at: now + 60_000_000,
        },
    )
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

async fn last_seen(store: &Store, f: &Fixture) -> Option<i64> {
    store
        .tenant(&f.scope)
        .deployments(f.platform.id)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.deployment_id == "dep-1")
        .unwrap()
        .last_seen_at
}

/// Rows matched by a no-op update: how tests count rows without a read API for them.
async fn count(store: &Store, table: &str, condition: &str) -> u64 {
    store
        .execute_unchecked(&format!(
            "UPDATE {table} SET tenant_id = tenant_id WHERE {condition}"
        ))
        .await
        .unwrap()
}

fn accepted_launches(entries: &[store::audit::AuditEntry]) -> usize {
    entries
        .iter()
        .filter(|e| e.action == "launch.accepted")
        .count()
}

#[tokio::test]
async fn a_deployment_is_seen_first_then_touched_at_most_once_a_minute() {
    for_each_db(|store| async move {
        let f = fixture(&store, "seen").await;
        assert_eq!(last_seen(&store, &f).await, None, "never launched yet");

        let before = now_micros();
        let r = store
            .record_launches(&[launch(&f, "n-1", "u-1", "c-1")])
            .await
            .unwrap();
        assert!(r[0].is_ok());
        let first = last_seen(&store, &f)
            .await
            .expect("the first sighting is recorded");
        assert!(first >= before, "{first} < {before}");

        // Within the minute: the launch is recorded, the deployment row is not written.
        let r = store
            .record_launches(&[launch(&f, "n-2", "u-2", "c-1")])
            .await
            .unwrap();
        assert!(r[0].is_ok());
        assert_eq!(last_seen(&store, &f).await, Some(first));

        // Older than the resolution: the next launch moves it forward.
        let stale = first - LAST_SEEN_RESOLUTION_MICROS - 1;
        store
            .execute_unchecked(&format!(
                "UPDATE deployments SET last_seen_at = {stale} WHERE platform_id = '{}'",
                f.platform.id
            ))
            .await
            .unwrap();
        let before = now_micros();
        store
            .record_launches(&[launch(&f, "n-3", "u-3", "c-1")])
            .await
            .unwrap()[0]
            .as_ref()
            .unwrap();
        let moved = last_seen(&store, &f).await.unwrap();
        assert!(moved >= before, "{moved} < {before}");
    })
    .await;
}

#[tokio::test]
async fn a_replayed_nonce_in_a_batch_refuses_that_launch_alone_and_writes_nothing_of_it() {
    for_each_db(|store| async move {
        let f = fixture(&store, "replay").await;
        let first = store
            .record_launches(&[launch(&f, "used-nonce", "u-1", "c-1")])
            .await
            .unwrap();
        assert!(first[0].is_ok());

        let batch = vec![
            launch(&f, "n-a", "u-a", "c-1"),
            // The nonce of the earlier batch, by a person and in a course seen nowhere else.
            launch(&f, "used-nonce", "u-replayer", "c-replayed"),
            launch(&f, "n-b", "u-b", "c-2"),
        ];
        let results = store.record_launches(&batch).await.unwrap();
        assert!(results[0].is_ok());
        assert_eq!(
            results[1].as_ref().err(),
            Some(&LaunchRefusal::NonceReplayed)
        );
        assert!(results[2].is_ok());

        let tenant = store.tenant(&f.scope);
        // The others' codes work; the replayed launch left no code, person, course or launch.
        for ok in ["n-a", "n-b"] {
            let code = sha256_hex(format!("code-{ok}").as_bytes());
            assert!(
                tenant.redeem_handoff(&code).await.unwrap().is_some(),
                "{ok}"
            );
        }
        assert_eq!(
            count(&store, "people", "platform_user_id = 'u-replayer'").await,
            0
        );
        assert_eq!(
            count(&store, "contexts", "platform_context_id = 'c-replayed'").await,
            0
        );
        assert_eq!(count(&store, "launches", "1 = 1").await, 3);
        let entries = tenant.audit_entries().await.unwrap();
        assert_eq!(accepted_launches(&entries), 3);
        let report = store
            .verify_audit(Some(&f.scope.tenant_id().to_string()))
            .await
            .unwrap()
            .remove(0);
        assert!(report.is_intact(), "{report:?}");
    })
    .await;
}

#[tokio::test]
async fn shared_rows_change_only_when_a_launch_changes_them() {
    for_each_db(|store| async move {
        let f = fixture(&store, "rows").await;
        let (scope, mut l) = launch(&f, "n-1", "u-1", "c-1");
        store
            .record_launches(&[(scope.clone(), l.clone())])
            .await
            .unwrap()[0]
            .as_ref()
            .unwrap();
        // Created with the launch's values.
        assert_eq!(count(&store, "contexts", "title = 'Course c-1'").await, 1);
        assert_eq!(count(&store, "resources", "title = 'Quiz'").await, 1);

        // A launch that names no title keeps the stored one; the enrolment's roles follow
        // every launch (a roster sync relies on launches touching enrolments).
        l.nonce = "n-2".into();
        l.handoff_code_hash = sha256_hex(b"code-n-2");
        l.context.as_mut().unwrap().title = None;
        l.resource.as_mut().unwrap().1 = None;
        l.roles = vec![Role::Instructor];
        store
            .record_launches(&[(scope.clone(), l.clone())])
            .await
            .unwrap()[0]
            .as_ref()
            .unwrap();
        assert_eq!(count(&store, "contexts", "title = 'Course c-1'").await, 1);
        assert_eq!(count(&store, "resources", "title = 'Quiz'").await, 1);
        assert_eq!(
            count(&store, "enrollments", "roles LIKE '%instructor%'").await,
            1
        );

        // New values are taken, and the service URLs a launch brings are kept.
        l.nonce = "n-3".into();
        l.handoff_code_hash = sha256_hex(b"code-n-3");
        let c = l.context.as_mut().unwrap();
        c.title = Some("Course c-1, renamed".into());
        c.memberships_url = Some("https://lms.example/api/lti/courses/c-1/names_and_roles".into());
        l.resource.as_mut().unwrap().1 = Some("Final quiz".into());
        l.line_item.as_mut().unwrap().1 = Some("Final quiz".into());
        store
            .record_launches(&[(scope.clone(), l.clone())])
            .await
            .unwrap()[0]
            .as_ref()
            .unwrap();
        assert_eq!(
            count(
                &store,
                "contexts",
                "title = 'Course c-1, renamed' AND memberships_url LIKE '%names_and_roles'"
            )
            .await,
            1
        );
        assert_eq!(count(&store, "resources", "title = 'Final quiz'").await, 1);
        assert_eq!(
            count(&store, "grade_targets", "label = 'Final quiz'").await,
            1
        );
        assert_eq!(
            count(&store, "contexts", "1 = 1").await,
            1,
            "still one course"
        );
    })
    .await;
}

#[tokio::test]
async fn concurrent_writers_record_everything_in_one_unbroken_chain() {
    for_each_db(|store| async move {
        let a = fixture(&store, "busy-a").await;
        let b = fixture(&store, "busy-b").await;
        const WRITERS: usize = 4;
        const BATCHES: usize = 8;
        const PER_BATCH: usize = 12;
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let store = store.clone();
            // Every writer touches the same few people and courses of both tenants, in a
            // different order, with titles that change: the rows two writers would lock
            // in opposite orders if rows were not written in key order.
            let batches: Vec<Vec<(TenantScope, NewLaunch)>> = (0..BATCHES)
                .map(|n| {
                    let mut batch: Vec<_> = (0..PER_BATCH)
                        .map(|k| {
                            let f = if k.is_multiple_of(3) { &b } else { &a };
                            let mut l = launch(
                                f,
                                &format!("w{w}-b{n}-k{k}"),
                                &format!("u-{}", k % 5),
                                &format!("c-{}", k % 3),
                            );
                            l.1.context.as_mut().unwrap().title = Some(format!("Course v{n}"));
                            l
                        })
                        .collect();
                    if w % 2 == 1 {
                        batch.reverse();
                    }
                    batch
                })
                .collect();
            tasks.spawn(async move {
                let mut writer = store.launch_writer();
                let mut ok = 0;
                for batch in &batches {
                    for r in writer.record(batch).await.unwrap() {
                        r.unwrap();
                        ok += 1;
                    }
                    assert!(writer.holds_connection(), "kept between batches");
                }
                writer.release();
                assert!(!writer.holds_connection());
                ok
            });
        }
        let mut recorded = 0;
        while let Some(r) = tasks.join_next().await {
            recorded += r.unwrap();
        }
        assert_eq!(recorded, WRITERS * BATCHES * PER_BATCH);
        let per_tenant_b = WRITERS * BATCHES * PER_BATCH.div_ceil(3);
        for (f, expected) in [
            (&a, WRITERS * BATCHES * PER_BATCH - per_tenant_b),
            (&b, per_tenant_b),
        ] {
            let chain = f.scope.tenant_id().to_string();
            let report = store.verify_audit(Some(&chain)).await.unwrap().remove(0);
            assert!(report.is_intact(), "{report:?}");
            let entries = store.tenant(&f.scope).audit_entries().await.unwrap();
            assert_eq!(accepted_launches(&entries), expected);
        }
        assert_eq!(
            count(&store, "launches", "1 = 1").await,
            (WRITERS * BATCHES * PER_BATCH) as u64
        );
        // One row per person and course of each platform, however many writers upserted them.
        let tenant_of = |k: usize| if k.is_multiple_of(3) { "b" } else { "a" };
        let people: std::collections::HashSet<_> =
            (0..PER_BATCH).map(|k| (tenant_of(k), k % 5)).collect();
        let courses: std::collections::HashSet<_> =
            (0..PER_BATCH).map(|k| (tenant_of(k), k % 3)).collect();
        assert_eq!(count(&store, "people", "1 = 1").await, people.len() as u64);
        assert_eq!(
            count(&store, "contexts", "1 = 1").await,
            courses.len() as u64
        );
        // Every writer gave its connection back: the pool closes without waiting.
        tokio::time::timeout(std::time::Duration::from_secs(10), store.close())
            .await
            .expect("no connection left held");
    })
    .await;
}

#[tokio::test]
async fn a_batch_abandoned_midway_leaves_nothing_open_or_half_written() {
    for_each_db(|store| async move {
        let f = fixture(&store, "abandoned").await;
        for round in 0..20 {
            let batch = vec![
                launch(&f, &format!("r{round}-1"), "u-1", "c-1"),
                launch(&f, &format!("r{round}-2"), "u-2", "c-1"),
            ];
            {
                let mut writer = store.launch_writer();
                let fut = writer.record(&batch);
                tokio::pin!(fut);
                // Polled a few times with pauses that grow each round, so the caller gives
                // up (as a timeout would) at every stage: before the transaction, inside it,
                // or after the commit.
                for _ in 0..3 {
                    let done = std::future::poll_fn(|cx| {
                        std::task::Poll::Ready(fut.as_mut().poll(cx).is_ready())
                    })
                    .await;
                    if done {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_micros(100 * round));
                }
            }
            // All of it was kept or none of it, and nothing stays locked.
            let again = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                store.record_launches(&batch),
            )
            .await
            .expect("no transaction left holding a lock")
            .unwrap();
            let recorded = again.iter().filter(|r| r.is_ok()).count();
            let replayed = again
                .iter()
                .filter(|r| r.as_ref().err() == Some(&LaunchRefusal::NonceReplayed))
                .count();
            assert!(
                (recorded, replayed) == (2, 0) || (recorded, replayed) == (0, 2),
                "{again:?}"
            );
        }
        assert_eq!(count(&store, "launches", "1 = 1").await, 40);
        let chain = f.scope.tenant_id().to_string();
        let report = store.verify_audit(Some(&chain)).await.unwrap().remove(0);
        assert!(report.is_intact(), "{report:?}");
        tokio::time::timeout(std::time::Duration::from_secs(10), store.close())
            .await
            .expect("the pool closes");
    })
    .await;
}

#[tokio::test]
async fn sqlite_checkpoints_in_the_background_and_stops_when_the_pool_closes() {
    let db = TestDatabase::sqlite().await.unwrap();
    let path = std::path::PathBuf::from(db.url.trim_start_matches("sqlite://"));
    let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let f = fixture(&db.store, "checkpointed").await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let before = size();
    let batch: Vec<_> = (0..300)
        .map(|i| launch(&f, &format!("n-{i}"), &format!("u-{i}"), "c-1"))
        .collect();
    for r in db.store.record_launches(&batch).await.unwrap() {
        r.unwrap();
    }
    // Far below the autocheckpoint backstop, so only the background checkpointer can have
    // copied these pages from the WAL into the database file.
    let mut grown = false;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if size() > before {
            grown = true;
            break;
        }
    }
    assert!(grown, "the database file stayed at {before} bytes");
    tokio::time::timeout(std::time::Duration::from_secs(10), db.store.close())
        .await
        .expect("the checkpointer lets the pool close");
    db.cleanup().await;
}
