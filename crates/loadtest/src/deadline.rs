//! `lmsbridge-loadtest deadline`: an assignment deadline. Every student of a course hands in
//! every assignment at once and the product grades them all in a burst through lmsbridge's
//! product API (`POST /api/v1/scores:batch` or `POST /api/v1/scores`); lmsbridge's worker
//! then drains the queue into a simulated LMS (AGS 2.0 §3.4 scores) that allows a fixed
//! request rate (a token bucket answering 429 with `Retry-After`) and refuses a share of the
//! posts at random with 429.
//!
//! The generator plays the LMS itself (`testkit::SimulatedLms`, with the extra learners) and
//! the product: it launches one learner to make the course known, syncs the roster through
//! the API to learn everyone's person id, creates the assignments' line items through the
//! API, then sends the scores and watches the LMS's gradebook until every learner's newest
//! score is there, or the drain limit passes. It reports the enqueue rate, the drain time,
//! the platform's utilisation (requests received per second over the rate allowed), and
//! what was duplicated, lost or coalesced. lmsbridge must already run, on loopback, with a
//! tenant whose launch URL is `/product/launch` on this LMS and the LMS registered as an LTI
//! platform (`bench/deadline.sh` does all of that).

use crate::platform::is_loopback;
use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use testkit::{Browser, FaultKind, LmsConfig, RateLimit, SimUser, SimulatedLms, ToolRegistration};
use time::OffsetDateTime;
use url::Url;

/// How scores reach lmsbridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `POST /api/v1/scores:batch`, `--batch-size` scores per request.
    Batch,
    /// `POST /api/v1/scores`, one score per request, `--concurrency` at once.
    Single,
}

#[derive(Debug, clap::Args)]
pub struct DeadlineArgs {
    /// lmsbridge's base URL (loopback only).
    #[arg(long)]
    lmsbridge: Url,
    /// A file holding the tenant's API key (kept off the command line).
    #[arg(long)]
    api_key_file: PathBuf,
    /// Where the simulated LMS listens; its issuer is `http://<this>`.
    #[arg(long)]
    lms_listen: SocketAddr,
    /// The client id and deployment id lmsbridge has registered for this LMS.
    #[arg(long, default_value = "deadline")]
    client_id: String,
    #[arg(long, default_value = "1")]
    deployment_id: String,
    #[arg(long, value_enum, default_value = "batch")]
    mode: Mode,
    #[arg(long, default_value_t = 2_000)]
    students: usize,
    #[arg(long, default_value_t = 5)]
    assignments: usize,
    /// Scores per batch request.
    #[arg(long, default_value_t = 1_000)]
    batch_size: usize,
    /// Requests in flight while enqueueing (batch mode: batches in flight).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Requests per second the LMS allows (its token bucket holds one second's worth).
    #[arg(long, default_value_t = 100.0)]
    platform_rate: f64,
    /// Share of score posts the LMS refuses at random with 429.
    #[arg(long, default_value_t = 0.05)]
    throttle_share: f64,
    /// `Retry-After` of those random refusals, in seconds.
    #[arg(long, default_value_t = 0)]
    throttle_retry_after: u64,
    /// Give up waiting for the queue to drain after this many seconds.
    #[arg(long, default_value_t = 600)]
    max_drain_seconds: u64,
    /// The process exits after this many seconds whatever it is doing.
    #[arg(long, default_value_t = 900)]
    wall_limit: u64,
    /// A name for this run in the results, e.g. "lmsbridge (SQLite)".
    #[arg(long, default_value = "lmsbridge")]
    label: String,
    /// Where to write the results (JSON).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct DeadlineRun {
    pub label: String,
    pub mode: Mode,
    pub students: usize,
    pub assignments: usize,
    pub scores: usize,
    /// Scores lmsbridge answered 202 for.
    pub accepted: usize,
    /// Scores refused or failed while enqueueing (should be 0).
    pub enqueue_failures: usize,
    pub enqueue_secs: f64,
    pub enqueue_per_sec: f64,
    /// From the first score sent to lmsbridge until the LMS held every learner's newest
    /// score.
    pub drain_secs: f64,
    /// From the last score accepted by lmsbridge until the same moment.
    pub drain_after_enqueue_secs: f64,
    pub drained: bool,
    pub platform_rate: f64,
    pub throttle_share: f64,
    /// Score posts that reached the LMS's score endpoint (accepted, refused at random, or
    /// otherwise refused), plus those its rate limit turned away.
    pub requests_sent: u64,
    pub requests_accepted: u64,
    pub refused_at_random: u64,
    pub refused_by_rate_limit: u64,
    /// Other refusals by the LMS (stale timestamps, ...).
    pub refused_otherwise: u64,
    /// From the first score post to the last accepted one.
    pub platform_window_secs: f64,
    pub requests_per_sec: f64,
    /// `requests_per_sec / platform_rate`.
    pub utilisation: f64,
    pub accepted_per_sec: f64,
    /// The same score (learner, line item, timestamp) accepted by the LMS more than once.
    pub duplicates: u64,
    /// Learners whose newest score the LMS does not hold at the end.
    pub lost: usize,
    /// Scores lmsbridge never sent because a newer one for the learner was queued.
    pub coalesced: usize,
    /// lmsbridge's final state of every accepted score.
    pub states: BTreeMap<String, usize>,
}

