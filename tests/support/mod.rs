//! What the passback tests share: the real `lmsbridge` binary run as separate processes that
//! are killed when dropped, a database per test (SQLite in the data directory, or a
//! PostgreSQL schema dropped afterwards), a simulated LMS whose learners launch into a fresh
//! tenant, the product API, and the checks on what the simulated LMS received.
//!
//! Everything listens on 127.0.0.1 with ports the kernel picks; every wait has a deadline.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use lti::roles::LtiRole;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use testkit::{
    Browser, LmsConfig, ScoreRequestRecord, SimUser, SimulatedLms, SpawnedLms, ToolRegistration,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;

/// A small seeded generator (SplitMix64), so a failing run can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The seed of this run: `LMSBRIDGE_TEST_SEED` when set, else the clock. Printed, so a
/// failure shows how to replay it.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("LMSBRIDGE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
            (nanos as u64) ^ u64::from(std::process::id())
        });
    println!("{test}: seed {seed} (replay with LMSBRIDGE_TEST_SEED={seed})");
    seed
}

/// The database of one test, removed when dropped (also when the test fails).
pub struct Database {
    /// The data directory: master key file, process logs and, for SQLite, the database.
    pub dir: PathBuf,
    /// `--database-url` for the processes; `None` means the SQLite file in `dir`.
    pub url: Option<String>,
    pub label: &'static str,
    schema: Option<(String, String)>,
}

impl Database {
    pub fn sqlite() -> Self {
        Self {
            dir: temp_dir(),
            url: None,
            label: "sqlite",
            schema: None,
        }
    }

