//! The Moodle plugin's sender (its PHP classes, run by `php` outside Moodle) against a real
//! `lmsbridge serve` on loopback: a site paired with `lmsbridge moodle pair`, events signed
//! with the pasted secret are accepted, a resend of the same events is answered as duplicates
//! and stored nothing twice (one product webhook per event), and a wrong secret keeps the
//! events in the plugin's outbox for a later attempt.
//!
//! Runs on SQLite, and on PostgreSQL when LMSBRIDGE_TEST_POSTGRES_URL is set. Needs `php` with
//! the curl extension; says SKIPPED without it unless LMSBRIDGE_PHP_TESTS=1.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde_json::{Value, json};
use support::{Database, Lmsbridge};

const SITE_URL: &str = "https://moodle.example.edu";

fn php_with_curl() -> bool {
    let ok = Command::new("php")
        .args(["-r", "exit(function_exists('curl_init') ? 0 : 1);"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("LMSBRIDGE_PHP_TESTS").is_none(),
            "LMSBRIDGE_PHP_TESTS is set but php with curl does not run (apt-get install php-cli php-curl)"
        );
        eprintln!(
            "SKIPPED (php with the curl extension not installed: apt-get install php-cli php-curl)"
        );
    }
    ok
}

/// Runs the plugin's sender script; returns its JSON (report, outbox, eventids).
fn sender(args: &[&str]) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("moodle/tests/sender_cli.php");
    let mut child = Command::new("php")
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the sender ran longer than 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "sender failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

type Hooks = Arc<Mutex<Vec<(String, Value)>>>;

