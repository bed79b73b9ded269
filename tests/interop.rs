//! Interop with code nobody on the team wrote: the LTI 1.3 platform peer in `shared/interop`
//! (Python, built on the PyPI library `lti1p3platform`) launches the real `lmsbridge serve`
//! binary over loopback, as a learner and as an instructor, and records the score a product
//! posted through lmsbridge's API.
//!
//! Needs the peer's venv, once: `VENV=./.venv-interop bash ../shared/interop/install.sh`, then
//! `LMSBRIDGE_INTEROP_PYTHON=./.venv-interop/bin/python cargo test --test interop`.
//! `LMSBRIDGE_INTEROP_DIR` names the peer's folder (default `../shared/interop`). Without
//! `LMSBRIDGE_INTEROP_PYTHON` the test says SKIPPED, except under `CI`, where it fails.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

const CLIENT_ID: &str = "interop-tool";
const DEPLOYMENT_ID: &str = "deployment-1";
const LEARNER: &str = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner";
const INSTRUCTOR: &str = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor";
const AGS_ENDPOINT: &str = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint";
const CONTEXT_CLAIM: &str = "https://purl.imsglobal.org/spec/lti/claim/context";
const RESOURCE_LINK_CLAIM: &str = "https://purl.imsglobal.org/spec/lti/claim/resource_link";
const ROLES_CLAIM: &str = "https://purl.imsglobal.org/spec/lti/claim/roles";
const SCORE_SCOPE: &str = "https://purl.imsglobal.org/spec/lti-ags/scope/score";

/// How long a child process may take to say it is ready.
const STARTUP: Duration = Duration::from_secs(30);
/// How long one launch.py run may take (its own per-request timeout is lower).
const LAUNCH: Duration = Duration::from_secs(60);
/// How long a queued score may take to reach the peer.
const DELIVERY: Duration = Duration::from_secs(15);

/// The interop venv's python, or `None` (after saying so) when the test is not configured.
fn interop_python() -> Option<PathBuf> {
    match std::env::var_os("LMSBRIDGE_INTEROP_PYTHON") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(
                p.exists(),
                "LMSBRIDGE_INTEROP_PYTHON={} does not exist (relative paths are read from {})",
                p.display(),
                env!("CARGO_MANIFEST_DIR")
            );
            Some(p)
        }
        _ if std::env::var_os("CI").is_some() => panic!(
            "the interop test cannot run in CI without LMSBRIDGE_INTEROP_PYTHON: .ci/run must \
             install the peer (bash ../shared/interop/install.sh) and export its python"
        ),
        _ => {
            // Straight to the stderr handle: `eprintln!` would be swallowed by the test
            // harness's output capture, and a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (interop): set LMSBRIDGE_INTEROP_PYTHON to the python of \
                 `VENV=./.venv-interop bash ../shared/interop/install.sh` to run the \
                 third-party LTI platform interop test"
            );
            None
        }
    }
}

fn interop_dir() -> PathBuf {
    let dir = std::env::var_os("LMSBRIDGE_INTEROP_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/interop"),
            PathBuf::from,
        );
    assert!(
        dir.join("platform.py").is_file() && dir.join("launch.py").is_file(),
        "no platform.py and launch.py in {} (set LMSBRIDGE_INTEROP_DIR)",
        dir.display()
    );
    // The physical path: platform.py drops its own folder from `sys.path` (it would shadow the
    // standard `platform` module) by comparing it with `abspath(__file__)`, and Python puts the
    // symlink-resolved folder there, so a path through a symlink defeats the check.
    dir.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// A fresh data directory, removed afterwards unless the test failed.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("lmsbridge-interop-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("lmsbridge data dir kept: {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A child process that is killed when the test ends, also on panic. Its stdout lines are
