//! Two passback workers on one PostgreSQL database. `lmsbridge serve --no-worker` takes the
//! product's scores; two `lmsbridge worker` processes claim them with leases
//! (`FOR UPDATE SKIP LOCKED`) and send them to the simulated LMS, which holds each post for
//! 30-90 ms so that two sends of one score would overlap.
//!
//! The LMS's log of posts (start, end, learner, column, timestamp) must show no score sent
//! twice at once, and every score sent exactly once: each delivered score in exactly one
//! post, each with a single attempt. Leases are 60 s and a send takes well under one, so no
//! lease may lapse here; a score with a second attempt fails the test and says so.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use support::{Database, Rng, Setup};

const SCORES: usize = 240;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_never_send_one_claimed_score_at_once_on_postgres() {
    let Some(db) = Database::postgres().await else {
        return;
    };
    let seed = support::seed("passback_two_workers");
    let mut rng = Rng::new(seed);
    let (world, _api) = support::setup(
        &db,
        Setup {
            kind: "lti",
            extra_learners: 4,
            api_line_items: 1,
            no_worker: true,
            env: &[],
        },
    )
    .await;
    world
        .lms
        .faults()
        .set_score_latency(Duration::from_millis(30), Duration::from_millis(90));
    let _workers = [
        world.lmsbridge.worker("worker-a"),
        world.lmsbridge.worker("worker-b"),
    ];

    let plan = support::plan_scores(&mut rng, &world.pairs, SCORES, &format!("two-{seed}"));
    let mut taken = Vec::with_capacity(SCORES);
    for s in &plan {
        taken.push(
            world
                .api
                .submit_until_taken(s, Duration::from_secs(30))
                .await,
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ids: Vec<String> = taken
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    let scores = support::wait_drained(&world.api, &ids, Duration::from_secs(120)).await;

    let newest = support::newest_per_pair(&plan, &taken);
    support::assert_gradebook_has_newest(&world.lms, &world.pairs, &newest);
    let newest_ids: Vec<String> = newest
        .values()
        .map(|(_, t)| t["id"].as_str().unwrap().to_owned())
        .collect();
    support::assert_all_delivered_or_superseded(&scores, &newest_ids);
    let requests = world.lms.score_requests();
    support::assert_received_in_order(&requests);

    // No two posts of one score at once, and one post per score.
    let mut posts: BTreeMap<support::ScoreKey, Vec<&testkit::ScoreRequestRecord>> = BTreeMap::new();
    for r in &requests {
        posts.entry(support::score_key(r)).or_default().push(r);
    }
    for (key, same) in &posts {
        for (i, a) in same.iter().enumerate() {
            for b in &same[i + 1..] {
                assert!(
                    !a.overlaps(b),
                    "{key:?} was sent twice at once: {a:?} {b:?}"
                );
            }
        }
        assert_eq!(same.len(), 1, "{key:?} was sent {} times", same.len());
        assert!(same[0].accepted(), "{:?}", same[0]);
    }

    // Every delivered score is exactly one of those posts, after exactly one attempt; a
    // superseded one was never sent.
    let pair_of = |s: &serde_json::Value| {
        world
            .pairs
            .iter()
            .find(|p| p.grade_target_id == s["grade_target_id"] && p.person_id == s["person_id"])
            .expect("a score of a known pair")
    };
    let mut workers = BTreeSet::new();
    let mut delivered = 0;
    for (id, score) in &scores {
        let pair = pair_of(score);
        let key = (
            pair.line_item_id.clone(),
            pair.user_id.clone(),
            score["timestamp_micros"].as_i64().unwrap(),
        );
        let attempts = score["attempt_log"].as_array().unwrap();
        match score["state"].as_str() {
            Some("delivered") => {
                assert!(posts.contains_key(&key), "{id} delivered but never posted");
                assert_eq!(
                    attempts.len(),
                    1,
                    "{id} took {} attempts: a lease lapsed or two workers sent it: {score:#}",
                    attempts.len()
                );
                workers.insert(attempts[0]["worker"].as_str().unwrap().to_owned());
                delivered += 1;
            }
            _ => {
                assert!(!posts.contains_key(&key), "superseded {id} was sent");
                assert!(attempts.is_empty(), "{score:#}");
            }
        }
    }
    assert_eq!(
        delivered,
        posts.len(),
        "every post is a delivered score and back"
    );
    assert_eq!(workers.len(), 2, "both workers delivered: {workers:?}");
    println!(
        "{} posts for {SCORES} scores, {delivered} delivered by {workers:?}",
        requests.len()
    );

    let verify = world.lmsbridge.audit_verify();
    assert!(
        verify.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