/// A product endpoint on loopback recording the webhooks lmsbridge delivers.
async fn webhook_receiver() -> (String, Hooks) {
    let hooks: Hooks = Arc::default();
    let recorded = hooks.clone();
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let recorded = recorded.clone();
            async move {
                let event = headers
                    .get("lmsbridge-event")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                recorded.lock().unwrap().push((event, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hooks"), hooks)
}

fn count(hooks: &Hooks, event: &str) -> usize {
    hooks
        .lock()
        .unwrap()
        .iter()
        .filter(|(e, _)| e == event)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_plugins_sender_is_accepted_deduplicated_and_kept_on_a_wrong_secret() {
    if php_with_curl() {
        sender_against_serve(&Database::sqlite()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_plugins_sender_is_accepted_deduplicated_and_kept_on_a_wrong_secret() {
    if !php_with_curl() {
        return;
    }
    if let Some(db) = Database::postgres().await {
        sender_against_serve(&db).await;
    }
}

async fn sender_against_serve(db: &Database) {
    let lb = Lmsbridge::new(db, &[]);
    let tenant = lb.cli(&["tenant", "create", "--name", "Springfield"]);
    let tenant_id = tenant["id"].as_str().unwrap().to_owned();
    let api_key = tenant["api_key"].as_str().unwrap().to_owned();
    let platform = lb.cli(&[
        "platform",
        "add",
        "--tenant",
        &tenant_id,
        "--kind",
        "moodle",
        "--issuer",
        SITE_URL,
        "--client-id",
        "moodle-client-1",
        "--auth-url",
        &format!("{SITE_URL}/mod/lti/auth.php"),
        "--token-url",
        &format!("{SITE_URL}/mod/lti/token.php"),
        "--jwks-url",
        &format!("{SITE_URL}/mod/lti/certs.php"),
        "--deployment-id",
        "1",
    ]);
    let platform_id = platform["id"].as_str().unwrap().to_owned();
    let paired = lb.cli(&[
        "moodle",
        "pair",
        "--tenant",
        &tenant_id,
        "--platform",
        &platform_id,
        "--site-url",
        SITE_URL,
    ]);
    let site = paired["site_id"].as_str().unwrap().to_owned();
    let secret = paired["secret"].as_str().unwrap().to_owned();
    assert!(site.starts_with("ms_"), "{paired}");

    let (_served, base) = lb.serve(0, false);
    let base = base.as_str().trim_end_matches('/').to_owned();
    let (hook_url, hooks) = webhook_receiver().await;
    let http = reqwest::Client::new();
    let set = http
        .put(format!("{base}/api/v1/webhook"))
        .bearer_auth(&api_key)
        .json(&json!({"url": hook_url}))
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success(), "{:?}", set.text().await);

    let state = db.dir.join("sent-events.json");
    let state = state.to_str().unwrap();
    let url = format!("{base}/");
    let common = ["--url", &url, "--site", &site, "--state", state];

    // First send, three events per request: every event accepted, the outbox empty.
    let mut args = common.to_vec();
    args.extend(["--secret", &secret, "--batch", "3"]);
    let first = tokio::task::spawn_blocking({
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        move || sender(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    let report = &first["report"];
    assert_eq!(report["requests"], 3, "{first}");
    assert_eq!(report["sent"], 8, "{first}");
    assert_eq!(report["accepted"], 8, "{first}");
    assert_eq!(report["duplicates"], 0, "{first}");
    assert_eq!(report["failed"], 0, "{first}");
    assert_eq!(report["success"], true, "{first}");
    assert_eq!(first["outbox"], json!([]), "{first}");

    // The product hears about the completion and the teacher's override once each.
    let deadline = Instant::now() + Duration::from_secs(30);
    while (count(&hooks, "course.completed") == 0 || count(&hooks, "grade.overridden") == 0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        count(&hooks, "course.completed"),
        1,
        "{:?}",
        hooks.lock().unwrap()
    );
    assert_eq!(
        count(&hooks, "grade.overridden"),
        1,
        "{:?}",
        hooks.lock().unwrap()
    );
    assert!(count(&hooks, "activity.completed") <= 1);
    let data = |event: &str| {
        hooks
            .lock()
            .unwrap()
            .iter()
            .find(|(e, _)| e == event)
            .map(|(_, body)| body["data"].clone())
            .unwrap()
    };
    // Mapped to the LTI identities: Moodle's user id is the LTI sub, its course id the context.
    let completed = data("course.completed");
    assert_eq!(completed["platform_user_id"], "34", "{completed}");
    assert_eq!(completed["platform_context_id"], "12", "{completed}");
    assert_eq!(completed["moodle"]["site_id"], site.as_str(), "{completed}");
    let grade = data("grade.overridden");
    assert_eq!(grade["platform_user_id"], "34", "{grade}");
    assert_eq!(grade["final_grade"].as_f64(), Some(7.5), "{grade}");
    assert_eq!(grade["grader"]["platform_user_id"], "1034", "{grade}");

    // The same events again (an answer lost on the way back): all duplicates, removed from the
    // outbox, nothing stored or announced twice.
    let mut args = common.to_vec();
    args.extend(["--secret", &secret, "--resend"]);
    let again = tokio::task::spawn_blocking({
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        move || sender(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert_eq!(again["eventids"], first["eventids"]);
    let report = &again["report"];
    assert_eq!(report["requests"], 1, "{again}");
    assert_eq!(report["duplicates"], 8, "{again}");
    assert_eq!(report["accepted"], 8, "{again}");
    assert_eq!(again["outbox"], json!([]), "{again}");

    // A wrong secret: refused as a whole, every event kept for a later attempt with the reason.
    let mut args = common.to_vec();
    let wrong = format!("{secret}x");
    args.extend(["--secret", &wrong, "--resend"]);
    let refused = tokio::task::spawn_blocking({
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        move || sender(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    let report = &refused["report"];
    assert_eq!(report["requests"], 1, "{refused}");
    assert_eq!(report["stopped"], true, "{refused}");
    assert_eq!(report["error"], "HTTP 401 bad_signature", "{refused}");
    let outbox = refused["outbox"].as_array().unwrap();
    assert_eq!(outbox.len(), 8, "{refused}");
    for row in outbox {
        assert_eq!(row["status"], 0, "still pending: {row}");
        assert_eq!(row["attempts"], 1, "{row}");
        assert_eq!(row["lasterror"], "HTTP 401 bad_signature");
    }

    // Webhooks have had time to go out twice if anything were stored twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count(&hooks, "course.completed"), 1);
    assert_eq!(count(&hooks, "grade.overridden"), 1);
    let sites = lb.cli(&["moodle", "sites", "--tenant", &tenant_id, "--json"]);
    assert_eq!(sites[0]["id"], site.as_str(), "{sites}");
    assert_eq!(sites[0]["last_seq"], 8, "{sites}");
}