/// handed to the test; everything it writes is kept and shown if the test fails, since that
/// is where an interop failure is explained.
struct Proc {
    name: &'static str,
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        Self::drain(out, "stdout", Arc::clone(&log), Some(tx));
        Self::drain(err, "stderr", Arc::clone(&log), None);
        Self {
            name,
            child,
            lines,
            log,
        }
    }

    fn drain(
        from: impl Read + Send + 'static,
        stream: &'static str,
        log: Arc<Mutex<String>>,
        tx: Option<mpsc::Sender<String>>,
    ) {
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                lock(&log).push_str(&format!("[{stream}] {line}\n"));
                if let Some(tx) = &tx {
                    let _ = tx.send(line);
                }
            }
        });
    }

    fn log(&self) -> String {
        lock(&self.log).clone()
    }

    /// The first stdout line that starts with `prefix`, or why there is none.
    fn line_starting(&mut self, prefix: &str, within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        return Err(format!("{} exited ({status})", self.name));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    return Err(format!("{} closed its stdout", self.name));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not print {prefix:?} within {within:?}",
                    self.name
                ));
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // The reader threads end with the process; give them a moment to flush.
            std::thread::sleep(Duration::from_millis(100));
            eprintln!(
                "---- {} output ----\n{}---- end of {} ----",
                self.name,
                self.log(),
                self.name
            );
        }
    }
}

/// The `lmsbridge` binary with none of the caller's `LMSBRIDGE_*` settings.
fn lmsbridge() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lmsbridge"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LMSBRIDGE_") {
            c.env_remove(k);
        }
    }
    c
}