/// A learner of the simulated course.
fn student(n: usize) -> SimUser {
    SimUser {
        id: format!("learner-{n:05}"),
        name: format!("Learner {n}"),
        given_name: "Learner".into(),
        family_name: format!("{n}"),
        email: format!("learner-{n}@example.edu"),
        role: lti::roles::LtiRole::Learner,
    }
}

/// The score given for assignment `a` of student `s`, out of 100.
fn given(s: usize, a: usize) -> f64 {
    ((s * 37 + a * 11) % 101) as f64
}

pub fn run(args: DeadlineArgs) -> anyhow::Result<()> {
    if !is_loopback(&args.lmsbridge) || !args.lms_listen.ip().is_loopback() {
        bail!("lmsbridge and the LMS must both be on loopback");
    }
    if args.students == 0 || args.assignments == 0 || args.batch_size == 0 {
        bail!("--students, --assignments and --batch-size must be at least 1");
    }
    let wall = Duration::from_secs(args.wall_limit);
    std::thread::spawn(move || {
        std::thread::sleep(wall);
        eprintln!("lmsbridge-loadtest: wall-clock limit of {wall:?} reached, exiting");
        std::process::exit(3);
    });
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run_async(args))
}

struct Api {
    http: reqwest::Client,
    base: Url,
    key: String,
}

impl Api {
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let resp = self
            .http
            .post(self.base.join(path)?)
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(self.base.join(path)?)
            .bearer_auth(&self.key)
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("GET {path}: {status} {body}");
        }
        Ok(body)
    }
}

