//! Grade passback through a misbehaving platform. The simulated LMS answers a share of score
//! posts with 429 and `Retry-After` (1 s or 2 s) and another share with 500, and revokes
//! access tokens soon after their first use; a real `lmsbridge serve` with its per-platform
//! rate set low (`LMSBRIDGE_PLATFORM_RATE_PER_SEC=20`) sends a few hundred scores through it.
//!
//! Every score must still land (the newest of each learner in each column), no retry of a
//! score may come sooner than the `Retry-After` the platform gave for it (from the LMS's own
//! clock of each post), and no one-second window may hold more posts than the limiter allows
//! (rate + burst, where lmsbridge sets the burst to half the rate).

mod support;

use std::time::{Duration, Instant};
use support::{Database, Rng, Setup};
use testkit::FaultKind;

const RATE: usize = 20;
/// The token bucket's size: `AppBuilder` makes it half the rate.
const BURST: usize = RATE / 2;
const SCORES: usize = 240;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_score_lands_through_throttling_server_errors_and_expiring_tokens() {
    let db = Database::sqlite();
    let seed = support::seed("passback_faults");
    let mut rng = Rng::new(seed);
    let rate = RATE.to_string();
    let (world, mut serve) = support::setup(
        &db,
        Setup {
            kind: "lti",
            extra_learners: 10,
            api_line_items: 1,
            no_worker: false,
            env: &[
                ("LMSBRIDGE_PLATFORM_RATE_PER_SEC", &rate),
                ("LMSBRIDGE_PLATFORM_MAX_CONCURRENCY", "8"),
            ],
        },
    )
    .await;
    let faults = world.lms.faults();
    faults.set_score_latency(Duration::from_millis(2), Duration::from_millis(15));
    let plan = support::plan_scores(&mut rng, &world.pairs, SCORES, &format!("faults-{seed}"));
    let (quick, throttled_phase) = plan.split_at(SCORES / 2);
    let started = Instant::now();
    let mut taken = Vec::with_capacity(SCORES);
    // One score first, so that the access token is fetched and cached; then a pause that
    // fills the limiter's bucket.
    taken.push(
        world
            .api
            .submit_until_taken(&quick[0], Duration::from_secs(30))
            .await,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !world.lms.score_requests().iter().any(|r| r.accepted()) {
        assert!(Instant::now() < deadline, "the first score was never sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Then as fast as the product can, four requests at a time, and let the worker catch
    // up: with more learners and columns than the rate per second, the limiter is what
    // holds it back.
    taken.extend(support::submit_in_lanes(&world.api, &quick[1..], 4).await);
    let quick_ids: Vec<String> = taken
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    support::wait_drained(&world.api, &quick_ids, Duration::from_secs(60)).await;
    // Then through throttling, errors and expiring tokens, spread over a few seconds so
    // that the worker sends while scores still arrive.
    faults.expire_tokens_after_use(Duration::from_millis(800));
    faults.set_score_fault_mix(&[
        (
            0.12,
            FaultKind::TooManyRequests {
                retry_after_secs: 1,
            },
        ),
        (
            0.06,
            FaultKind::TooManyRequests {
                retry_after_secs: 2,
            },
        ),
        (0.12, FaultKind::ServerError),
    ]);
    for s in throttled_phase {
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
    let scores = support::wait_drained(&world.api, &ids, Duration::from_secs(240)).await;
    let drained_in = started.elapsed();

    // Every score landed: the newest of each pair is in the gradebook and delivered.
    let newest = support::newest_per_pair(&plan, &taken);
    support::assert_gradebook_has_newest(&world.lms, &world.pairs, &newest);
    let newest_ids: Vec<String> = newest
        .values()
        .map(|(_, t)| t["id"].as_str().unwrap().to_owned())
        .collect();
    support::assert_all_delivered_or_superseded(&scores, &newest_ids);
    let requests = world.lms.score_requests();
    support::assert_received_in_order(&requests);

    // The faults happened, and the scores they hit were retried.
    let status_count = |status: u16| requests.iter().filter(|r| r.status == status).count();
    let (throttled, failed, expired) = (status_count(429), status_count(500), status_count(401));
    assert!(
        throttled > 0 && failed > 0,
        "{throttled} 429s, {failed} 500s"
    );
    assert!(
        expired > 0
            && world
                .lms
                .stats()
                .rejections(testkit::RejectReason::TokenExpired)
                > 0,
        "no token expired in use"
    );
    let retried = scores
        .values()
        .filter(|s| s["attempts"].as_i64().unwrap_or(0) > 1)
        .count();
    assert!(retried > 0, "no score needed a second attempt");

    // No retry sooner than Retry-After: the next post of the same score (same learner, column
    // and timestamp) starts at least that long after the 429 was answered.
    let mut spaced = 0;
    let mut closest = Duration::MAX;
    for r in requests.iter().filter(|r| r.status == 429) {
        let wait = Duration::from_secs(r.retry_after_secs.expect("429 with Retry-After"));
        let key = support::score_key(r);
        let next = requests
            .iter()
            .filter(|n| n.started_at > r.started_at && support::score_key(n) == key)
            .min_by_key(|n| n.started_at);
        let Some(next) = next else {
            // Superseded by a newer score before its retry was due.
            continue;
        };
        let gap: Duration = (next.started_at - r.finished_at)
            .try_into()
            .expect("the retry came after the answer");
        assert!(
            gap >= wait,
            "{key:?} was retried {gap:?} after a 429 asking for {wait:?}"
        );
        closest = closest.min(gap - wait);
        spaced += 1;
    }
    assert!(spaced > 0, "no throttled score was retried");

    // The rate: in no one-second window more sends than rate + burst. A post refused with
    // 401 is repeated at once with a fresh token under the same permit of the limiter (one
    // send, two posts): the repeat is not counted.
    let mut by_start: Vec<_> = requests.iter().collect();
    by_start.sort_by_key(|r| r.started_at);
    let mut repeats = std::collections::HashSet::new();
    for (i, r) in by_start.iter().enumerate() {
        if r.status == 401 {
            let key = support::score_key(r);
            if let Some(j) =
                (i + 1..by_start.len()).find(|j| support::score_key(by_start[*j]) == key)
            {
                repeats.insert(j);
            }
        }
    }
    let starts: Vec<_> = by_start
        .iter()
        .enumerate()
        .filter(|(i, _)| !repeats.contains(i))
        .map(|(_, r)| r.started_at)
        .collect();
    let mut busiest = 0;
    let mut end = 0;
    for (i, start) in starts.iter().enumerate() {
        while end < starts.len() && starts[end] < *start + time::Duration::SECOND {
            end += 1;
        }
        busiest = busiest.max(end - i);
    }
    assert!(
        busiest <= RATE + BURST,
        "{busiest} posts in one second; the limit is {RATE}/s with a burst of {BURST}"
    );
    // The worker had more to send than the rate allows, so the limit was what held it back.
    assert!(
        busiest >= RATE,
        "the worker never reached the rate ({busiest} posts in the busiest second)"
    );
    println!(
        "{} posts ({throttled} 429, {failed} 500, {expired} 401) for {SCORES} scores, {retried} scores retried, {spaced} retries after 429 (closest {closest:?} beyond Retry-After), busiest second {busiest}, drained in {drained_in:?}",
        requests.len()
    );

    serve.kill();
    let verify = world.lmsbridge.audit_verify();
    assert!(
        verify.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
