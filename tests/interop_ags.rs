//! Assignment and Grade Services against code nobody on the team wrote: the LTI 1.3 platform
//! peer in `shared/interop` (Python, `lti1p3platform`) launches the real `lmsbridge serve`
//! binary, then the product manages a gradebook column through lmsbridge's API: the line item
//! it creates is in the peer's line items, the listing pages through the peer's `Link`
//! headers, a score posted through `POST /api/v1/scores` is in the peer's `/_inspect/scores`
//! with the right line item, user, values and timestamp, its result reads back, and the
//! line item is renamed and deleted on the peer.
//!
//! Needs the peer's venv (`VENV=./.venv-interop bash ../shared/interop/install.sh`) and
//! `LMSBRIDGE_INTEROP_PYTHON=./.venv-interop/bin/python`; `LMSBRIDGE_INTEROP_DIR` names the
//! peer's folder (default `../shared/interop`). Without the python the test says SKIPPED,
//! except under `CI`, where it fails.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

const CLIENT_ID: &str = "interop-ags-tool";
const DEPLOYMENT_ID: &str = "deployment-1";
const AGS_ENDPOINT: &str = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint";
const STARTUP: Duration = Duration::from_secs(30);
const LAUNCH: Duration = Duration::from_secs(60);
const DELIVERY: Duration = Duration::from_secs(15);

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
            panic!("the AGS interop test cannot run in CI without LMSBRIDGE_INTEROP_PYTHON")
        }
        _ => {
            // Straight to stderr: the harness swallows eprintln! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (interop AGS): set LMSBRIDGE_INTEROP_PYTHON to the python of \
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
    // platform.py compares its folder with the symlink-resolved one Python uses.
    dir.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
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
        let drain = |from: Box<dyn Read + Send>, tx: Option<mpsc::Sender<String>>| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(from).lines().map_while(Result::ok) {
                    lock(&log).push_str(&line);
                    lock(&log).push('\n');
                    if let Some(tx) = &tx {
                        let _ = tx.send(line);
                    }
                }
            });
        };
        drain(Box::new(child.stdout.take().unwrap()), Some(tx));
        drain(Box::new(child.stderr.take().unwrap()), None);
        Self {
            name,
            child,
            lines,
            log,
        }
    }

    fn line_starting(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + STARTUP;
        loop {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{} stopped:\n{}", self.name, lock(&self.log))
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print {prefix:?}:\n{}",
                self.name,
                lock(&self.log)
            );
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            std::thread::sleep(Duration::from_millis(100));
            eprintln!("---- {} ----\n{}", self.name, lock(&self.log));
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
        "lmsbridge {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("admin commands print JSON")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Env {
    http: reqwest::Client,
    bridge: String,
    peer: String,
    api_key: String,
    python: PathBuf,
    interop: PathBuf,
    _procs: (Proc, Proc),
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A data directory removed afterwards, unless the test failed.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let dir = std::env::temp_dir()
                .join(format!("lmsbridge-interop-ags-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}

/// lmsbridge serving on a port of its own choosing, the peer registered with it (paging its
/// containers one item a page), a tenant whose launches land on `product`.
fn start(python: PathBuf, interop: PathBuf, product: &str) -> Env {
    let dir = tempdir::Dir::new();
    let mut cmd = lmsbridge();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir.0)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut bridge_proc = Proc::spawn("lmsbridge serve", cmd);
    let line = bridge_proc.line_starting("lmsbridge serving on ");
    let bridge = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("an address")
        .trim_end_matches('/')
        .to_owned();

    let port = free_port().to_string();
    let peer = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(&python);
    cmd.arg(interop.join("platform.py"))
        .args(["--port", &port, "--page-size", "1"])
        .args(["--tool-login-url", &format!("{bridge}/lti/login")])
        .args(["--tool-launch-url", &format!("{bridge}/lti/launch")])
        .args([
            "--tool-jwks-url",
            &format!("{bridge}/.well-known/jwks.json"),
        ])
        .args(["--client-id", CLIENT_ID, "--deployment-id", DEPLOYMENT_ID])
        .args(["--issuer", &peer, "--quiet"])
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let mut peer_proc = Proc::spawn("platform.py", cmd);
    let ready = peer_proc.line_starting("READY ");
    let config: Value = serde_json::from_str(&ready["READY ".len()..]).expect("READY JSON");

    let tenant = admin(
        &dir.0,
        &[
            "tenant",
            "create",
            "--name",
            "AGS Interop",
            "--launch-url",
            product,
        ],
    );
    let str_of = |k: &str| config[k].as_str().expect("peer config").to_owned();
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
            &str_of("auth_login_url"),
            "--token-url",
            &str_of("auth_token_url"),
            "--jwks-url",
            &str_of("key_set_url"),
            "--deployment-id",
            DEPLOYMENT_ID,
        ],
    );
    Env {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        bridge,
        peer,
        api_key: tenant["api_key"].as_str().unwrap().to_owned(),
        python,
        interop,
        _procs: (bridge_proc, peer_proc),
        _dir: dir,
    }
}