/// Runs an admin command against the data dir and returns its JSON answer.
fn admin(dir: &Path, args: &[&str]) -> Value {
    let out = lmsbridge()
        .env("RUST_LOG", "warn")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "lmsbridge {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "lmsbridge {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `lmsbridge serve` on a port of its own choosing; returns the process and its base URL.
fn serve(dir: &Path) -> (Proc, String) {
    let mut cmd = lmsbridge();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut p = Proc::spawn("lmsbridge serve", cmd);
    // "lmsbridge serving on http://127.0.0.1:PORT (public URL …)"
    let line = p
        .line_starting("lmsbridge serving on ", STARTUP)
        .unwrap_or_else(|e| panic!("{e}\n{}", p.log()));
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches('/')
        .to_owned();
    // Every URL lmsbridge gives the platform (redirect_uri, the login's target check, the JWKS
    // URL) is built from its public URL, so with no public URL configured it must be the
    // address actually bound.
    let public = line
        .split_once("(public URL ")
        .map(|(_, rest)| rest.trim_end_matches(')').trim_end_matches('/'));
    assert_eq!(
        public,
        Some(base.as_str()),
        "`serve --listen 127.0.0.1:0` with no public URL must derive it from the bound port: \
         {line:?}"
    );
    (p, base)
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The platform peer, registered with lmsbridge's URLs; returns it, its base URL and the
/// configuration it announced on its READY line.
fn start_peer(python: &Path, interop: &Path, bridge: &str) -> (Proc, String, Value) {
    let mut failures = Vec::new();
    // The port is released before the peer binds it; another process may take it in between.
    for _ in 0..3 {
        let port = free_port().to_string();
        let base = format!("http://127.0.0.1:{port}");
        let mut cmd = Command::new(python);
        cmd.arg(interop.join("platform.py"))
            .args(["--port", &port])
            .args(["--tool-login-url", &format!("{bridge}/lti/login")])
            .args(["--tool-launch-url", &format!("{bridge}/lti/launch")])
            .args([
                "--tool-jwks-url",
                &format!("{bridge}/.well-known/jwks.json"),
            ])
            .args(["--client-id", CLIENT_ID, "--deployment-id", DEPLOYMENT_ID])
            .args(["--issuer", &base, "--quiet"])
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let mut p = Proc::spawn("platform.py", cmd);
        match p.line_starting("READY ", STARTUP) {
            Ok(line) => {
                let config: Value = serde_json::from_str(&line["READY ".len()..])
                    .unwrap_or_else(|e| panic!("READY line is not JSON ({e}): {line}"));
                return (p, base, config);
            }
            Err(e) => {
                let log = p.log();
                if !log.contains("cannot listen") {
                    panic!("{e}\n{log}");
                }
                failures.push(log);
            }
        }
    }
    panic!("the peer found no free port: {failures:#?}");
}

/// The product: receives launches at `/launch?code=…`, redeems each code with lmsbridge and
/// keeps the normalised launch (and how a second redemption of the same code was answered).
#[derive(Clone)]
struct Product {
    http: reqwest::Client,
    /// Where the product itself is served.
    base: String,
    /// lmsbridge's base URL.
    bridge: String,
    api_key: String,
    launches: Arc<Mutex<Vec<Redeemed>>>,
}

#[derive(Clone, Debug)]
struct Redeemed {
    launch: Value,
    second_redeem_status: u16,
}

impl Product {
    async fn redeem(&self, code: &str) -> Result<reqwest::Response, reqwest::Error> {
        self.http
            .post(format!("{}/api/v1/launches/redeem", self.bridge))
            .bearer_auth(&self.api_key)
            .json(&json!({ "code": code }))
            .send()
            .await
    }

    fn launches(&self) -> Vec<Redeemed> {
        lock(&self.launches).clone()
    }
}

async fn product_launch(
    State(p): State<Product>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, Html<String>) {
    let Some(code) = q.get("code") else {
        return (StatusCode::BAD_REQUEST, Html("no code".into()));
    };
    let first = match p.redeem(code).await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, Html(format!("redeem failed: {e}"))),
    };
    let status = first.status();
    let body = first.text().await.unwrap_or_default();
    if status != reqwest::StatusCode::OK {
        return (
            StatusCode::BAD_GATEWAY,
            Html(format!("redeem answered {status}: {body}")),
        );
    }
    let launch: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_GATEWAY, Html(format!("redeem JSON: {e}"))),
    };
    let second_redeem_status = match p.redeem(code).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    };
    let who = launch["person"]["platform_user_id"].clone();
    lock(&p.launches).push(Redeemed {
        launch,
        second_redeem_status,
    });
    (
        StatusCode::OK,
        Html(format!(
            "<!DOCTYPE html><html><body><h1>Interop product</h1><p id=\"who\">{who}</p></body></html>"
        )),
    )
}

/// What one launch.py run printed and how it ended.
struct LaunchRun {
    exit: Option<i32>,
    out: Value,
    stderr: String,
}

