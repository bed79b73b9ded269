//! The bulk score path (`TenantStore::enqueue_scores`) on SQLite and, when configured,
//! PostgreSQL: each item answered as `enqueue_score` would answer it sent alone, in order,
//! with the same stored states, timestamps and audit entries, in one transaction.

use domain::*;
use std::collections::HashMap;
use store::testing::{SeededLaunch, TestDatabase, seed_launch};
use store::*;
use url::Url;

fn base() -> Url {
    Url::parse("https://lms.example/").unwrap()
}

/// A learner's launch into line item `line_item` of the seeded platform: (target, person).
async fn learner(
    store: &Store,
    seed: &SeededLaunch,
    user: &str,
    line_item: &str,
) -> (GradeTargetId, PersonId) {
    let now = now_micros();
    let launch = store
        .tenant(&seed.scope)
        .record_launch(&NewLaunch {
            platform_id: seed.platform.id,
            deployment_id: "dep-1".into(),
            nonce: crypto::random_token(16),
            nonce_expires_at: now + 3_600_000_000,
            message_type: "LtiResourceLinkRequest".into(),
            person: Some(LaunchPerson {
                platform_user_id: user.into(),
                ..Default::default()
            }),
            roles: vec![Role::Learner],
            context: Some(LaunchContext {
                platform_context_id: "course-1".into(),
                ..Default::default()
            }),
            resource: Some((format!("res-{line_item}"), None)),
            line_item: Some((base().join(line_item).unwrap().to_string(), None)),
            extras: serde_json::json!({}),
            handoff_code_hash: crypto::random_token(16),
            handoff_expires_at: now + 60_000_000,
        })
        .await
        .unwrap();
    (launch.grade_target_id.unwrap(), launch.person_id.unwrap())
}

fn request(
    (target, person): (GradeTargetId, PersonId),
    given: f64,
    key: Option<&str>,
) -> ScoreRequest {
    ScoreRequest {
        score: NewScore {
            grade_target_id: target,
            person_id: person,
            score_given: Some(given),
            score_maximum: Some(10.0),
            comment: None,
            activity_progress: ActivityProgress::Completed,
            grading_progress: GradingProgress::FullyGraded,
            actor: Actor {
                kind: ActorKind::AiGrader,
                id: "grader-1".into(),
            },
        },
        idempotency_key: key.map(str::to_owned),
        // Stands for the hash of the body: the same given value is the same request.
        request_hash: format!("{}:{}:{}", target, person, given),
    }
}

/// An item's answer without ids: which earlier item (or stored score) it names.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Created,
    Replayed(String),
    Conflict,
    NotFound,
}

/// A tenant with three pairs, a queued score and a delivered one, another tenant's pair, and
/// the batch script over them.
struct Script {
    items: Vec<ScoreRequest>,
    /// Names of the scores that exist before the script: "old" (queued, key "old", pair 0).
    before: HashMap<ScoreId, String>,
}

async fn script(
    store: &Store,
    name: &str,
    stranger: (GradeTargetId, PersonId),
) -> (SeededLaunch, Script) {
    let seed = seed_launch(store, name, PlatformKind::Moodle, &base())
        .await
        .unwrap();
    let p0 = (
        seed.launch.grade_target_id.unwrap(),
        seed.launch.person_id.unwrap(),
    );
    let p1 = learner(store, &seed, "user-2", "line_items/1").await;
    let p2 = learner(store, &seed, "user-1", "line_items/2").await;
    let unknown = (p0.0, PersonId::generate());
    let t = store.tenant(&seed.scope);
    let EnqueueOutcome::Created(old) = t
        .enqueue_score(&request(p0, 1.0, Some("old")))
        .await
        .unwrap()
    else {
        panic!("new")
    };
    let items = vec![
        request(p0, 7.0, Some("a")),      // 0: corrects "old", supersedes it
        request(p0, 8.0, None),           // 1: corrects 0, supersedes it
        request(unknown, 5.0, Some("u")), // 2: unknown person; writes nothing, key stays free
        request(p0, 7.0, Some("a")),      // 3: replays 0
        request(p0, 9.0, Some("a")),      // 4: key used with another body
        request(p1, 6.0, Some("b")),      // 5: first score of p1
        request(p0, 1.0, Some("old")),    // 6: replays the stored score
        request(p1, 2.0, Some("old")),    // 7: the stored key with another body
        request(stranger, 4.0, None),     // 8: another tenant's pair
        request(p2, 3.0, Some("u")),      // 9: takes the key item 2 left free
        request(p2, 3.0, Some("u")),      // 10: replays 9
        request(p1, 4.0, None),           // 11: corrects 5, supersedes it
    ];
    let before = HashMap::from([(old.id, "old".to_owned())]);
    (seed, Script { items, before })
}

