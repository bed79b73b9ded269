//! Deep Linking 2.0 interop with code nobody on the team wrote: the LTI 1.3 platform peer in
//! `shared/interop` (Python, `lti1p3platform`) sends a deep linking request to the real
//! `lmsbridge serve` binary; a teacher (the scripted browser) picks two catalog items in
//! lmsbridge's picker; the peer verifies the signed response (signature against lmsbridge's
//! JWKS, iss, aud, deployment, version, nonce, exp, the `data` echo) and creates the resource
//! link with its line item. A learner then launches that link (custom parameters and the line
//! item come back), and a score the product posts reaches the new column.
//!
//! Needs the peer's venv, as `tests/interop.rs` does: `LMSBRIDGE_INTEROP_PYTHON` (and
//! optionally `LMSBRIDGE_INTEROP_DIR`). Without it the test says SKIPPED, except under `CI`.

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
use testkit::Browser;

const CLIENT_ID: &str = "interop-tool";
const DEPLOYMENT_ID: &str = "deployment-1";
const STARTUP: Duration = Duration::from_secs(30);
const LAUNCH: Duration = Duration::from_secs(60);
const DELIVERY: Duration = Duration::from_secs(15);
const DL: &str = "https://purl.imsglobal.org/spec/lti-dl/claim/";

fn interop_python() -> Option<PathBuf> {
    match std::env::var_os("LMSBRIDGE_INTEROP_PYTHON") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(
                p.exists(),
                "LMSBRIDGE_INTEROP_PYTHON={} does not exist",
                p.display()
            );
            Some(p)
        }
        _ if std::env::var_os("CI").is_some() => {
            panic!("the interop test cannot run in CI without LMSBRIDGE_INTEROP_PYTHON")
        }
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (interop deep linking): set LMSBRIDGE_INTEROP_PYTHON to the python of \
                 `VENV=./.venv-interop bash ../shared/interop/install.sh`"
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
        dir.join("platform.py").is_file(),
        "no platform.py in {} (set LMSBRIDGE_INTEROP_DIR)",
        dir.display()
    );
    // platform.py drops its own folder from sys.path by comparing physical paths.
    dir.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// A fresh data directory, kept when the test failed.
struct DataDir(PathBuf);

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

/// A child process killed when the test ends; its output is shown if the test fails.
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
        Self::drain(
            child.stdout.take().unwrap(),
            "stdout",
            log.clone(),
            Some(tx),
        );
        Self::drain(child.stderr.take().unwrap(), "stderr", log.clone(), None);
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
                return Err(format!("{} did not print {prefix:?} in time", self.name));
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            std::thread::sleep(Duration::from_millis(100));
            eprintln!("---- {} output ----\n{}", self.name, lock(&self.log));
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
    serde_json::from_slice(&out.stdout).expect("admin commands print JSON")
}

fn serve(dir: &Path) -> (Proc, String) {
    let mut cmd = lmsbridge();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut p = Proc::spawn("lmsbridge serve", cmd);
    let line = p
        .line_starting("lmsbridge serving on ", STARTUP)
        .unwrap_or_else(|e| panic!("{e}\n{}", lock(&p.log)));
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches('/')
        .to_owned();
    (p, base)
}

fn start_peer(python: &Path, interop: &Path, bridge: &str) -> (Proc, String, Value) {
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string();
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
                let config = serde_json::from_str(&line["READY ".len()..]).unwrap();
                return (p, base, config);
            }
            Err(e) if !lock(&p.log).contains("cannot listen") => {
                panic!("{e}\n{}", lock(&p.log))
            }
            Err(_) => {}
        }
    }
    panic!("the peer found no free port");
}

/// The product: redeems each launch code and keeps the launch.
#[derive(Clone)]
struct Product {
    http: reqwest::Client,
    bridge: String,
    api_key: String,
    launches: Arc<Mutex<Vec<Value>>>,
}