async fn run_async(args: DeadlineArgs) -> anyhow::Result<()> {
    let key = std::fs::read_to_string(&args.api_key_file)
        .with_context(|| format!("reading {}", args.api_key_file.display()))?
        .trim()
        .to_owned();
    let api = Api {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency.max(4))
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(120))
            .no_proxy()
            .build()?,
        base: args.lmsbridge.clone(),
        key,
    };
    let lms = start_lms(&args).await?;
    wait_ready(&api).await?;

    // The course as lmsbridge learns it: a launch, the roster, the assignments.
    let context = launch(&lms, &api).await?;
    let people = roster(&api, &context, args.students).await?;
    let mut targets = Vec::new();
    for a in 0..args.assignments {
        let (status, item) = api
            .post(
                &format!("api/v1/contexts/{context}/line-items"),
                &json!({"label": format!("Assignment {}", a + 1), "score_maximum": 100}),
            )
            .await?;
        if status != 201 {
            bail!("creating a line item: {status} {item}");
        }
        targets.push(item["id"].as_str().context("line item id")?.to_owned());
    }
    let line_items: Vec<String> = lms
        .line_items()
        .into_iter()
        .filter(|li| li.label.starts_with("Assignment "))
        .map(|li| li.id)
        .collect();
    eprintln!(
        "deadline: {} learners, {} assignments ({} line items in the LMS); sending {} scores ({:?})",
        people.len(),
        targets.len(),
        line_items.len(),
        args.students * args.assignments,
        args.mode
    );

    // The platform's limits, from now on.
    lms.set_rate_limit(Some(RateLimit {
        per_sec: args.platform_rate,
        burst: args.platform_rate,
    }));
    lms.faults().set_score_failure_rate(
        args.throttle_share,
        FaultKind::TooManyRequests {
            retry_after_secs: args.throttle_retry_after,
        },
    );
    let (_, throttled_before) = lms.rate_limit_counts();

    // Every student's every assignment, assignment by assignment as a deadline passes.
    let items: Vec<Value> = (0..args.assignments)
        .flat_map(|a| (0..args.students).map(move |s| (s, a)))
        .map(|(s, a)| {
            json!({
                "grade_target_id": targets[a], "person_id": people[s],
                "score_given": given(s, a), "score_maximum": 100,
                "actor": {"kind": "ai_grader", "id": "deadline-bench"},
                "idempotency_key": format!("deadline-{a}-{s}"),
            })
        })
        .collect();
    let started_wall = OffsetDateTime::now_utc();
    let started = Instant::now();
    let (ids, failures) = match args.mode {
        Mode::Batch => enqueue_batches(&api, &items, args.batch_size, args.concurrency).await,
        Mode::Single => enqueue_singles(&api, &items, args.concurrency).await,
    };
    let enqueue_secs = started.elapsed().as_secs_f64();
    let enqueued_wall = OffsetDateTime::now_utc();
    eprintln!(
        "deadline: {} scores accepted in {enqueue_secs:.2} s ({:.0}/s), {failures} failed",
        ids.len(),
        ids.len() as f64 / enqueue_secs
    );

    // Drained when the LMS holds every learner's score for every assignment.
    let expected: HashMap<(String, String), f64> = (0..args.assignments)
        .flat_map(|a| (0..args.students).map(move |s| (s, a)))
        .filter_map(|(s, a)| Some(((line_items.get(a)?.clone(), student(s).id), given(s, a))))
        .collect();
    let deadline = started + Duration::from_secs(args.max_drain_seconds);
    let mut drained = false;
    loop {
        if lms.stats().scores_accepted as usize >= expected.len() && missing(&lms, &expected) == 0 {
            drained = true;
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    lms.set_rate_limit(None);
    lms.faults().clear();

    let accepted_scores = lms.scores();
    let last_landed = accepted_scores
        .iter()
        .map(|s| s.received_at)
        .max()
        .unwrap_or(started_wall);
    let drain_secs = (last_landed - started_wall).as_seconds_f64();
    let drain_after_enqueue_secs = (last_landed - enqueued_wall).as_seconds_f64();
    let mut seen: HashMap<(&str, &str, &str), u64> = HashMap::new();
    for s in &accepted_scores {
        *seen
            .entry((&s.line_item_id, &s.user_id, &s.timestamp))
            .or_default() += 1;
    }
    let duplicates = seen.values().filter(|n| **n > 1).map(|n| n - 1).sum();
    let requests = lms.score_requests();
    let first_post = requests.iter().map(|r| r.started_at).min();
    let last_accepted = requests
        .iter()
        .filter(|r| r.accepted())
        .map(|r| r.finished_at)
        .max();
    let window = match (first_post, last_accepted) {
        (Some(a), Some(b)) => (b - a).as_seconds_f64().max(f64::MIN_POSITIVE),
        _ => f64::MIN_POSITIVE,
    };
    let stats = lms.stats();
    let (_, throttled_after) = lms.rate_limit_counts();
    let refused_by_rate_limit = throttled_after - throttled_before;
    let reached = requests.len() as u64;
    let requests_accepted = requests.iter().filter(|r| r.accepted()).count() as u64;
    let requests_sent = reached + refused_by_rate_limit;
    let lost = missing(&lms, &expected);
    let states = final_states(&api, &ids).await?;
    let run = DeadlineRun {
        label: args.label.clone(),
        mode: args.mode,
        students: args.students,
        assignments: args.assignments,
        scores: items.len(),
        accepted: ids.len(),
        enqueue_failures: failures,
        enqueue_secs,
        enqueue_per_sec: ids.len() as f64 / enqueue_secs,
        drain_secs,
        drain_after_enqueue_secs,
        drained,
        platform_rate: args.platform_rate,
        throttle_share: args.throttle_share,
        requests_sent,
        requests_accepted,
        refused_at_random: stats.faults_injected,
        refused_by_rate_limit,
        refused_otherwise: stats.total_rejections(),
        platform_window_secs: window,
        requests_per_sec: requests_sent as f64 / window,
        utilisation: requests_sent as f64 / window / args.platform_rate,
        accepted_per_sec: requests_accepted as f64 / window,
        duplicates,
        lost,
        coalesced: states.get("superseded").copied().unwrap_or(0),
        states,
    };
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&run)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    println!("{}", markdown(std::slice::from_ref(&run)));
    if !run.drained || run.lost > 0 || run.duplicates > 0 {
        bail!(
            "the queue did not drain cleanly: drained {}, lost {}, duplicates {}",
            run.drained,
            run.lost,
            run.duplicates
        );
    }
    Ok(())
}