/// Names every score id: "old" or "item N" (the item that created it).
fn names(script: &Script, created: &[(usize, ScoreId)]) -> HashMap<String, String> {
    let mut names: HashMap<String, String> = script
        .before
        .iter()
        .map(|(id, n)| (id.to_string(), n.clone()))
        .collect();
    for (i, id) in created {
        names.insert(id.to_string(), format!("item {i}"));
    }
    names
}

/// What the tenant's store holds after the script, with ids replaced by names: each
/// answer, each named score's state, each pair's timestamps in item order, and every audit
/// entry about scores (action, subject, the score it corrects, what supersedes it).
#[derive(Debug, PartialEq)]
struct Observed {
    answers: Vec<Answer>,
    states: Vec<(String, ScoreState)>,
    audit: Vec<(String, String, Option<String>, Option<String>)>,
}

async fn observe(
    store: &Store,
    seed: &SeededLaunch,
    script: &Script,
    records: Vec<Result<(bool, ScoreRecord), Answer>>,
) -> Observed {
    let t = store.tenant(&seed.scope);
    let created: Vec<(usize, ScoreId)> = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            Ok((true, rec)) => Some((i, rec.id)),
            _ => None,
        })
        .collect();
    let names = names(script, &created);
    let name = |id: &str| {
        names
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("unknown {id}"))
    };
    let answers = records
        .iter()
        .map(|r| match r {
            Ok((true, _)) => Answer::Created,
            Ok((false, rec)) => Answer::Replayed(name(&rec.id.to_string())),
            Err(a) => match a {
                Answer::Conflict => Answer::Conflict,
                _ => Answer::NotFound,
            },
        })
        .collect();
    let mut states = Vec::new();
    let mut last_per_pair: HashMap<(String, String), i64> = HashMap::new();
    let mut all: Vec<(String, ScoreId)> = script
        .before
        .iter()
        .map(|(id, n)| (n.clone(), *id))
        .collect();
    all.extend(created.iter().map(|(i, id)| (format!("item {i}"), *id)));
    for (n, id) in all {
        let rec = t.score(id).await.unwrap().unwrap();
        let pair = (rec.grade_target_id.clone(), rec.person_id.clone());
        if let Some(last) = last_per_pair.insert(pair, rec.timestamp_micros) {
            assert!(
                rec.timestamp_micros > last,
                "{n}: timestamps strictly increase per pair in the order scores were sent"
            );
        }
        states.push((n, rec.state));
    }
    let audit = t
        .audit_entries()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action.starts_with("score."))
        .map(|e| {
            let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
            let id = e.subject.trim_start_matches("score:").to_owned();
            let field = |v: &serde_json::Value| v.as_str().map(name);
            (
                e.action,
                name(&id),
                field(&detail["before"]["score_id"]),
                field(&detail["superseded_by"]),
            )
        })
        .collect();
    Observed {
        answers,
        states,
        audit,
    }
}

