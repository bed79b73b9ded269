//! Grade passback into a platform that throttles the way Canvas does: a leaky bucket that
//! charges every request in flight a pre-flight penalty, reports what is left in
//! `X-Rate-Limit-Remaining`, and refuses with `403 Forbidden (Rate Limit Exceeded)` once it
//! overflows (testkit `CanvasBucket`).
//!
//! The same burst of scores is sent twice, to two fresh `lmsbridge serve` processes: one that
//! ignores the header (`LMSBRIDGE_PLATFORM_RATE_BUDGET_LOW_WATER=0`) and one with the default.
//! Both must deliver every learner's score exactly once; the one that reads the header must
//! slow down before Canvas refuses, so it is refused less often, and hardly at all.

mod support;

use std::time::Duration;
use support::{Database, Rng, Setup};
use testkit::CanvasBucket;

/// A smaller bucket than Canvas's 700, so that it overflows within the test's few hundred
/// scores: one request in flight costs its 50-unit penalty, a finished one costs 4. Sent one
/// at a time (50 ms each, 80 units a second) the bucket leaks faster than it fills; two at a
/// time it fills slowly, and at Canvas's four it overflows within a second.
const BUCKET: CanvasBucket = CanvasBucket {
    high_water: 400.0,
    preflight: 50.0,
    cost: 4.0,
    leak_per_sec: 100.0,
};
/// The low-water mark in proportion: 300 of Canvas's 700 is about 170 of 400.
const LOW_WATER: &str = "170";

async fn drain(low_water: &str) -> (u64, usize) {
    let db = Database::sqlite();
    let mut rng = Rng::new(support::seed("canvas_throttling"));
    let (world, mut serve) = support::setup(
        &db,
        Setup {
            kind: "canvas",
            extra_learners: 38,
            api_line_items: 2,
            no_worker: false,
            env: &[
                ("LMSBRIDGE_PLATFORM_RATE_PER_SEC", "200"),
                ("LMSBRIDGE_PLATFORM_RATE_BUDGET_LOW_WATER", low_water),
            ],
        },
    )
    .await;
    world
        .lms
        .faults()
        .set_score_latency(Duration::from_millis(50), Duration::from_millis(50));
    world.lms.set_canvas_bucket(Some(BUCKET));
    let plan = support::plan_one_each(&mut rng, &world.pairs, 0, &format!("canvas-{low_water}"));
    let taken = support::submit_in_lanes(&world.api, &plan, 8).await;
    let ids: Vec<String> = taken
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    let finals = support::wait_drained(&world.api, &ids, Duration::from_secs(120)).await;
    for (id, score) in &finals {
        assert_eq!(score["state"], "delivered", "{id}: {score:#}");
    }
    let newest = support::newest_per_pair(&plan, &taken);
    support::assert_gradebook_has_newest(&world.lms, &world.pairs, &newest);
    let accepted = world
        .lms
        .score_requests()
        .iter()
        .filter(|r| r.accepted())
        .count();
    assert_eq!(accepted, plan.len(), "every score accepted exactly once");
    let refused = world.lms.canvas_bucket_refusals();
    serve.kill();
    (refused, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_canvas_rate_budget_avoids_its_refusals_and_every_score_lands_once() {
    let (blind_refused, blind_accepted) = drain("0").await;
    let (read_refused, read_accepted) = drain(LOW_WATER).await;
    eprintln!(
        "403 Rate Limit Exceeded: {blind_refused} ignoring X-Rate-Limit-Remaining, \
         {read_refused} reading it"
    );
    assert_eq!(blind_accepted, read_accepted, "each score accepted once");
    assert!(
        blind_refused >= 4,
        "the bucket is tight enough to overflow at Canvas's concurrency: {blind_refused}"
    );
    assert!(
        read_refused * 4 <= blind_refused,
        "reading the budget avoids most refusals: {read_refused} vs {blind_refused}"
    );
}
