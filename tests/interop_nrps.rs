//! Roster sync against code nobody on the team wrote: the LTI 1.3 platform peer in
//! `shared/interop` (Python, `lti1p3platform`) serves Names and Role Provisioning Services
//! for context `ctx-1` (`instructor-1`, `learner-1..3`), paged by two (`--page-size 2`).
//! A learner launches lmsbridge from the peer, the product starts a sync through the API,
//! and the members listed are the peer's, read over both pages with a token the peer
//! granted for the NRPS scope.
//!
//! Needs the peer's venv (`VENV=./.venv-interop bash ../shared/interop/install.sh`) and
//! `LMSBRIDGE_INTEROP_PYTHON` pointing at its python; `LMSBRIDGE_INTEROP_DIR` names the
//! peer's folder (default `../shared/interop`). Without the python the test says SKIPPED,
//! except under `CI`, where it fails.

use serde_json::{Value, json};
use server::{AppBuilder, Settings};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use url::Url;

const CLIENT_ID: &str = "interop-tool";
const DEPLOYMENT_ID: &str = "deployment-1";
const NRPS_SCOPE: &str =
    "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly";
const NRPS_MEDIA_TYPE: &str = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json";
/// How long the peer may take to say it is ready.
const STARTUP: Duration = Duration::from_secs(30);
/// How long one launch.py run may take.
const LAUNCH: Duration = Duration::from_secs(60);
/// How long the sync may take.
const SYNC_DONE: Duration = Duration::from_secs(30);

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
        _ if std::env::var_os("CI").is_some() => panic!(
            "the NRPS interop test cannot run in CI without LMSBRIDGE_INTEROP_PYTHON: .ci/run \
             must install the peer (bash ../shared/interop/install.sh) and export its python"
        ),
        _ => {
            // Straight to the stderr handle: the harness captures eprintln! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (NRPS interop): set LMSBRIDGE_INTEROP_PYTHON to the python of \
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
        dir.join("platform.py").is_file() && dir.join("launch.py").is_file(),
        "no platform.py and launch.py in {} (set LMSBRIDGE_INTEROP_DIR)",
        dir.display()
    );
    // The physical path: platform.py compares its folder with abspath(__file__) to drop it
    // from sys.path, which a symlinked path defeats.
    dir.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// The running peer; killed when dropped, its output shown if the test failed.
struct Peer {
    child: tokio::process::Child,
    base: String,
    config: Value,
    log: Arc<Mutex<String>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
            eprintln!("---- platform.py output ----\n{log}---- end ----");
        }
    }
}

fn drain(
    from: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    log: Arc<Mutex<String>>,
    ready: Option<tokio::sync::oneshot::Sender<String>>,
) {
    tokio::spawn(async move {
        let mut ready = ready;
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("READY ")
                && let Some(tx) = ready.take()
            {
                let _ = tx.send(rest.to_owned());
            }
            if let Ok(mut l) = log.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
    });
}

/// The peer on a free loopback port, registered with lmsbridge's URLs.
async fn start_peer(python: &Path, interop: &Path, bridge: &Url) -> Peer {
    let mut failures = Vec::new();
    // The port is free when picked; another process may take it before the peer binds it.
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string();
        let base = format!("http://127.0.0.1:{port}");
        let mut cmd = tokio::process::Command::new(python);
        cmd.arg(interop.join("platform.py"))
            .args(["--port", &port, "--issuer", &base, "--quiet"])
            .args([
                "--tool-login-url",
                bridge.join("lti/login").unwrap().as_str(),
            ])
            .args([
                "--tool-launch-url",
                bridge.join("lti/launch").unwrap().as_str(),
            ])
            .args([
                "--tool-jwks-url",
                bridge.join(".well-known/jwks.json").unwrap().as_str(),
            ])
            .args(["--client-id", CLIENT_ID, "--deployment-id", DEPLOYMENT_ID])
            // Four members in pages of two: lmsbridge must follow rel="next".
            .args(["--page-size", "2"])
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("platform.py starts");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        drain(child.stdout.take().unwrap(), log.clone(), Some(tx));
        drain(child.stderr.take().unwrap(), log.clone(), None);
        let mut peer = Peer {
            child,
            base,
            config: Value::Null,
            log,
        };
        match tokio::time::timeout(STARTUP, rx).await {
            Ok(Ok(line)) => {
                peer.config = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("READY line is not JSON ({e}): {line}"));
                return peer;
            }
            _ => {
                let log = peer.log.lock().map(|l| l.clone()).unwrap_or_default();
                if !log.contains("cannot listen") {
                    panic!("platform.py did not become ready within {STARTUP:?}:\n{log}");
                }
                failures.push(log);
            }
        }
    }
    panic!("the peer found no free port: {failures:#?}");
}