    /// A fresh schema in the PostgreSQL of `LMSBRIDGE_TEST_POSTGRES_URL`, or `None` (said
    /// loudly; an error under CI) when it is not set. The processes migrate it.
    pub async fn postgres() -> Option<Self> {
        let admin_url = store::testing::postgres_url()?;
        let schema = format!("passback_{}", uuid::Uuid::new_v4().simple());
        let admin = store::Store::connect(&admin_url)
            .await
            .expect("PostgreSQL answers");
        admin
            .execute_unchecked(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("a schema for the test");
        admin.close().await;
        Some(Self {
            dir: temp_dir(),
            url: Some(store::testing::with_search_path(&admin_url, &schema)),
            label: "postgres",
            schema: Some((admin_url, schema)),
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some((admin_url, schema)) = self.schema.take() {
            // Drop runs inside the test's runtime, which must not be blocked on; a thread
            // with its own runtime does the work.
            let dropped = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let admin = store::Store::connect(&admin_url).await.ok()?;
                    let done = admin
                        .execute_unchecked(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                    admin.close().await;
                    done.ok()
                })
            })
            .join();
            if !matches!(dropped, Ok(Some(_))) {
                eprintln!("the test schema could not be dropped");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lmsbridge-passback-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// A running `lmsbridge` process, killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    /// SIGKILL: no shutdown code runs, as when a machine loses power.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How the processes of one test are started.
pub struct Lmsbridge {
    pub dir: PathBuf,
    pub database_url: Option<String>,
    /// Extra `LMSBRIDGE_*` settings for `serve` and `worker`.
    pub env: Vec<(String, String)>,
    started: std::sync::atomic::AtomicUsize,
}

impl Lmsbridge {
    pub fn new(db: &Database, env: &[(&str, &str)]) -> Self {
        Self {
            dir: db.dir.clone(),
            database_url: db.url.clone(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            started: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_lmsbridge"));
        // The test chooses every setting; the caller's environment must not leak in.
        for (k, _) in std::env::vars() {
            if k.starts_with("LMSBRIDGE_") {
                c.env_remove(k);
            }
        }
        c.env("RUST_LOG", "warn,passback=info");
        c.args(args).arg("--data-dir").arg(&self.dir);
        if let Some(url) = &self.database_url {
            c.arg("--database-url").arg(url);
        }
        c
    }

    /// Runs an admin command and returns its JSON output.
    pub fn cli(&self, args: &[&str]) -> Value {
        let out = self.command(args).output().expect("the binary runs");
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// `lmsbridge audit verify`.
    pub fn audit_verify(&self) -> Output {
        self.command(&["audit", "verify"])
            .output()
            .expect("the binary runs")
    }

    fn spawn(&self, args: &[&str], name: &str, stdout: Stdio) -> Proc {
        let n = self
            .started
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = self.dir.join(format!("{n:02}-{name}.log"));
        let file = std::fs::File::create(&log).expect("a log file");
        let child = self
            .command(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(stdout)
            .stderr(Stdio::from(file))
            .spawn()
            .expect("lmsbridge starts");
        Proc {
            child,
            name: name.to_owned(),
            log,
        }
    }

    /// Starts `lmsbridge serve` on `port` (0: any free port) and waits until it listens.
    /// Its public URL follows the bound port, so a restart on the same port keeps the URLs
    /// the LMS knows. A port the kernel has not released yet is tried again.
    pub fn serve(&self, port: u16, no_worker: bool) -> (Proc, Url) {
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "--listen", &listen];
        if no_worker {
            args.push("--no-worker");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut proc = self.spawn(&args, "serve", Stdio::piped());
            let stdout = proc.child.stdout.take().expect("piped stdout");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = tx.send(line);
            });
            let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
            // "lmsbridge serving on http://127.0.0.1:PORT (public URL …)"
            if let Some(base) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                let base = Url::parse(&format!("{}/", base.trim_end_matches('/'))).unwrap();
                return (proc, base);
            }
            proc.kill();
            assert!(
                Instant::now() < deadline,
                "serve did not start on {listen}: {}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts `lmsbridge worker` and waits until its worker runs.
    pub fn worker(&self, name: &str) -> Proc {
        let mut proc = self.spawn(&["worker"], name, Stdio::null());
        let deadline = Instant::now() + Duration::from_secs(30);
        while !proc.log_text().contains("passback worker started") {
            assert!(
                proc.is_running() && Instant::now() < deadline,
                "{name} did not start: {}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        proc
    }
}

/// The product API of one tenant.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: Url,
    pub key: String,
}

impl Api {
    pub async fn get(&self, path: &str) -> Result<(u16, Value), reqwest::Error> {
        let resp = self
            .http
            .get(self.base.join(path).unwrap())
            .bearer_auth(&self.key)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut req = self
            .http
            .post(self.base.join(path).unwrap())
            .bearer_auth(&self.key)
            .json(body);
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// Submits a score once; `Err` when lmsbridge could not be reached or did not answer.
    pub async fn submit(&self, s: &Submission) -> Result<Value, String> {
        match self.post("api/v1/scores", &s.body, Some(&s.key)).await {
            Ok((202, body)) => Ok(body),
            Ok((status, body)) => Err(format!("{status}: {body}")),
            Err(e) => Err(format!("transport: {e}")),
        }
    }

    /// Submits a score until lmsbridge takes it (it may be down for a restart); the same
    /// Idempotency-Key each time, so a request that was taken before the answer was lost
    /// comes back as the same score.
    pub async fn submit_until_taken(&self, s: &Submission, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            match self.submit(s).await {
                Ok(body) => return body,
                Err(e) => {
                    assert!(
                        e.starts_with("transport") || e.starts_with("5"),
                        "score {} refused: {e}",
                        s.key
                    );
                    assert!(
                        Instant::now() < deadline,
                        "score {} never taken: {e}",
                        s.key
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// The tenant's audit entries whose action starts with `prefix`, oldest first.
    pub async fn audit(&self, prefix: &str) -> Vec<Value> {
        let mut entries = Vec::new();
        let mut after: Option<i64> = None;
        loop {
            let mut path = format!("api/v1/audit?action={prefix}&limit=500");
            if let Some(a) = after {
                path.push_str(&format!("&after={a}"));
            }
            let (status, page) = self.get(&path).await.expect("the audit API answers");
            assert_eq!(status, 200, "{page}");
            entries.extend(page["entries"].as_array().cloned().unwrap_or_default());
            match page["next_after"].as_i64() {
                Some(next) => after = Some(next),
                None => return entries,
            }
        }
    }
}

/// One (grade target, person) of the tenant and who they are in the LMS.
#[derive(Debug, Clone)]
pub struct Pair {
    pub grade_target_id: String,
    pub person_id: String,
    /// The line item id in the simulated LMS.
    pub line_item_id: String,
    /// The learner's id in the simulated LMS.
    pub user_id: String,
}

/// One score request the product will make.
#[derive(Debug, Clone)]
pub struct Submission {
    pub index: usize,
    pub pair: usize,
    pub key: String,
    pub score_given: f64,
    pub comment: String,
    pub body: Value,
}

/// What a test sets up: `extra_learners` beyond the two seed learners, each launching both
/// seeded activities, and `api_line_items` more columns made through the product API.
pub struct Setup<'a> {
    /// The platform kind the CLI registers (`lti`, `canvas`, `moodle`).
    pub kind: &'a str,
    pub extra_learners: usize,
    pub api_line_items: usize,
    /// `serve --no-worker` (workers run as their own processes).
    pub no_worker: bool,
    pub env: &'a [(&'a str, &'a str)],
}

/// A tenant with a platform, learners launched from the simulated LMS, and the API.
pub struct World {
    pub lmsbridge: Lmsbridge,
    pub lms: SimulatedLms,
    pub lms_server: SpawnedLms,
    pub api: Api,
    pub pairs: Vec<Pair>,
    pub port: u16,
}

/// A product endpoint that receives launch handoffs; the test redeems the codes itself.
async fn handoff_receiver() -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/launch", listener.local_addr().unwrap())).unwrap();
    let router = axum::Router::new().route("/launch", axum::routing::get(|| async { "received" }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

fn learner(n: usize) -> SimUser {
    SimUser {
        id: format!("student-{n}"),
        name: format!("Learner {n}"),
        given_name: "Learner".into(),
        family_name: format!("{n}"),
        email: format!("learner.{n}@example.edu"),
        role: LtiRole::Learner,
    }
}

/// Starts `serve`, the simulated LMS registered with it, a tenant and platform made with the
/// CLI, and the launches that create the people and grade targets.
pub async fn setup(db: &Database, s: Setup<'_>) -> (World, Proc) {
    let lmsbridge = Lmsbridge::new(db, s.env);
    let (serve, base) = lmsbridge.serve(0, s.no_worker);
    let port = base.port().expect("a port");
    let extra: Vec<SimUser> = (0..s.extra_learners).map(|i| learner(i + 3)).collect();
    let (lms, lms_server) = SimulatedLms::spawn_with(
        ToolRegistration {
            client_id: "passback-client".into(),
            deployment_id: "dep-1".into(),
            login_url: base.join("lti/login").unwrap(),
            launch_url: base.join("lti/launch").unwrap(),
            jwks_url: base.join(".well-known/jwks.json").unwrap(),
        },
        move |c| LmsConfig {
            extra_users: extra,
            ..c
        },
    )
    .await
    .expect("the simulated LMS starts");
    let receiver = handoff_receiver().await;
    let tenant = lmsbridge.cli(&[
        "tenant",
        "create",
        "--name",
        "Passback",
        "--launch-url",
        receiver.as_str(),
    ]);
    let tenant_id = tenant["id"].as_str().unwrap().to_owned();
    lmsbridge.cli(&[
        "platform",
        "add",
        "--tenant",
        &tenant_id,
        "--kind",
        s.kind,
        "--issuer",
        &lms.issuer(),
        "--client-id",
        "passback-client",
        "--auth-url",
        lms.auth_url().as_str(),
        "--token-url",
        lms.token_url().as_str(),
        "--jwks-url",
        lms.jwks_url().as_str(),
        "--deployment-id",
        "dep-1",
    ]);
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        base,
        key: tenant["api_key"].as_str().unwrap().to_owned(),
    };

    let learners: Vec<String> = lms
        .users()
        .into_iter()
        .filter(|u| u.is_learner())
        .map(|u| u.id)
        .collect();
    assert_eq!(learners.len(), 2 + s.extra_learners);
    let mut pairs = Vec::new();
    let mut context = None;
    let mut people = Vec::new();
    for user in &learners {
        for resource in lms.resources() {
            let page = Browser::new()
                .get(lms.launch_url(user, &resource.id).as_str())
                .await
                .expect("the launch runs");
            let code = page
                .url
                .query_pairs()
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| panic!("the launch ended at {} without a code", page.url));
            let (status, launch) = api
                .post("api/v1/launches/redeem", &json!({"code": code}), None)
                .await
                .unwrap();
            assert_eq!(status, 200, "{launch:#}");
            assert_eq!(launch["person"]["platform_user_id"], user.as_str());
            let person_id = launch["person"]["id"].as_str().unwrap().to_owned();
            context = launch["context"]["id"].as_str().map(str::to_owned);
            pairs.push(Pair {
                grade_target_id: launch["grade_target_id"].as_str().unwrap().to_owned(),
                person_id: person_id.clone(),
                line_item_id: resource.line_item_id.clone(),
                user_id: user.clone(),
            });
            if !people.contains(&(person_id.clone(), user.clone())) {
                people.push((person_id, user.clone()));
            }
        }
    }
    let context = context.expect("the launches carry a context");
    for n in 0..s.api_line_items {
        let label = format!("Passback column {n}");
        let (status, created) = api
            .post(
                &format!("api/v1/contexts/{context}/line-items"),
                &json!({"label": label, "score_maximum": 50,
                        "actor": {"kind": "instructor", "id": "teacher-1"}}),
                None,
            )
            .await
            .unwrap();
        assert_eq!(status, 201, "{created:#}");
        let on_lms = lms
            .line_items()
            .into_iter()
            .find(|li| li.label == label)
            .expect("the column exists in the LMS");
        for (person_id, user) in &people {
            pairs.push(Pair {
                grade_target_id: created["id"].as_str().unwrap().to_owned(),
                person_id: person_id.clone(),
                line_item_id: on_lms.id.clone(),
                user_id: user.clone(),
            });
        }
    }
    (
        World {
            lmsbridge,
            lms,
            lms_server,
            api,
            pairs,
            port,
        },
        serve,
    )
}

/// `n` score requests over the pairs in a seeded random order, several per pair, each with
/// its own Idempotency-Key and a comment that names it.
pub fn plan_scores(rng: &mut Rng, pairs: &[Pair], n: usize, tag: &str) -> Vec<Submission> {
    (0..n)
        .map(|index| {
            let pair = rng.below(pairs.len() as u64) as usize;
            submission(rng, pairs, index, pair, tag)
        })
        .collect()
}

/// One more score request for every pair, in a seeded random order, numbered from `first`.
pub fn plan_one_each(rng: &mut Rng, pairs: &[Pair], first: usize, tag: &str) -> Vec<Submission> {
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    order
        .into_iter()
        .enumerate()
        .map(|(i, pair)| submission(rng, pairs, first + i, pair, tag))
        .collect()
}

fn submission(rng: &mut Rng, pairs: &[Pair], index: usize, pair: usize, tag: &str) -> Submission {
    let score_given = rng.below(201) as f64 / 2.0;
    let comment = format!("{tag} #{index}");
    let body = json!({
        "grade_target_id": pairs[pair].grade_target_id,
        "person_id": pairs[pair].person_id,
        "score_given": score_given, "score_maximum": 100,
        "comment": comment,
        "actor": {"kind": "ai_grader", "id": "grader-1"},
    });
    Submission {
        index,
        pair,
        key: format!("{tag}-{index}"),
        score_given,
        comment,
        body,
    }
}

/// Submits `plan` over `lanes` connections at once, each pair's requests one after another
/// in plan order on one lane (so that plan order stays the order of each pair's
/// timestamps). Returns lmsbridge's answers in plan order.
pub async fn submit_in_lanes(api: &Api, plan: &[Submission], lanes: usize) -> Vec<Value> {
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..lanes {
        let mine: Vec<(usize, Submission)> = plan
            .iter()
            .enumerate()
            .filter(|(_, s)| s.pair % lanes == lane)
            .map(|(i, s)| (i, s.clone()))
            .collect();
        let api = api.clone();
        tasks.spawn(async move {
            let mut answers = Vec::with_capacity(mine.len());
            for (i, s) in mine {
                answers.push((i, api.submit_until_taken(&s, Duration::from_secs(30)).await));
            }
            answers
        });
    }
    let mut answers: Vec<Option<Value>> = vec![None; plan.len()];
    while let Some(lane) = tasks.join_next().await {
        for (i, answer) in lane.expect("a submitting lane") {
            answers[i] = Some(answer);
        }
    }
    answers
        .into_iter()
        .map(|a| a.expect("every request answered"))
        .collect()
}

/// The newest submission of each pair, given the scores lmsbridge answered with (in
/// submission order, which is the order of their timestamps per pair).
pub fn newest_per_pair<'a>(
    plan: &'a [Submission],
    taken: &'a [Value],
) -> BTreeMap<usize, (&'a Submission, &'a Value)> {
    let mut newest = BTreeMap::new();
    for (s, t) in plan.iter().zip(taken) {
        newest.insert(s.pair, (s, t));
    }
    newest
}

/// Waits until no score is queued, retrying or being sent; returns each score as the API
/// shows it last.
pub async fn wait_drained(api: &Api, ids: &[String], within: Duration) -> HashMap<String, Value> {
    let deadline = Instant::now() + within;
    let mut last: HashMap<String, Value> = HashMap::new();
    loop {
        let mut pending = 0;
        for id in ids {
            if last.get(id).is_some_and(|s| !waiting(s)) {
                continue;
            }
            let (status, score) = api
                .get(&format!("api/v1/scores/{id}"))
                .await
                .expect("the API answers");
            assert_eq!(status, 200, "{score}");
            if waiting(&score) {
                pending += 1;
            }
            last.insert(id.clone(), score);
        }
        if pending == 0 {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} scores still waiting after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn waiting(score: &Value) -> bool {
    matches!(
        score["state"].as_str(),
        Some("queued" | "retrying" | "sending")
    )
}

/// Microseconds since the epoch of an RFC 3339 timestamp.
pub fn micros(timestamp: &str) -> i64 {
    let t = OffsetDateTime::parse(timestamp, &Rfc3339)
        .unwrap_or_else(|_| panic!("not an RFC 3339 timestamp: {timestamp}"));
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap()
}

/// The gradebook holds, for every pair and nothing else, exactly the newest score submitted.
pub fn assert_gradebook_has_newest(
    lms: &SimulatedLms,
    pairs: &[Pair],
    newest: &BTreeMap<usize, (&Submission, &Value)>,
) {
    let gradebook = lms.gradebook();
    let mut seen = std::collections::BTreeSet::new();
    for entry in &gradebook {
        let pair = pairs
            .iter()
            .position(|p| p.line_item_id == entry.line_item_id && p.user_id == entry.user_id)
            .unwrap_or_else(|| panic!("a grade for no pair of the test: {entry:?}"));
        assert!(seen.insert(pair), "two grades for one pair: {entry:?}");
        let (s, taken) = newest
            .get(&pair)
            .unwrap_or_else(|| panic!("a grade for a pair that was never graded: {entry:?}"));
        assert_eq!(
            entry.comment.as_deref(),
            Some(s.comment.as_str()),
            "{}/{} holds an older score: {entry:?}",
            entry.line_item_id,
            entry.user_id
        );
        assert_eq!(entry.score_given, Some(s.score_given), "{entry:?}");
        assert_eq!(
            micros(&entry.timestamp),
            taken["timestamp_micros"].as_i64().unwrap(),
            "{entry:?}"
        );
    }
    let missing: Vec<&Pair> = newest
        .keys()
        .filter(|p| !seen.contains(*p))
        .map(|p| &pairs[*p])
        .collect();
    assert!(missing.is_empty(), "grades missing for {missing:?}");
}

/// The score a received request carried: (line item, user, timestamp in microseconds).
pub type ScoreKey = (String, String, i64);

pub fn score_key(r: &ScoreRequestRecord) -> ScoreKey {
    (
        r.line_item_id.clone(),
        r.user_id.clone().expect("a userId in every post"),
        micros(r.timestamp.as_deref().expect("a timestamp in every post")),
    )
}

/// Per (line item, user), in arrival order: no score was taken twice, and no score older
/// than one already taken was sent afterwards. Returns how many posts carried a score the
/// LMS had already taken (a resend after a crash), for the report.
pub fn assert_received_in_order(requests: &[ScoreRequestRecord]) -> usize {
    let mut by_pair: BTreeMap<(String, String), Vec<&ScoreRequestRecord>> = BTreeMap::new();
    for r in requests {
        let (li, user, _) = score_key(r);
        by_pair.entry((li, user)).or_default().push(r);
    }
    let mut resent = 0;
    for (pair, mut posts) in by_pair {
        posts.sort_by_key(|r| r.started_at);
        // One score of a learner in a column in flight at a time: two at once could land in
        // either order.
        for w in posts.windows(2) {
            assert!(
                !w[0].overlaps(w[1]) || score_key(w[0]) == score_key(w[1]),
                "{pair:?}: two scores were sent at once: {:?} and {:?}",
                w[0],
                w[1]
            );
        }
        let mut taken: Vec<(i64, OffsetDateTime)> = Vec::new();
        for r in &posts {
            let (_, _, ts) = score_key(r);
            // Taken before this post arrived, with a later timestamp: this post regresses.
            if let Some((newer, at)) = taken.iter().find(|(t, at)| *t > ts && *at <= r.started_at) {
                panic!(
                    "{pair:?}: the score of {ts} was sent at {} after the newer score of {newer} was taken at {at}",
                    r.started_at
                );
            }
            if taken.iter().any(|(t, _)| *t == ts) {
                resent += 1;
            }
            if r.accepted() {
                assert!(
                    !taken.iter().any(|(t, _)| *t == ts),
                    "{pair:?}: the score of {ts} was taken twice"
                );
                taken.push((ts, r.finished_at));
            }
        }
    }
    resent
}

/// Every score ended delivered, or superseded by a newer one before it was sent; none dead.
pub fn assert_all_delivered_or_superseded(scores: &HashMap<String, Value>, newest_ids: &[String]) {
    for (id, score) in scores {
        let state = score["state"].as_str().unwrap_or_default();
        assert!(
            matches!(state, "delivered" | "superseded"),
            "score {id} ended {state}: {score:#}"
        );
    }
    for id in newest_ids {
        assert_eq!(
            scores[id]["state"], "delivered",
            "the newest score {id} of its pair: {:#}",
            scores[id]
        );
    }
}