/// Starts the simulated LMS on `--lms-listen`, with the learners, and the product's launch
/// page beside it.
async fn start_lms(args: &DeadlineArgs) -> anyhow::Result<SimulatedLms> {
    let base = Url::parse(&format!("http://{}/", args.lms_listen))?;
    let tool = ToolRegistration {
        client_id: args.client_id.clone(),
        deployment_id: args.deployment_id.clone(),
        login_url: args.lmsbridge.join("lti/login")?,
        launch_url: args.lmsbridge.join("lti/launch")?,
        jwks_url: args.lmsbridge.join(".well-known/jwks.json")?,
    };
    let mut config = LmsConfig::new(base, tool);
    config.page_size = 500;
    config.extra_users = (0..args.students).map(student).collect();
    let lms = SimulatedLms::try_new(config)?;
    let listener = tokio::net::TcpListener::bind(args.lms_listen)
        .await
        .with_context(|| format!("binding {}", args.lms_listen))?;
    let router = lms.router().route(
        "/product/launch",
        axum::routing::get(|| async { "the product" }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(lms)
}

async fn wait_ready(api: &Api) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = api.http.get(api.base.join("ready")?).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() >= until {
            bail!("{} did not become ready", api.base);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One learner launches; returns the course's context id in lmsbridge.
async fn launch(lms: &SimulatedLms, api: &Api) -> anyhow::Result<String> {
    let page = Browser::new()
        .get(lms.launch_url("student-1", "resource-1").as_str())
        .await
        .map_err(|e| anyhow::anyhow!("launch: {e}"))?;
    let code = page
        .url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .with_context(|| format!("the launch ended at {} without a code", page.url))?;
    let (status, launch) = api
        .post("api/v1/launches/redeem", &json!({"code": code}))
        .await?;
    if status != 200 {
        bail!("redeeming the launch: {status} {launch}");
    }
    Ok(launch["context"]["id"]
        .as_str()
        .context("context id")?
        .to_owned())
}

/// Syncs the roster through the API; returns the person id of each learner, in order.
async fn roster(api: &Api, context: &str, students: usize) -> anyhow::Result<Vec<String>> {
    let (status, sync) = api
        .post(&format!("api/v1/contexts/{context}/sync"), &json!({}))
        .await?;
    if status != 202 {
        bail!("starting the roster sync: {status} {sync}");
    }
    let id = sync["id"].as_str().context("sync id")?.to_owned();
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let s = api.get(&format!("api/v1/roster-syncs/{id}")).await?;
        match s["state"].as_str() {
            Some("done") => break,
            Some("failed") => bail!("the roster sync failed: {s}"),
            _ if Instant::now() >= until => bail!("the roster sync did not finish: {s}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let mut by_user: HashMap<String, String> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("api/v1/contexts/{context}/members?limit=200");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = api.get(&path).await?;
        for m in page["members"].as_array().context("members")? {
            if let (Some(user), Some(person)) =
                (m["platform_user_id"].as_str(), m["person_id"].as_str())
            {
                by_user.insert(user.to_owned(), person.to_owned());
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    (0..students)
        .map(|s| {
            by_user
                .get(&student(s).id)
                .cloned()
                .with_context(|| format!("{} is not in the synced roster", student(s).id))
        })
        .collect()
}

/// Sends the items in batches, `concurrency` requests at once; returns the accepted score
/// ids and the count of items not accepted.
async fn enqueue_batches(
    api: &Api,
    items: &[Value],
    size: usize,
    concurrency: usize,
) -> (Vec<String>, usize) {
    let chunks: Vec<Value> = items.chunks(size).map(|c| json!({ "scores": c })).collect();
    let results = in_parallel(chunks.len(), concurrency.clamp(1, 4), |i| {
        let body = &chunks[i];
        async move {
            match api.post("api/v1/scores:batch", body).await {
                Ok((207, answer)) => answer["results"]
                    .as_array()
                    .map(|rs| {
                        rs.iter()
                            .map(|r| match (r["status"].as_u64(), r["id"].as_str()) {
                                (Some(202), Some(id)) => Some(id.to_owned()),
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                _ => Vec::new(),
            }
        }
    })
    .await;
    let ids: Vec<String> = results.into_iter().flatten().flatten().collect();
    let failures = items.len() - ids.len();
    (ids, failures)
}

/// Sends the items one per request, `concurrency` at once.
async fn enqueue_singles(api: &Api, items: &[Value], concurrency: usize) -> (Vec<String>, usize) {
    let results = in_parallel(items.len(), concurrency.max(1), |i| {
        let mut body = items[i].clone();
        async move {
            let key = body
                .as_object_mut()
                .and_then(|o| o.remove("idempotency_key"));
            let mut req = api
                .http
                .post(api.base.join("api/v1/scores").ok()?)
                .bearer_auth(&api.key)
                .json(&body);
            if let Some(Value::String(k)) = key {
                req = req.header("Idempotency-Key", k);
            }
            let resp = req.send().await.ok()?;
            if resp.status().as_u16() != 202 {
                return None;
            }
            let answer: Value = resp.json().await.ok()?;
            answer["id"].as_str().map(str::to_owned)
        }
    })
    .await;
    let ids: Vec<String> = results.into_iter().flatten().collect();
    let failures = items.len() - ids.len();
    (ids, failures)
}

/// Runs `task(0..n)` with at most `concurrency` at once; results in index order.
async fn in_parallel<'a, T, F, Fut>(n: usize, concurrency: usize, task: F) -> Vec<T>
where
    F: Fn(usize) -> Fut + 'a,
    Fut: std::future::Future<Output = T> + 'a,
{
    let next = Arc::new(AtomicUsize::new(0));
    let task = &task;
    let workers = (0..concurrency.min(n.max(1))).map(|_| {
        let next = next.clone();
        async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return done;
                }
                done.push((i, task(i).await));
            }
        }
    });
    let mut all: Vec<(usize, T)> = join_all(workers).await.into_iter().flatten().collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

/// Polls every future to completion on this task.
async fn join_all<Fut: std::future::Future>(
    futures: impl Iterator<Item = Fut>,
) -> Vec<Fut::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<Fut>>> = futures.map(Box::pin).collect();
    let mut out: Vec<Option<Fut::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, fut) in out.iter_mut().zip(pinned.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Learners whose newest score the LMS does not hold (or holds with another value).
fn missing(lms: &SimulatedLms, expected: &HashMap<(String, String), f64>) -> usize {
    let held: HashMap<(String, String), Option<f64>> = lms
        .gradebook()
        .into_iter()
        .map(|g| ((g.line_item_id, g.user_id), g.score_given))
        .collect();
    expected
        .iter()
        .filter(|(k, v)| held.get(*k).copied().flatten() != Some(**v))
        .count()
}

/// lmsbridge's state of each accepted score, counted.
async fn final_states(api: &Api, ids: &[String]) -> anyhow::Result<BTreeMap<String, usize>> {
    let states = in_parallel(ids.len(), 16, |i| async move {
        api.get(&format!("api/v1/scores/{}", ids[i]))
            .await
            .ok()
            .and_then(|s| s["state"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "unreadable".to_owned())
    })
    .await;
    let mut counts = BTreeMap::new();
    for s in states {
        *counts.entry(s).or_default() += 1;
    }
    Ok(counts)
}

/// The results as Markdown tables: absolute figures, then against the targets.
pub fn markdown(runs: &[DeadlineRun]) -> String {
    let mut out = String::new();
    out.push_str("| run | mode | scores | enqueue s | enqueued/s | drain s (after enqueue) | requests sent | sent/s | utilisation | accepted/s | 429 random / rate limit | duplicates | lost | coalesced | final states |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for r in runs {
        let states: Vec<String> = r.states.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!(
            "| {} | {:?} | {} | {:.2} | {:.0} | {:.1} ({:.1}) | {} | {:.1} | {:.1}% | {:.1} | {} / {} | {} | {} | {} | {} |\n",
            r.label,
            r.mode,
            r.accepted,
            r.enqueue_secs,
            r.enqueue_per_sec,
            r.drain_secs,
            r.drain_after_enqueue_secs,
            r.requests_sent,
            r.requests_per_sec,
            r.utilisation * 100.0,
            r.accepted_per_sec,
            r.refused_at_random,
            r.refused_by_rate_limit,
            r.duplicates,
            r.lost,
            r.coalesced,
            states.join(", "),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_parallel_keeps_order_and_bounds_concurrency() {
        let live = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let out = in_parallel(50, 4, |i| {
            let (live, peak) = (live.clone(), peak.clone());
            async move {
                let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                live.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(out, (0..50).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(peak.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn scores_are_spread_over_the_range() {
        let values: std::collections::HashSet<u64> = (0..200).map(|s| given(s, 3) as u64).collect();
        assert!(values.len() > 90);
        assert!(values.iter().all(|v| *v <= 100));
    }
}