async fn launch_py(python: &Path, interop: &Path, peer: &str, args: &[&str]) -> LaunchRun {
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(interop.join("launch.py"))
        .args(["--platform", peer, "--json", "--timeout", "15"])
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(LAUNCH, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("launch.py {args:?} took longer than {LAUNCH:?}"))
        .expect("launch.py runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let parsed = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "launch.py {args:?} printed no JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    LaunchRun {
        exit: out.status.code(),
        out: parsed,
        stderr,
    }
}

/// (method, URL without query, status) of each hop launch.py made.
fn hops(out: &Value) -> Vec<(String, String, u64)> {
    out["hops"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|h| {
            (
                h["method"].as_str().unwrap_or_default().to_owned(),
                h["url"].as_str().unwrap_or_default().to_owned(),
                h["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    get_json_as(http, url, None).await
}

/// GET a JSON document, with an API key when the endpoint needs one.
async fn get_json_as(http: &reqwest::Client, url: &str, api_key: Option<&str>) -> Value {
    let mut req = http.get(url);
    if let Some(key) = api_key {
        req = req.bearer_auth(key);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(resp.status(), 200, "GET {url}");
    resp.json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}

/// Everything the peer recorded at its OIDC auth endpoint.
async fn peer_launches(http: &reqwest::Client, peer: &str) -> Vec<Value> {
    let v = get_json(http, &format!("{peer}/_inspect/launches")).await;
    v.as_array().expect("launches is a list").clone()
}

/// A successful launch of `user` as `role`: the peer sent exactly one id_token, lmsbridge
/// accepted it and handed the product a launch that says what the id_token said.
/// Returns the normalised launch and the id_token claims.
async fn launch_and_check(
    python: &Path,
    interop: &Path,
    peer: &str,
    http: &reqwest::Client,
    product: &Product,
    (user, role, login_method): (&str, &str, &str),
) -> (Value, Value) {
    let before_peer = peer_launches(http, peer).await.len();
    let before_product = product.launches().len();
    let run = launch_py(
        python,
        interop,
        peer,
        &[
            "--user",
            user,
            "--role",
            role,
            "--login-method",
            login_method,
        ],
    )
    .await;
    let ctx = format!("launch of {user} as {role} ({login_method} login)");
    assert_eq!(
        run.exit,
        Some(0),
        "{ctx}: launch.py failed: {:#}\n{}",
        run.out,
        run.stderr
    );
    assert_eq!(run.out["ok"], true, "{ctx}: {:#}", run.out);
    assert_eq!(run.out["launch"]["status"], 200, "{ctx}: {:#}", run.out);
    let landed = run.out["launch"]["url"].as_str().unwrap_or_default();
    assert!(
        landed.starts_with(&format!("{}/launch?code=", product.base)),
        "{ctx}: the browser ended at {landed}, not the product"
    );
    let hops = hops(&run.out);
    assert!(
        hops.iter().any(|(m, u, s)| m == login_method
            && u.ends_with("/lti/login")
            && (300..400).contains(s)),
        "{ctx}: lmsbridge's login redirects to the platform: {hops:?}"
    );
    assert!(
        hops.iter()
            .any(|(_, u, s)| u == &format!("{peer}/auth") && *s == 200),
        "{ctx}: the platform's auth endpoint answered: {hops:?}"
    );

    // The peer: one auth request from lmsbridge, answered with an id_token.
    let records = peer_launches(http, peer).await;
    assert_eq!(
        records.len(),
        before_peer + 1,
        "{ctx}: one OIDC auth request: {records:#?}"
    );
    let rec = &records[before_peer];
    assert_eq!(
        rec["status"], "id_token_sent",
        "{ctx}: the peer refused lmsbridge's auth request: {rec:#}"
    );
    let auth = &rec["auth_params"];
    assert_eq!(auth["client_id"], CLIENT_ID, "{ctx}");
    assert_eq!(auth["login_hint"], user, "{ctx}");
    assert_eq!(
        auth["redirect_uri"],
        format!("{}/lti/launch", product.bridge),
        "{ctx}"
    );
    let claims = rec["id_token_claims"].clone();
    assert_eq!(claims["sub"], user, "{ctx}: {claims:#}");
    assert_eq!(claims["aud"], CLIENT_ID, "{ctx}");
    for sent in ["name", "email"] {
        assert!(
            claims[sent].is_string(),
            "{ctx}: the peer sent {sent}: {claims:#}"
        );
    }
    assert!(
        claims[ROLES_CLAIM]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{ctx}: roles sent: {claims:#}"
    );

    // The product: exactly one launch, redeemable once, saying what the id_token said.
    let launches = product.launches();
    assert_eq!(
        launches.len(),
        before_product + 1,
        "{ctx}: the product redeemed one launch"
    );
    let Redeemed {
        launch,
        second_redeem_status,
    } = launches[before_product].clone();
    assert_eq!(second_redeem_status, 404, "{ctx}: a code redeems once");
    assert_eq!(launch["message_type"], "LtiResourceLinkRequest", "{ctx}");
    assert_eq!(launch["deployment_id"], DEPLOYMENT_ID, "{ctx}");
    assert_eq!(launch["extras"]["issuer"], claims["iss"], "{ctx}");
    let person = &launch["person"];
    assert_eq!(person["platform_user_id"], user, "{ctx}: {launch:#}");
    assert!(person["id"].is_string(), "{ctx}: person id: {launch:#}");
    assert_eq!(person["name"], claims["name"], "{ctx}: {launch:#}");
    assert_eq!(person["email"], claims["email"], "{ctx}: {launch:#}");
    assert_eq!(
        launch["context"]["platform_context_id"], "ctx-1",
        "{ctx}: {launch:#}"
    );
    assert_eq!(
        launch["context"]["title"], claims[CONTEXT_CLAIM]["title"],
        "{ctx}: {launch:#}"
    );
    assert_eq!(
        launch["resource"]["platform_resource_id"], "rl-1",
        "{ctx}: {launch:#}"
    );
    assert_eq!(
        launch["resource"]["title"], claims[RESOURCE_LINK_CLAIM]["title"],
        "{ctx}: {launch:#}"
    );
    (launch, claims)
}

/// True for an ISO 8601 time with exactly six fractional digits and a zone, as AGS platforms
/// need to order scores that arrive within the same millisecond.
fn has_microseconds(ts: &str) -> bool {
    let Some((_, frac)) = ts.rsplit_once('.') else {
        return false;
    };
    let digits = frac.chars().take_while(char::is_ascii_digit).count();
    let zone = &frac[digits..];
    digits == 6
        && (zone == "Z" || zone.len() == 6 && (zone.starts_with('+') || zone.starts_with('-')))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_lti_platform_launches_lmsbridge_and_records_its_score() {
    let Some(python) = interop_python() else {
        return;
    };
    let interop = interop_dir();
    let started = Instant::now();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // lmsbridge, the peer, and the product, each on a loopback port picked now.
    let dir = DataDir::new();
    let product_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let product_base = format!("http://{}", product_listener.local_addr().unwrap());
    let (bridge_proc, bridge) = serve(&dir.0);
    let (peer_proc, peer, config) = start_peer(&python, &interop, &bridge);
    assert_eq!(config["issuer"], peer, "{config:#}");
    assert_eq!(config["library"], "lti1p3platform");

    // Registered from the shell, as an admin would.
    let tenant = admin(
        &dir.0,
        &[
            "tenant",
            "create",
            "--name",
            "Interop School",
            "--launch-url",
            &format!("{product_base}/launch"),
        ],
    );
    let tenant_id = tenant["id"].as_str().expect("tenant id").to_owned();
    let api_key = tenant["api_key"].as_str().expect("api key").to_owned();
    let str_of = |k: &str| {
        config[k]
            .as_str()
            .unwrap_or_else(|| panic!("peer config has no {k}: {config:#}"))
            .to_owned()
    };
    let platform = admin(
        &dir.0,
        &[
            "platform",
            "add",
            "--tenant",
            &tenant_id,
            "--kind",
            "lti",
            "--issuer",
            &peer,
            "--client-id",
            CLIENT_ID,
            "--auth-url",
            &str_of("auth_login_url"),
            "--token-url",
            &str_of("auth_token_url"),
            "--jwks-url",
            &str_of("key_set_url"),
            "--deployment-id",
            DEPLOYMENT_ID,
        ],
    );
    assert!(platform["id"].is_string(), "{platform:#}");

    let product = Product {
        http: http.clone(),
        base: product_base.clone(),
        bridge: bridge.clone(),
        api_key: api_key.clone(),
        launches: Arc::default(),
    };
    let product_server = tokio::spawn({
        let app = axum::Router::new()
            .route("/launch", axum::routing::get(product_launch))
            .with_state(product.clone());
        async move { axum::serve(product_listener, app).await }
    });

    // A learner, an instructor, and a learner whose login initiation is POSTed.
    let (learner, learner_claims) = launch_and_check(
        &python,
        &interop,
        &peer,
        &http,
        &product,
        ("learner-1", "Learner", "GET"),
    )
    .await;
    assert_eq!(learner["roles"], json!(["learner"]), "{learner:#}");
    assert_eq!(learner_claims[ROLES_CLAIM], json!([LEARNER]));
    let grade_target = learner["grade_target_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the learner launch has a grade target: {learner:#}"))
        .to_owned();
    let line_item = learner_claims[AGS_ENDPOINT]["lineitem"]
        .as_str()
        .unwrap_or_else(|| panic!("the peer sent a line item: {learner_claims:#}"))
        .to_owned();

    let (instructor, instructor_claims) = launch_and_check(
        &python,
        &interop,
        &peer,
        &http,
        &product,
        ("instructor-1", "Instructor", "GET"),
    )
    .await;
    assert_eq!(instructor["roles"], json!(["instructor"]), "{instructor:#}");
    assert_eq!(instructor_claims[ROLES_CLAIM], json!([INSTRUCTOR]));
    assert_ne!(instructor["person"]["id"], learner["person"]["id"]);
    assert_eq!(
        instructor["grade_target_id"], grade_target,
        "the same resource link has one grade target whoever launches it"
    );

    let (posted, _) = launch_and_check(
        &python,
        &interop,
        &peer,
        &http,
        &product,
        ("learner-2", "Learner", "POST"),
    )
    .await;
    assert_eq!(posted["roles"], json!(["learner"]), "{posted:#}");
    assert_eq!(posted["grade_target_id"], grade_target);

    // A target outside the tool is refused at lmsbridge's login, before the platform is asked.
    let before = peer_launches(&http, &peer).await.len();
    let refused = launch_py(
        &python,
        &interop,
        &peer,
        &[
            "--user",
            "learner-1",
            "--role",
            "Learner",
            "--target-link-uri",
            "https://evil.example/lti/launch",
            "--expect-status",
            "400",
        ],
    )
    .await;
    // launch.py exits 2 ("flow broken") when the tool answers its login with no redirect to
    // the platform, whatever --expect-status says; the answer itself is in its JSON.
    assert_eq!(
        refused.exit,
        Some(2),
        "{:#}\n{}",
        refused.out,
        refused.stderr
    );
    assert_eq!(refused.out["status"], 400, "{:#}", refused.out);
    assert!(
        refused.out["body"]
            .as_str()
            .is_some_and(|b| b.contains("target_link_uri_foreign")),
        "{:#}",
        refused.out
    );
    let refused_hops = hops(&refused.out);
    assert!(
        refused_hops
            .last()
            .is_some_and(|(_, u, s)| u == &format!("{bridge}/lti/login") && *s == 400),
        "{refused_hops:?}"
    );
    assert_eq!(
        peer_launches(&http, &peer).await.len(),
        before,
        "no auth request reached the platform"
    );
    assert_eq!(product.launches().len(), 3, "no launch reached the product");

    // The product grades the learner; lmsbridge delivers it to the peer's line item.
    let score_body = json!({
        "grade_target_id": grade_target,
        "person_id": learner["person"]["id"],
        "score_given": 42,
        "score_maximum": 100,
        "actor": {"kind": "ai_grader", "id": "interop"},
    });
    let post_score = || {
        http.post(format!("{bridge}/api/v1/scores"))
            .bearer_auth(&api_key)
            .header("Idempotency-Key", "interop-learner-1-attempt-1")
            .json(&score_body)
            .send()
    };
    let resp = post_score().await.unwrap();
    assert_eq!(resp.status(), 202);
    let queued: Value = resp.json().await.unwrap();
    let score_id = queued["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{queued:#}"))
        .to_owned();
    // The same request again is the same score, not a second one.
    let replay = post_score().await.unwrap();
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.json::<Value>().await.unwrap()["id"], score_id);

    let deadline = Instant::now() + DELIVERY;
    let received = loop {
        let scores = get_json(&http, &format!("{peer}/_inspect/scores?user_id=learner-1")).await;
        if let Some(first) = scores.as_array().and_then(|a| a.first()) {
            break first.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no score for learner-1 reached the peer within {DELIVERY:?}; lmsbridge says {:#}; \
             the peer saw tokens {:#} and requests {:#}",
            get_json_as(
                &http,
                &format!("{bridge}/api/v1/scores/{score_id}"),
                Some(&api_key)
            )
            .await,
            get_json(&http, &format!("{peer}/_inspect/tokens")).await,
            get_json(&http, &format!("{peer}/_inspect/requests")).await,
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(received["accepted"], true, "{received:#}");
    assert_eq!(received["outcome"], "success", "{received:#}");
    assert_eq!(received["lineitem_id"], line_item, "{received:#}");
    assert_eq!(received["user_id"], "learner-1", "{received:#}");
    assert!(
        received["content_type"]
            .as_str()
            .is_some_and(|c| c.starts_with("application/vnd.ims.lis.v1.score+json")),
        "{received:#}"
    );
    let wire = &received["score"];
    assert_eq!(wire["userId"], "learner-1", "{wire:#}");
    assert_eq!(wire["scoreGiven"].as_f64(), Some(42.0), "{wire:#}");
    assert_eq!(wire["scoreMaximum"].as_f64(), Some(100.0), "{wire:#}");
    assert_eq!(wire["activityProgress"], "Completed", "{wire:#}");
    assert_eq!(wire["gradingProgress"], "FullyGraded", "{wire:#}");
    let ts = wire["timestamp"].as_str().unwrap_or_default();
    assert!(has_microseconds(ts), "timestamp {ts:?} has microseconds");
    // The peer granted the token the score was sent with, for the score scope.
    let tokens = get_json(&http, &format!("{peer}/_inspect/tokens")).await;
    let token = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["jti"] == received["token_jti"])
        .unwrap_or_else(|| panic!("the score's token was issued by the peer: {tokens:#}"));
    assert_eq!(token["status"], "granted", "{token:#}");
    assert!(
        token["scope"]
            .as_str()
            .unwrap_or_default()
            .split(' ')
            .any(|s| s == SCORE_SCOPE),
        "{token:#}"
    );
    let results = get_json(&http, &format!("{peer}/_inspect/results")).await;
    assert!(
        results
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["userId"] == "learner-1"
                && r["scoreOf"] == line_item
                && r["resultScore"].as_f64() == Some(42.0)),
        "the peer's gradebook shows 42 for learner-1: {results:#}"
    );

    let deadline = Instant::now() + DELIVERY;
    let delivered = loop {
        let s = get_json_as(
            &http,
            &format!("{bridge}/api/v1/scores/{score_id}"),
            Some(&api_key),
        )
        .await;
        if s["state"] == "delivered" {
            break s;
        }
        assert!(
            Instant::now() < deadline
                && matches!(s["state"].as_str(), Some("queued" | "sending" | "retrying")),
            "score {score_id} did not become delivered within {DELIVERY:?}: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        delivered["score_given"].as_f64(),
        Some(42.0),
        "{delivered:#}"
    );
    let scores = get_json(&http, &format!("{peer}/_inspect/scores?user_id=learner-1")).await;
    assert_eq!(
        scores.as_array().unwrap().len(),
        1,
        "one score sent for one request: {scores:#}"
    );

    // Everything the interop did is in an intact audit chain.
    let verified = lmsbridge()
        .env("RUST_LOG", "warn")
        .args(["audit", "verify", "--data-dir"])
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );

    product_server.abort();
    drop(peer_proc);
    drop(bridge_proc);
    eprintln!(
        "interop: 3 launches, 1 refusal and 1 score against lti1p3platform in {:.1?}",
        started.elapsed()
    );
}
