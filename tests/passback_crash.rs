//! Grade passback survives SIGKILL. A real `lmsbridge serve` process takes a few hundred
//! scores through the product API while its worker sends them to the simulated LMS; the test
//! kills it (SIGKILL: no shutdown code runs) at seeded random moments while it is sending,
//! restarts it on the same port, and goes on; the last kill comes the moment the LMS has
//! taken one of the final scores but not yet answered, so lmsbridge must send that score again
//! without knowing it already landed. The product keeps submitting through the outages,
//! retrying each request with its Idempotency-Key.
//!
//! Afterwards the gradebook must hold exactly the newest score of every learner in every
//! column, the LMS must never have been sent a score older than one it had already taken nor
//! two scores of one learner and column at once, every score ends delivered or superseded,
//! a request repeated with its key after a kill returns the same score, and the audit chain
//! verifies. On SQLite and on PostgreSQL.
//!
//! A score whose send a kill interrupted stays leased to the dead process until the lease
//! (60 s) runs out; then a new worker takes it. That wait dominates the test's run time.

mod support;

use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Database, Rng, Setup, Submission};

/// Score requests per run.
const SCORES: usize = 300;

async fn crash_run(db: Database) {
    let seed = support::seed(&format!("passback_crash ({})", db.label));
    let mut rng = Rng::new(seed);
    let (world, first) = support::setup(
        &db,
        Setup {
            kind: "lti",
            extra_learners: 2,
            api_line_items: 1,
            no_worker: false,
            env: &[("LMSBRIDGE_PLATFORM_RATE_PER_SEC", "40")],
        },
    )
    .await;
    let mut serve = first;
    // Slow enough that a kill finds posts in flight, some before the LMS looked at them and
    // some after it took the score but before the answer went back.
    let faults = world.lms.faults();
    faults.set_score_latency(Duration::from_millis(5), Duration::from_millis(30));
    faults.set_score_answer_delay(Duration::from_millis(5), Duration::from_millis(30));
    let tag = format!("crash-{seed}");
    let mut plan = support::plan_scores(&mut rng, &world.pairs, SCORES, &tag);
    // Last, one more score for every pair: the newest of each.
    let last_round = support::plan_one_each(&mut rng, &world.pairs, SCORES, &tag);
    let last_comments: HashSet<String> = last_round.iter().map(|s| s.comment.clone()).collect();
    plan.extend(last_round);
    let total = plan.len();

    // The product: one request after another, each repeated until lmsbridge takes it.
    let taken: Arc<Mutex<Vec<Value>>> = Arc::default();
    let submitter = {
        let (api, plan, taken) = (world.api.clone(), plan.clone(), taken.clone());
        tokio::spawn(async move {
            for s in &plan {
                let score = api.submit_until_taken(s, Duration::from_secs(60)).await;
                taken.lock().unwrap().push(score);
                tokio::time::sleep(Duration::from_millis(8)).await;
            }
        })
    };

    // Kills at random points while the scores stream in, and one more the moment the LMS
    // takes a score of the last round: that post's answer is still on its way, so the newest
    // score of its pair is on the LMS while lmsbridge does not know it.
    let mut thresholds: Vec<Option<usize>> = (0..3 + rng.below(2))
        .map(|_| Some(30 + rng.below(SCORES as u64 - 60) as usize))
        .collect();
    thresholds.sort_unstable();
    thresholds.push(None);
    let kills = thresholds.len();
    let mut repeated = 0;
    for (k, threshold) in thresholds.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(90);
        match threshold {
            Some(threshold) => {
                while taken.lock().unwrap().len() < *threshold {
                    assert!(
                        Instant::now() < deadline,
                        "the product's requests stalled: {}",
                        serve.log_text()
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // Kill while sending: after the LMS has seen a post from this process.
                let sent_before = world.lms.score_requests().len();
                while world.lms.score_requests().len() == sent_before {
                    assert!(Instant::now() < deadline, "the worker sends nothing");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
            }
            None => {
                // Before the last round goes out, answers are held long enough that the
                // kill below always comes between the LMS taking a score and its answer.
                while taken.lock().unwrap().len() < SCORES - 5 {
                    assert!(Instant::now() < deadline, "the product's requests stalled");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                faults
                    .set_score_answer_delay(Duration::from_millis(300), Duration::from_millis(400));
                let in_last_round = |lms: &testkit::SimulatedLms| {
                    lms.scores().iter().any(|s| {
                        s.comment
                            .as_ref()
                            .is_some_and(|c| last_comments.contains(c))
                    })
                };
                while !in_last_round(&world.lms) {
                    assert!(Instant::now() < deadline, "the last round was never sent");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        let acknowledged = taken.lock().unwrap().len();
        serve.kill();
        println!("kill {k}: after {acknowledged} scores were taken");
        // Down for a moment: the product's requests fail meanwhile and are repeated.
        tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
        serve = world.lmsbridge.serve(world.port, false).0;
        faults.set_score_answer_delay(Duration::from_millis(5), Duration::from_millis(30));

        // Requests answered before the kill, repeated with their keys: the same scores.
        let answered: Vec<(Submission, Value)> = {
            let taken = taken.lock().unwrap();
            (0..6)
                .map(|_| rng.below(acknowledged as u64) as usize)
                .map(|i| (plan[i].clone(), taken[i].clone()))
                .collect()
        };
        for (s, first) in answered {
            let again = world
                .api
                .submit_until_taken(&s, Duration::from_secs(30))
                .await;
            assert_eq!(again["id"], first["id"], "{} gave a second score", s.key);
            assert_eq!(again["timestamp_micros"], first["timestamp_micros"]);
            repeated += 1;
        }
    }
    tokio::time::timeout(Duration::from_secs(120), submitter)
        .await
        .expect("the product finished submitting")
        .unwrap();
    let taken = taken.lock().unwrap().clone();
    assert_eq!(taken.len(), total);

    // Every key made one score: the same count of distinct ids, and one "queued" or
    // "corrected" audit entry each.
    let ids: Vec<String> = taken
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), total, "a key made two scores");
    let created = world.api.audit("score.").await;
    let made = created
        .iter()
        .filter(|e| {
            matches!(
                e["action"].as_str(),
                Some("score.queued" | "score.corrected")
            )
        })
        .count();
    assert_eq!(made, total, "one audit entry per score made");

    // Interrupted sends wait for their lease (60 s) before another worker takes them.
    let scores = support::wait_drained(&world.api, &ids, Duration::from_secs(180)).await;
    let newest = support::newest_per_pair(&plan, &taken);
    support::assert_gradebook_has_newest(&world.lms, &world.pairs, &newest);
    let requests = world.lms.score_requests();
    let resent = support::assert_received_in_order(&requests);
    let newest_ids: Vec<String> = newest
        .values()
        .map(|(_, t)| t["id"].as_str().unwrap().to_owned())
        .collect();
    support::assert_all_delivered_or_superseded(&scores, &newest_ids);
    let superseded = scores
        .values()
        .filter(|s| s["state"] == "superseded")
        .count();
    assert!(superseded > 0, "no score was coalesced");
    // The kills hit sends in flight: posts whose connection closed before the answer.
    let abandoned: Vec<_> = requests.iter().filter(|r| r.abandoned).collect();
    assert!(!abandoned.is_empty(), "no kill found a post in flight");
    let taken_unheard = abandoned.iter().filter(|r| r.accepted()).count();
    assert!(
        resent > 0,
        "no score the LMS had taken unheard was sent again"
    );
    println!(
        "{}: {} posts for {total} scores ({superseded} superseded), {kills} kills abandoning {} posts ({taken_unheard} taken by the LMS unheard), {resent} posts of an already taken score, {repeated} requests repeated",
        db.label,
        requests.len(),
        abandoned.len(),
    );

    serve.kill();
    let verify = world.lmsbridge.audit_verify();
    assert!(
        verify.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passback_survives_sigkill_while_sending_on_sqlite() {
    crash_run(Database::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passback_survives_sigkill_while_sending_on_postgres() {
    let Some(db) = Database::postgres().await else {
        return;
    };
    crash_run(db).await;
}
