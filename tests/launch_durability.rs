//! A launch the browser was answered for survives a crash of lmsbridge. Launches are recorded
//! in batches and each browser is answered only after its batch's COMMIT; on SQLite (WAL,
//! `synchronous=NORMAL`) a committed transaction is in the WAL file before COMMIT returns, so
//! a killed process loses none of them. The crash here is SIGKILL: no shutdown code runs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testkit::{SimulatedLms, ToolRegistration};
use url::Url;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lmsbridge"));
    for (k, _) in std::env::vars() {
        if k.starts_with("LMSBRIDGE_") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "warn");
    c
}

fn cli(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = bin()
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Starts `lmsbridge serve` on a free loopback port; its public URL follows the port.
fn serve(dir: &Path) -> (Child, Url) {
    let mut child = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let base = Url::parse(&format!("{}/", base.trim_end_matches('/'))).unwrap();
    (child, base)
}

/// One browser's launch through the simulated LMS; returns the handoff code lmsbridge
/// answered with.
async fn launch(http: &reqwest::Client, lms: &SimulatedLms, user: &str) -> String {
    let to_login = http
        .get(lms.launch_url(user, "resource-1"))
        .send()
        .await
        .unwrap();
    let login = http
        .get(to_login.headers()["location"].to_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let auth = http
        .get(login.headers()["location"].to_str().unwrap())
        .send()
        .await
        .unwrap();
    let body = auth.text().await.unwrap();
    let field = |name: &str| {
        let m = format!("name=\"{name}\" value=\"");
        let s = body.find(&m).unwrap() + m.len();
        body[s..s + body[s..].find('"').unwrap()].to_owned()
    };
    let action = {
        let m = "action=\"";
        let s = body.find(m).unwrap() + m.len();
        body[s..s + body[s..].find('"').unwrap()].to_owned()
    };
    let form: HashMap<&str, String> =
        [("id_token", field("id_token")), ("state", field("state"))].into();
    let answer = http
        .post(action)
        .header("cookie", &cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let to = Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap();
    assert!(
        to.as_str().starts_with("http://127.0.0.1:1/product"),
        "{to}"
    );
    to.query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a handoff code")
}

#[tokio::test]
async fn launches_answered_before_a_kill_are_all_redeemable_after_restart() {
    let dir = std::env::temp_dir().join(format!("lmsbridge-durable-{}", uuid::Uuid::new_v4()));
    let (mut child, base) = serve(&dir);
    let (lms, _lms_server) = SimulatedLms::spawn(ToolRegistration {
        client_id: "durable-client".into(),
        deployment_id: "dep-1".into(),
        login_url: base.join("lti/login").unwrap(),
        launch_url: base.join("lti/launch").unwrap(),
        jwks_url: base.join(".well-known/jwks.json").unwrap(),
    })
    .await
    .unwrap();
    let tenant = cli(
        &dir,
        &[
            "tenant",
            "create",
            "--name",
            "Durable",
            "--launch-url",
            "http://127.0.0.1:1/product",
        ],
    );
    let (tenant_id, api_key) = (
        tenant["id"].as_str().unwrap().to_owned(),
        tenant["api_key"].as_str().unwrap().to_owned(),
    );
    cli(
        &dir,
        &[
            "platform",
            "add",
            "--tenant",
            &tenant_id,
            "--kind",
            "lti",
            "--issuer",
            &lms.issuer(),
            "--client-id",
            "durable-client",
            "--auth-url",
            lms.auth_url().as_str(),
            "--token-url",
            lms.token_url().as_str(),
            "--jwks-url",
            lms.jwks_url().as_str(),
            "--deployment-id",
            "dep-1",
        ],
    );

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // Many browsers at once, so that launches share batches.
    let users = ["student-1", "student-2", "teacher-1"];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let (http, lms) = (http.clone(), lms.clone());
        tasks.spawn(async move { launch(&http, &lms, users[i % users.len()]).await });
    }
    let codes: Vec<String> = tokio::time::timeout(Duration::from_secs(60), tasks.join_all())
        .await
        .expect("the launches finished");
    // The last answer is in: kill at once, without a graceful stop.
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, base) = serve(&dir);
    for code in &codes {
        let redeem = || {
            http.post(base.join("api/v1/launches/redeem").unwrap())
                .bearer_auth(&api_key)
                .json(&serde_json::json!({ "code": code }))
                .send()
        };
        let first = redeem().await.unwrap();
        assert_eq!(first.status(), 200, "an acknowledged launch was lost");
        let summary: serde_json::Value = first.json().await.unwrap();
        assert!(summary["launch_id"].is_string(), "{summary}");
        assert!(
            users.contains(&summary["person"]["platform_user_id"].as_str().unwrap()),
            "{summary}"
        );
        assert_eq!(redeem().await.unwrap().status(), 404, "a code works once");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Every batch's audit entries made it with the launches: the chain is whole.
    let verify = bin()
        .args(["audit", "verify", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