async fn product_launch(
    State(p): State<Product>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, Html<String>) {
    let Some(code) = q.get("code") else {
        return (StatusCode::BAD_REQUEST, Html("no code".into()));
    };
    let redeemed = p
        .http
        .post(format!("{}/api/v1/launches/redeem", p.bridge))
        .bearer_auth(&p.api_key)
        .json(&json!({ "code": code }))
        .send()
        .await;
    match redeemed {
        Ok(r) if r.status() == 200 => {
            let launch: Value = r.json().await.unwrap_or_default();
            lock(&p.launches).push(launch);
            (StatusCode::OK, Html("<p id=\"ok\">launched</p>".into()))
        }
        Ok(r) => (
            StatusCode::BAD_GATEWAY,
            Html(format!("redeem answered {}", r.status())),
        ),
        Err(e) => (StatusCode::BAD_GATEWAY, Html(format!("redeem failed: {e}"))),
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let resp = http
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(resp.status(), 200, "GET {url}");
    resp.json().await.unwrap()
}

async fn launch_py(python: &Path, interop: &Path, peer: &str, args: &[&str]) -> Value {
    let out = tokio::time::timeout(
        LAUNCH,
        tokio::process::Command::new(python)
            .arg(interop.join("launch.py"))
            .args(["--platform", peer, "--json", "--timeout", "15"])
            .args(args)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("launch.py finished in time")
    .expect("launch.py runs");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "launch.py printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The peer's deep linking request as lmsbridge's picker: the scripted browser follows the
/// login, the peer's auto-posted id_token and lmsbridge's redirect.
async fn open_picker(peer: &str) -> testkit::Page {
    let browser = Browser::new();
    let start = format!(
        "{peer}/launch/initiate?message_type=LtiDeepLinkingRequest&user=instructor-1&role=Instructor&redirect=1"
    );
    let picker = browser.get(&start).await.unwrap();
    assert_eq!(picker.status, 200, "{}", picker.body);
    assert_eq!(picker.url.path(), "/lti/deep_linking", "{:?}", picker.trail);
    picker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_platform_accepts_lmsbridges_deep_linking_response() {
    let Some(python) = interop_python() else {
        return;
    };
    let interop = interop_dir();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let dir = DataDir(
        std::env::temp_dir().join(format!("lmsbridge-dl-interop-{}", uuid::Uuid::new_v4())),
    );
    std::fs::create_dir_all(&dir.0).unwrap();
    let product_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let product_base = format!("http://{}", product_listener.local_addr().unwrap());
    let (bridge_proc, bridge) = serve(&dir.0);
    let (peer_proc, peer, config) = start_peer(&python, &interop, &bridge);
    assert_eq!(config["library"], "lti1p3platform");

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
    let api_key = tenant["api_key"].as_str().unwrap().to_owned();
    let cfg = |k: &str| config[k].as_str().unwrap().to_owned();
    admin(
        &dir.0,
        &[
            "platform",
            "add",
            "--tenant",
            tenant["id"].as_str().unwrap(),
            "--kind",
            "lti",
            "--issuer",
            &peer,
            "--client-id",
            CLIENT_ID,
            "--auth-url",
            &cfg("auth_login_url"),
            "--token-url",
            &cfg("auth_token_url"),
            "--jwks-url",
            &cfg("key_set_url"),
            "--deployment-id",
            DEPLOYMENT_ID,
        ],
    );
    let product = Product {
        http: http.clone(),
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

    // The product's catalog, registered through the API.
    let mut ids = Vec::new();
    for body in [
        json!({"title": "Enzyme quiz", "text": "Ten questions", "score_maximum": 10, "custom": {"unit": "3"}}),
        json!({"type": "link", "title": "Reading", "url": "https://product.example/reading/1"}),
    ] {
        let resp = http
            .post(format!("{bridge}/api/v1/catalog"))
            .bearer_auth(&api_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let created: Value = resp.json().await.unwrap();
        ids.push(created["id"].as_str().unwrap().to_owned());
    }

    // The peer offers every type and several items: both are listed, with checkboxes.
    let picker = open_picker(&peer).await;
    assert!(picker.body.contains("Enzyme quiz") && picker.body.contains("Reading"));
    assert!(picker.body.contains("type=\"checkbox\""), "{}", picker.body);
    let form = picker.form("picker").unwrap();
    let mut fields = form.fields.clone();
    fields.extend(ids.iter().map(|id| ("item".to_owned(), id.clone())));
    let returned = Browser::new().submit_form(&form, &fields).await.unwrap();
    assert_eq!(returned.url.as_str(), format!("{peer}/deep_linking/return"));
    assert_eq!(returned.status, 200, "{}", returned.body);
    assert!(
        returned.body.contains("received 2 content item(s)"),
        "{}",
        returned.body
    );

    // What the peer verified and created.
    let links = get_json(&http, &format!("{peer}/_inspect/deep_links")).await;
    let rec = links.as_array().unwrap().last().unwrap().clone();
    assert_eq!(rec["verified"], true, "{rec:#}");
    assert!(rec["error"].is_null(), "{rec:#}");
    let claims = &rec["claims"];
    assert_eq!(claims["iss"], CLIENT_ID);
    assert_eq!(claims["aud"], peer);
    assert!(
        rec["data"].as_str().is_some_and(|d| d.starts_with("dl-")),
        "the request's data came back: {rec:#}"
    );
    let launches = get_json(&http, &format!("{peer}/_inspect/launches")).await;
    let sent = launches
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find_map(|l| l["id_token_claims"][format!("{DL}deep_linking_settings")]["data"].as_str())
        .expect("the peer sent a deep linking request with data");
    assert_eq!(rec["data"], sent, "data is echoed exactly");
    let items = rec["content_items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["type"], "ltiResourceLink");
    assert_eq!(items[0]["url"], format!("{bridge}/lti/launch"));
    assert_eq!(items[0]["lineItem"]["scoreMaximum"].as_f64(), Some(10.0));
    assert_eq!(items[1]["type"], "link");
    assert_eq!(items[1]["url"], "https://product.example/reading/1");
    let created = rec["created_resource_links"].as_array().unwrap();
    assert_eq!(created.len(), 1, "{rec:#}");
    let rlid = created[0]["resource_link_id"].as_str().unwrap().to_owned();
    let seq = created[0]["lineitem_seq"]
        .as_str()
        .unwrap_or_else(|| panic!("a line item was created: {rec:#}"))
        .to_owned();
    let line_items = get_json(&http, &format!("{peer}/_inspect/lineitems")).await;
    let column = line_items
        .as_array()
        .unwrap()
        .iter()
        .find(|li| {
            li["id"]
                .as_str()
                .is_some_and(|u| u.ends_with(&format!("/{seq}")))
        })
        .unwrap_or_else(|| panic!("line item {seq}: {line_items:#}"))
        .clone();
    assert_eq!(column["scoreMaximum"].as_f64(), Some(10.0));
    assert_eq!(column["label"], "Enzyme quiz");
    assert_eq!(column["resourceLinkId"], rlid);
    assert_eq!(column["resourceId"], ids[0].as_str());

    // A learner launches the new link: the custom parameters and the line item come back.
    let run = launch_py(
        &python,
        &interop,
        &peer,
        &[
            "--user",
            "learner-1",
            "--role",
            "Learner",
            "--resource-link-id",
            &rlid,
        ],
    )
    .await;
    assert_eq!(run["ok"], true, "{run:#}");
    let launch = lock(&product.launches)
        .last()
        .cloned()
        .expect("a redeemed launch");
    assert_eq!(
        launch["resource"]["platform_resource_id"], rlid,
        "{launch:#}"
    );
    assert_eq!(
        launch["extras"]["custom"]["lmsbridge_catalog_item"],
        ids[0].as_str()
    );
    assert_eq!(launch["extras"]["custom"]["unit"], "3");
    let target = launch["grade_target_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the placed link is graded: {launch:#}"))
        .to_owned();
    let resp = http
        .post(format!("{bridge}/api/v1/scores"))
        .bearer_auth(&api_key)
        .json(&json!({
            "grade_target_id": target, "person_id": launch["person"]["id"],
            "score_given": 7, "score_maximum": 10,
            "actor": {"kind": "ai_grader", "id": "interop"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let deadline = Instant::now() + DELIVERY;
    let received = loop {
        let scores = get_json(&http, &format!("{peer}/_inspect/scores?user_id=learner-1")).await;
        if let Some(s) = scores
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["lineitem_id"] == column["id"])
        {
            break s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no score reached line item {seq}: {scores:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(received["accepted"], true, "{received:#}");
    assert_eq!(received["score"]["scoreGiven"].as_f64(), Some(7.0));

    // Cancel: the peer accepts an empty, signed response with a message.
    let picker = open_picker(&peer).await;
    let cancelled = picker.submit("cancel", &[]).await.unwrap();
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let links = get_json(&http, &format!("{peer}/_inspect/deep_links")).await;
    let rec = links.as_array().unwrap().last().unwrap();
    assert_eq!(rec["verified"], true, "{rec:#}");
    assert_eq!(rec["content_items"], json!([]));
    assert_eq!(rec["msg"], "No content was added.");

    // Everything is in an intact audit chain.
    let verified = lmsbridge()
        .env("RUST_LOG", "warn")
        .args(["audit", "verify", "--data-dir"])
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );

    product_server.abort();
    drop(peer_proc);
    drop(bridge_proc);
}