async fn get_json(http: &reqwest::Client, url: &str, key: Option<&str>) -> Value {
    let mut req = http.get(url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(resp.status(), 200, "GET {url}");
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roster_read_from_a_third_party_platform_lists_its_members() {
    let Some(python) = interop_python() else {
        return;
    };
    let interop = interop_dir();
    tokio::time::timeout(Duration::from_secs(240), scenario(&python, &interop))
        .await
        .expect("the NRPS interop scenario finished within 240 s");
}

async fn scenario(python: &Path, interop: &Path) {
    let dir = std::env::temp_dir().join(format!("lmsbridge-interop-nrps-{}", uuid::Uuid::new_v4()));
    let mut settings = Settings::defaults_for("127.0.0.1:0".parse().unwrap(), dir.clone());
    let listener = lmsbridge::demo::bind(&mut settings).await.unwrap();
    let bridge = settings.public("");
    let peer = start_peer(python, interop, &bridge).await;
    assert_eq!(peer.config["library"], "lti1p3platform");
    assert_eq!(peer.config["page_size"], 2, "{:#}", peer.config);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // lmsbridge in-process, the peer registered as an admin would.
    let running = AppBuilder::new(settings.clone()).build().await.unwrap();
    let store = running.app.store().clone();
    let actor = domain::Actor::system("test");
    let (tenant, key) = store
        .create_tenant(
            "Interop Roster School",
            Some(&settings.public("product/launch")),
            &actor,
        )
        .await
        .unwrap();
    let api_key = key.secret().to_owned();
    let scope = store.tenant_scope(tenant.id).await.unwrap();
    let config_url = |k: &str| {
        Url::parse(
            peer.config[k]
                .as_str()
                .unwrap_or_else(|| panic!("peer config has no {k}: {:#}", peer.config)),
        )
        .unwrap()
    };
    store
        .tenant(&scope)
        .add_platform(
            &store::NewPlatform {
                kind: domain::PlatformKind::Lti,
                issuer: peer.base.clone(),
                client_id: CLIENT_ID.into(),
                auth_url: config_url("auth_login_url"),
                token_url: config_url("auth_token_url"),
                jwks_url: config_url("key_set_url"),
                token_audience: None,
                accept_new_deployments: false,
                deployment_ids: vec![DEPLOYMENT_ID.into()],
            },
            &actor,
        )
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(lmsbridge::cli::run_server(
        listener,
        running,
        |app| {
            server::router(app).route(
                "/product/launch",
                axum::routing::get(|| async { "the product" }),
            )
        },
        false,
        async {
            let _ = stopped.await;
        },
    ));

    // A learner launches from the peer; the product redeems the code for our context id.
    let out = tokio::time::timeout(
        LAUNCH,
        tokio::process::Command::new(python)
            .arg(interop.join("launch.py"))
            .args(["--platform", &peer.base, "--json", "--timeout", "15"])
            .args(["--user", "learner-1", "--role", "Learner"])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("launch.py finished")
    .expect("launch.py runs");
    let run: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "launch.py printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{run:#}");
    let landed = Url::parse(run["launch"]["url"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no landing URL ({e}): {run:#}"));
    assert_eq!(landed.path(), "/product/launch", "{run:#}");
    let code = landed
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a handoff code");
    let launch: Value = http
        .post(bridge.join("api/v1/launches/redeem").unwrap())
        .bearer_auth(&api_key)
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        launch["context"]["platform_context_id"], "ctx-1",
        "{launch:#}"
    );
    let context = launch["context"]["id"].as_str().unwrap().to_owned();

    // The sync, through the product API.
    let done = run_sync(&http, &bridge, &api_key, &context).await;
    assert_eq!(
        done["state"],
        "done",
        "{done:#}\npeer requests: {:#}",
        get_json(&http, &format!("{}/_inspect/requests", peer.base), None).await
    );
    assert_eq!(done["pages_fetched"], 2, "{done:#}");
    assert_eq!(done["members_seen"], 4, "{done:#}");

    let listed = get_json(
        &http,
        bridge
            .join(&format!("api/v1/contexts/{context}/members"))
            .unwrap()
            .as_str(),
        Some(&api_key),
    )
    .await;
    let mut members: Vec<(String, Value, String)> = listed["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform_user_id"].as_str().unwrap().to_owned(),
                m["roles"].clone(),
                m["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    members.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        members,
        [
            (
                "instructor-1".to_owned(),
                json!(["instructor"]),
                "Ina Instructor".to_owned()
            ),
            (
                "learner-1".to_owned(),
                json!(["learner"]),
                "Lea Learner1".to_owned()
            ),
            (
                "learner-2".to_owned(),
                json!(["learner"]),
                "Lea Learner2".to_owned()
            ),
            (
                "learner-3".to_owned(),
                json!(["learner"]),
                "Lea Learner3".to_owned()
            ),
        ],
        "{listed:#}"
    );
    // The peer's own record: two membership pages, asked for by media type, the second
    // through its next link, with a token it granted for the NRPS scope.
    let requests = get_json(&http, &format!("{}/_inspect/requests", peer.base), None).await;
    let nrps: Vec<&Value> = requests
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/nrps/contexts/ctx-1/memberships"))
        })
        .collect();
    assert_eq!(nrps.len(), 2, "{requests:#}");
    assert!(nrps.iter().all(|r| r["status"] == 200), "{nrps:#?}");
    assert!(
        nrps.iter().all(|r| r.to_string().contains(NRPS_MEDIA_TYPE)),
        "Accept names the membership container: {nrps:#?}"
    );
    assert!(
        nrps[1]["query"]
            .as_str()
            .is_some_and(|q| q.contains("page=2")),
        "{nrps:#?}"
    );
    let tokens = get_json(&http, &format!("{}/_inspect/tokens", peer.base), None).await;
    assert!(
        tokens
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["status"] == "granted"
                && t["scope"]
                    .as_str()
                    .is_some_and(|s| s.split(' ').any(|s| s == NRPS_SCOPE))),
        "{tokens:#}"
    );

    // The peer throttles, then fails once: each answer is retried, the 429 no sooner than
    // its Retry-After, and the sync completes.
    control(
        &http,
        &peer,
        json!({"fail_next": [429, 500], "groups": ["nrps"], "retry_after": 1}),
    )
    .await;
    let retried = run_sync(&http, &bridge, &api_key, &context).await;
    assert_eq!(retried["state"], "done", "{retried:#}");
    assert_eq!(retried["members_seen"], 4, "{retried:#}");
    let faults = get_json(&http, &format!("{}/_inspect/faults", peer.base), None).await;
    let injected: Vec<&Value> = faults
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["status"])
        .collect();
    assert_eq!(injected, [&json!(429), &json!(500)], "{faults:#}");

    // A platform that keeps failing: the sync fails with the reason, and removes no one.
    control(
        &http,
        &peer,
        json!({"fail_next": [500, 500, 500, 500], "groups": ["nrps"]}),
    )
    .await;
    let failed = run_sync(&http, &bridge, &api_key, &context).await;
    assert_eq!(failed["state"], "failed", "{failed:#}");
    assert_eq!(failed["error"]["code"], "platform_5xx", "{failed:#}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("HTTP 500") && m.contains("after 4 attempts")),
        "{failed:#}"
    );
    assert_eq!(failed["removed"], 0);
    let still = get_json(
        &http,
        bridge
            .join(&format!("api/v1/contexts/{context}/members"))
            .unwrap()
            .as_str(),
        Some(&api_key),
    )
    .await;
    assert_eq!(still["members"].as_array().unwrap().len(), 4, "{still:#}");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("lmsbridge stopped")
        .unwrap()
        .unwrap();
    drop(peer);
    let _ = std::fs::remove_dir_all(dir);
}

/// Starts a sync of `context` through the product API and polls it until it is finished.
async fn run_sync(http: &reqwest::Client, bridge: &Url, api_key: &str, context: &str) -> Value {
    let started: Value = http
        .post(
            bridge
                .join(&format!("api/v1/contexts/{context}/sync"))
                .unwrap(),
        )
        .bearer_auth(api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = started["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{started:#}"))
        .to_owned();
    let deadline = Instant::now() + SYNC_DONE;
    loop {
        let s = get_json(
            http,
            bridge
                .join(&format!("api/v1/roster-syncs/{id}"))
                .unwrap()
                .as_str(),
            Some(api_key),
        )
        .await;
        if matches!(s["state"].as_str(), Some("done" | "failed")) {
            return s;
        }
        assert!(Instant::now() < deadline, "sync not finished: {s:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Changes the peer's fault injection (its `/_control/faults` test hook).
async fn control(http: &reqwest::Client, peer: &Peer, body: Value) {
    let resp = http
        .post(format!("{}/_control/faults", peer.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