#[tokio::test]
async fn a_batch_is_answered_and_stored_as_the_same_scores_sent_one_by_one() {
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let other = seed_launch(&store, "stranger", PlatformKind::Moodle, &base())
            .await
            .unwrap();
        let stranger = (
            other.launch.grade_target_id.unwrap(),
            other.launch.person_id.unwrap(),
        );

        // One by one, through enqueue_score.
        let (one_seed, one_script) = script(&store, "one-by-one", stranger).await;
        let t = store.tenant(&one_seed.scope);
        let mut one = Vec::new();
        for item in &one_script.items {
            one.push(match t.enqueue_score(item).await {
                Ok(EnqueueOutcome::Created(r)) => Ok((true, r)),
                Ok(EnqueueOutcome::Replayed(r)) => Ok((false, r)),
                Err(StoreError::Conflict(_)) => Err(Answer::Conflict),
                Err(StoreError::NotFound) => Err(Answer::NotFound),
                Err(e) => panic!("{e}"),
            });
        }
        let one = observe(&store, &one_seed, &one_script, one).await;

        // All at once.
        let (batch_seed, batch_script) = script(&store, "batch", stranger).await;
        let outcomes = store
            .tenant(&batch_seed.scope)
            .enqueue_scores(&batch_script.items)
            .await
            .unwrap();
        assert_eq!(outcomes.len(), batch_script.items.len());
        let batch: Vec<_> = outcomes
            .into_iter()
            .map(|o| match o {
                ScoreBatchOutcome::Created(r) => Ok((true, r)),
                ScoreBatchOutcome::Replayed(r) => Ok((false, r)),
                ScoreBatchOutcome::Conflict(_) => Err(Answer::Conflict),
                ScoreBatchOutcome::NotFound => Err(Answer::NotFound),
            })
            .collect();
        // The records the batch answered match what it stored.
        for (i, r) in batch.iter().enumerate() {
            if let Ok((_, rec)) = r {
                let stored = store
                    .tenant(&batch_seed.scope)
                    .score(rec.id)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(&stored, rec, "item {i} on {}", db.label);
            }
        }
        let batch = observe(&store, &batch_seed, &batch_script, batch).await;

        use Answer::*;
        assert_eq!(
            one.answers,
            vec![
                Created,
                Created,
                NotFound,
                Replayed("item 0".into()),
                Conflict,
                Created,
                Replayed("old".into()),
                Conflict,
                NotFound,
                Created,
                Replayed("item 9".into()),
                Created,
            ],
            "{}",
            db.label
        );
        assert_eq!(batch, one, "{}", db.label);
        assert_eq!(
            batch.states,
            vec![
                ("old".to_owned(), ScoreState::Superseded),
                ("item 0".to_owned(), ScoreState::Superseded),
                ("item 1".to_owned(), ScoreState::Queued),
                ("item 5".to_owned(), ScoreState::Superseded),
                ("item 9".to_owned(), ScoreState::Queued),
                ("item 11".to_owned(), ScoreState::Queued),
            ]
        );
        // Corrections name what they replace; every supersession is audited.
        assert!(batch.audit.contains(&(
            "score.corrected".into(),
            "item 1".into(),
            Some("item 0".into()),
            None
        )));
        assert!(batch.audit.contains(&(
            "score.superseded".into(),
            "old".into(),
            None,
            Some("item 0".into())
        )));
        // The worker sees only the newest score of each pair.
        let claimed = store
            .claim_scores("w", now_micros() + 30_000_000, 100)
            .await
            .unwrap();
        let mut platform_users: Vec<_> = claimed
            .iter()
            .filter(|c| c.tenant_id == batch_seed.scope.tenant_id())
            .map(|c| (c.platform_user_id.clone(), c.score_given))
            .collect();
        platform_users.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.partial_cmp(&b.1).unwrap()));
        assert_eq!(
            platform_users,
            vec![
                ("user-1".to_owned(), Some(3.0)),
                ("user-1".to_owned(), Some(8.0)),
                ("user-2".to_owned(), Some(4.0)),
            ]
        );
        let reports = store.verify_audit(None).await.unwrap();
        assert!(reports.iter().all(|r| r.is_intact()), "{reports:?}");
        db.cleanup().await;
    }
}