impl Env {
    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/{path}", self.bridge))
            .bearer_auth(&self.api_key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn inspect(&self, view: &str) -> Value {
        self.http
            .get(format!("{}/_inspect/{view}", self.peer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A launch of `user` by the peer's launch.py; the handoff code is redeemed here.
    async fn launch(&self, user: &str) -> Value {
        let mut cmd = tokio::process::Command::new(&self.python);
        cmd.arg(self.interop.join("launch.py"))
            .args(["--platform", &self.peer, "--json", "--timeout", "15"])
            .args(["--user", user, "--role", "Learner"])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(LAUNCH, cmd.output())
            .await
            .expect("launch.py finished in time")
            .expect("launch.py runs");
        let run: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("launch.py: {e}\n{}", String::from_utf8_lossy(&out.stderr)));
        let landed = url::Url::parse(run["launch"]["url"].as_str().unwrap_or_default())
            .unwrap_or_else(|_| panic!("the launch did not land: {run:#}"));
        let code = landed
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no code in {landed}"));
        let (status, launch) = self
            .api(
                reqwest::Method::POST,
                "api/v1/launches/redeem",
                Some(json!({"code": code})),
            )
            .await;
        assert_eq!(status, 200, "{launch:#}");
        launch
    }
}

/// A product that answers launch handoffs; the test redeems the codes from launch.py's report.
async fn product() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/launch", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/launch", axum::routing::get(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_holds_the_line_item_and_score_the_product_sent_through_lmsbridge() {
    let Some(python) = interop_python() else {
        return;
    };
    let product = product().await;
    let env = start(python, interop_dir(), &product);

    let learner = env.launch("learner-1").await;
    let context = learner["context"]["id"].as_str().unwrap().to_owned();
    let person = learner["person"]["id"].as_str().unwrap().to_owned();
    let sent = &env.inspect("launches").await[0]["id_token_claims"][AGS_ENDPOINT];
    let default_item = sent["lineitem"].as_str().unwrap().to_owned();

    // Created through the product API: in the peer's line items, made by the tool.
    let (status, created) = env
        .api(
            reqwest::Method::POST,
            &format!("api/v1/contexts/{context}/line-items"),
            Some(json!({
                "label": "Interop essay", "score_maximum": 40, "tag": "essay",
                "resource_id": "essay-1", "resource_link_id": "rl-1",
                "start_date_time": "2027-03-01T08:00:00Z",
            })),
        )
        .await;
    assert_eq!(status, 201, "{created:#}");
    let id = created["id"].as_str().unwrap().to_owned();
    let url = created["platform_line_item_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        url.starts_with(sent["lineitems"].as_str().unwrap()),
        "{url} is in the context's container"
    );
    let on_peer = env.inspect("lineitems").await;
    let item = on_peer
        .as_array()
        .unwrap()
        .iter()
        .find(|li| li["id"] == url.as_str())
        .unwrap_or_else(|| panic!("{url} on the peer: {on_peer:#}"));
    assert_eq!(item["label"], "Interop essay");
    assert_eq!(item["scoreMaximum"], 40.0);
    assert_eq!(item["tag"], "essay");
    assert_eq!(item["resourceId"], "essay-1");
    assert_eq!(item["resourceLinkId"], "rl-1");
    assert_eq!(item["startDateTime"], "2027-03-01T08:00:00Z");
    assert_eq!(item["_context"], "ctx-1");
    assert_eq!(item["_deleted"], false);
    let events = env.inspect("lineitem_events").await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "created"
                && e["origin"] == "tool"
                && e["lineitem"]["id"] == url.as_str()),
        "{events:#}"
    );

    // Listed through the product API across the peer's pages of one.
    let (status, listed) = env
        .api(
            reqwest::Method::GET,
            &format!("api/v1/contexts/{context}/line-items"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{listed:#}");
    let items = listed["line_items"].as_array().unwrap();
    let ids: Vec<&str> = items
        .iter()
        .map(|i| i["platform_line_item_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [default_item.as_str(), url.as_str()]);
    assert_eq!(items[0]["id"], learner["grade_target_id"]);
    assert_eq!(items[1]["id"], id.as_str());
    let requests = env.inspect("requests").await;
    let pages = requests
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "GET" && r["path"] == "/ags/contexts/ctx-1/lineitems")
        .count();
    assert!(pages >= 2, "the listing followed rel=next: {requests:#}");

    // A score through the ordinary pipeline lands on the new line item.
    let (status, queued) = env
        .api(
            reqwest::Method::POST,
            "api/v1/scores",
            Some(json!({
                "grade_target_id": id, "person_id": person, "score_given": 33.5,
                "score_maximum": 40, "comment": "Well argued",
                "actor": {"kind": "instructor", "id": "teacher-9"},
            })),
        )
        .await;
    assert_eq!(status, 202, "{queued:#}");
    let score_id = queued["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + DELIVERY;
    let received = loop {
        let scores = env.inspect("scores?user_id=learner-1").await;
        if let Some(s) = scores
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["lineitem_id"] == url.as_str())
        {
            break s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no score reached the peer: {scores:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(received["accepted"], true, "{received:#}");
    assert_eq!(received["outcome"], "success");
    assert_eq!(received["user_id"], "learner-1");
    assert_eq!(received["context_id"], "ctx-1");
    assert_eq!(received["content_type"], lti::ags::MEDIA_TYPE_SCORE);
    let body = &received["score"];
    assert_eq!(body["userId"], "learner-1");
    assert_eq!(body["scoreGiven"], 33.5);
    assert_eq!(body["scoreMaximum"], 40.0);
    assert_eq!(body["comment"], "Well argued");
    assert_eq!(body["activityProgress"], "Completed");
    assert_eq!(body["gradingProgress"], "FullyGraded");
    // The timestamp is the one lmsbridge gave the score, to the microsecond.
    let (_, record) = env
        .api(
            reqwest::Method::GET,
            &format!("api/v1/scores/{score_id}"),
            None,
        )
        .await;
    assert_eq!(record["state"], "delivered", "{record:#}");
    assert_eq!(
        body["timestamp"],
        lti::ags::format_timestamp(record["timestamp_micros"].as_i64().unwrap())
    );
    assert!(
        body["timestamp"].as_str().unwrap().len() == "2027-01-15T08:00:00.000001Z".len(),
        "{body:#}"
    );

    // Read back as a result, naming our person.
    let (status, results) = env
        .api(
            reqwest::Method::GET,
            &format!("api/v1/line-items/{id}/results"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{results:#}");
    assert_eq!(results["results"][0]["person_id"], person.as_str());
    assert_eq!(results["results"][0]["platform_user_id"], "learner-1");
    assert_eq!(results["results"][0]["result_score"], 33.5);
    assert_eq!(results["results"][0]["result_maximum"], 40.0);

    // Renamed and deleted on the peer.
    let (status, renamed) = env
        .api(
            reqwest::Method::PATCH,
            &format!("api/v1/line-items/{id}"),
            Some(json!({"label": "Interop essay (final)"})),
        )
        .await;
    assert_eq!(status, 200, "{renamed:#}");
    let on_peer = env.inspect("lineitems").await;
    let item = on_peer
        .as_array()
        .unwrap()
        .iter()
        .find(|li| li["id"] == url.as_str())
        .unwrap();
    assert_eq!(item["label"], "Interop essay (final)");
    assert_eq!(item["tag"], "essay", "what was not changed stays");
    let (status, _) = env
        .api(
            reqwest::Method::DELETE,
            &format!("api/v1/line-items/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let on_peer = env.inspect("lineitems").await;
    let item = on_peer
        .as_array()
        .unwrap()
        .iter()
        .find(|li| li["id"] == url.as_str())
        .unwrap();
    assert_eq!(item["_deleted"], true);
}