#[tokio::test]
async fn another_tenant_reaches_nothing_and_keys_are_per_tenant() {
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let a = seed_launch(&store, "a", PlatformKind::Moodle, &base())
            .await
            .unwrap();
        let b = seed_launch(&store, "b", PlatformKind::Moodle, &base())
            .await
            .unwrap();
        let pair_a = (
            a.launch.grade_target_id.unwrap(),
            a.launch.person_id.unwrap(),
        );
        let pair_b = (
            b.launch.grade_target_id.unwrap(),
            b.launch.person_id.unwrap(),
        );
        let EnqueueOutcome::Created(mine) = store
            .tenant(&a.scope)
            .enqueue_score(&request(pair_a, 5.0, Some("shared-key")))
            .await
            .unwrap()
        else {
            panic!("new")
        };
        let mixed = (pair_a.0, pair_b.1);
        let out = store
            .tenant(&b.scope)
            .enqueue_scores(&[
                request(pair_a, 5.0, Some("shared-key")),
                request(pair_a, 6.0, None),
                request(mixed, 6.0, None),
                request(pair_b, 5.0, Some("shared-key")),
            ])
            .await
            .unwrap();
        assert_eq!(out[0], ScoreBatchOutcome::NotFound, "{}", db.label);
        assert_eq!(out[1], ScoreBatchOutcome::NotFound);
        assert_eq!(
            out[2],
            ScoreBatchOutcome::NotFound,
            "a target and a person of two tenants"
        );
        let ScoreBatchOutcome::Created(theirs) = &out[3] else {
            panic!("B's own pair with the same key as A's: {:?}", out[3])
        };
        assert_ne!(theirs.id, mine.id);
        // A's score is untouched, and B cannot see it.
        assert_eq!(
            store
                .tenant(&a.scope)
                .score(mine.id)
                .await
                .unwrap()
                .unwrap()
                .state,
            ScoreState::Queued
        );
        assert_eq!(store.tenant(&b.scope).score(mine.id).await.unwrap(), None);
        let a_audit = store.tenant(&a.scope).audit_entries().await.unwrap();
        assert!(
            a_audit
                .iter()
                .all(|e| !e.detail.contains(&theirs.id.to_string())),
            "nothing about B's batch in A's chain"
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_thousand_scores_in_one_batch_and_concurrent_batches_keep_pairs_ordered() {
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let seed = seed_launch(&store, "big", PlatformKind::Moodle, &base())
            .await
            .unwrap();
        let mut pairs = Vec::new();
        for u in 0..50 {
            for li in 0..4 {
                pairs.push(
                    learner(
                        &store,
                        &seed,
                        &format!("u-{u}"),
                        &format!("line_items/{li}"),
                    )
                    .await,
                );
            }
        }
        // 1,000 items: 200 pairs, five scores each, keys on every item.
        let items: Vec<ScoreRequest> = (0..1000)
            .map(|i| request(pairs[i % pairs.len()], i as f64, Some(&format!("k-{i}"))))
            .collect();
        let out = store
            .tenant(&seed.scope)
            .enqueue_scores(&items)
            .await
            .unwrap();
        let created: Vec<&ScoreRecord> = out
            .iter()
            .map(|o| match o {
                ScoreBatchOutcome::Created(r) => r,
                other => panic!("{other:?}"),
            })
            .collect();
        let queued = created
            .iter()
            .filter(|r| r.state == ScoreState::Queued)
            .count();
        assert_eq!(
            queued, 200,
            "{}: the last score of each pair stays queued",
            db.label
        );
        for (i, r) in created.iter().enumerate() {
            assert_eq!(r.state == ScoreState::Queued, i >= 800, "item {i}");
        }
        // Sending the same batch again replays every item and writes nothing.
        let again = store
            .tenant(&seed.scope)
            .enqueue_scores(&items)
            .await
            .unwrap();
        assert!(
            again
                .iter()
                .zip(&created)
                .all(|(o, r)| matches!(o, ScoreBatchOutcome::Replayed(x) if x.id == r.id))
        );

        // Two batches over the same people at once, and single scores between them.
        let t1 = store.clone();
        let t2 = store.clone();
        let s1 = seed.scope.clone();
        let s2 = seed.scope.clone();
        let first: Vec<ScoreRequest> = pairs.iter().map(|p| request(*p, 1.5, None)).collect();
        let second: Vec<ScoreRequest> =
            pairs.iter().rev().map(|p| request(*p, 2.5, None)).collect();
        let singles: Vec<ScoreRequest> = pairs
            .iter()
            .take(20)
            .map(|p| request(*p, 3.5, None))
            .collect();
        let (r1, r2, r3) = tokio::join!(
            async move { t1.tenant(&s1).enqueue_scores(&first).await },
            async move { t2.tenant(&s2).enqueue_scores(&second).await },
            async {
                for s in &singles {
                    store.tenant(&seed.scope).enqueue_score(s).await.unwrap();
                }
            }
        );
        let (r1, r2) = (r1.unwrap(), r2.unwrap());
        let () = r3;
        assert!(
            r1.iter()
                .chain(&r2)
                .all(|o| matches!(o, ScoreBatchOutcome::Created(_)))
        );
        // Per pair: exactly one queued score, and it is the one with the newest timestamp.
        let claimed = store
            .claim_scores("w", now_micros() + 30_000_000, 1000)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 200, "{}", db.label);
        let all_ids: Vec<ScoreId> = r1
            .iter()
            .chain(&r2)
            .map(|o| match o {
                ScoreBatchOutcome::Created(r) => r.id,
                _ => unreachable!(),
            })
            .collect();
        let t = store.tenant(&seed.scope);
        let mut newest: HashMap<(String, String), (i64, ScoreId)> = HashMap::new();
        let mut seen: HashMap<(String, String), Vec<i64>> = HashMap::new();
        for id in all_ids.iter().chain(created.iter().map(|r| &r.id)) {
            let r = t.score(*id).await.unwrap().unwrap();
            let pair = (r.grade_target_id.clone(), r.person_id.clone());
            seen.entry(pair.clone())
                .or_default()
                .push(r.timestamp_micros);
            let e = newest.entry(pair).or_insert((r.timestamp_micros, r.id));
            if r.timestamp_micros > e.0 {
                *e = (r.timestamp_micros, r.id);
            }
        }
        for ts in seen.values() {
            let mut sorted = ts.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(
                sorted.len(),
                ts.len(),
                "no two scores of a pair share a timestamp"
            );
        }
        for c in &claimed {
            let rec = t.score(c.id).await.unwrap().unwrap();
            let pair = (rec.grade_target_id.clone(), rec.person_id.clone());
            let newest_ts = seen[&pair].iter().max().copied().unwrap();
            assert!(
                rec.timestamp_micros >= newest_ts,
                "the queued score is the newest of its pair"
            );
        }
        db.cleanup().await;
    }
}
