//! The `lmsbridge` binary as an admin uses it from a shell.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lmsbridge"));
    // The tests choose their own settings; the caller's environment must not leak in.
    for (k, _) in std::env::vars() {
        if k.starts_with("LMSBRIDGE_") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "warn");
    c
}

fn data_dir() -> PathBuf {
    std::env::temp_dir().join(format!("lmsbridge-cli-{}", uuid::Uuid::new_v4()))
}

fn run(dir: &Path, args: &[&str]) -> Output {
    bin()
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("the binary runs")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

struct Served {
    child: Child,
    base: String,
}

fn serve(dir: &Path) -> Served {
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
    // "lmsbridge serving on http://127.0.0.1:PORT (public URL …)"
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Served { child, base }
}

#[tokio::test]
async fn serve_answers_health_ready_and_a_public_only_jwks_then_stops_on_sigterm() {
    let dir = data_dir();
    let mut s = serve(&dir);
    let http = reqwest::Client::new();
    let health = http.get(format!("{}/health", s.base)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.headers()["x-content-type-options"], "nosniff");
    assert!(health.headers().contains_key("x-request-id"));
    let ready = http.get(format!("{}/ready", s.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let jwks: serde_json::Value = http
        .get(format!("{}/.well-known/jwks.json", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "one key generated on first start");
    let key = keys[0].as_object().unwrap();
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()));
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        assert!(!key.contains_key(private), "JWKS leaks {private}");
    }
    // The master key file was created private to its owner.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Graceful stop on SIGTERM.
    Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
    let mut stopped = None;
    for _ in 0..100 {
        if let Some(status) = s.child.try_wait().unwrap() {
            stopped = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = stopped.unwrap_or_else(|| {
        let _ = s.child.kill();
        panic!("serve did not stop on SIGTERM")
    });
    assert!(status.success(), "{status:?}");
    // A restart reuses the same key: nothing is regenerated.
    let keys = json(&run(&dir, &["keys", "list", "--json"]));
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(keys[0]["kid"], key["kid"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn tenant_platform_and_deployment_from_the_shell() {
    let dir = data_dir();
    let tenant = json(&run(
        &dir,
        &[
            "tenant",
            "create",
            "--name",
            "Springfield High",
            "--launch-url",
            "https://product.example/lti",
        ],
    ));
    let tenant_id = tenant["id"].as_str().unwrap().to_owned();
    assert!(tenant["api_key"].as_str().unwrap().starts_with("lmsb_"));

    let platform = json(&run(
        &dir,
        &[
            "platform",
            "add",
            "--tenant",
            &tenant_id,
            "--kind",
            "canvas",
            "--issuer",
            "https://canvas.instructure.com",
            "--client-id",
            "10000000000001",
            "--auth-url",
            "https://sso.canvaslms.com/api/lti/authorize_redirect",
            "--token-url",
            "https://sso.canvaslms.com/login/oauth2/token",
            "--jwks-url",
            "https://sso.canvaslms.com/api/lti/security/jwks",
            "--deployment-id",
            "1:abc",
            "--deployment-id",
            "2:def",
        ],
    ));
    let platform_id = platform["id"].as_str().unwrap().to_owned();

    let listed = json(&run(
        &dir,
        &["platform", "list", "--tenant", &tenant_id, "--json"],
    ));
    assert_eq!(listed[0]["client_id"], "10000000000001");
    assert_eq!(listed[0]["kind"], "canvas");

    json(&run(
        &dir,
        &[
            "deployment",
            "add",
            "--tenant",
            &tenant_id,
            "--platform",
            &platform_id,
            "--deployment-id",
            "3:ghi",
        ],
    ));
    let shown = json(&run(
        &dir,
        &[
            "platform",
            "show",
            "--tenant",
            &tenant_id,
            "--platform",
            &platform_id,
            "--json",
        ],
    ));
    let deployments: Vec<&str> = shown["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["deployment_id"].as_str().unwrap())
        .collect();
    assert_eq!(deployments, ["1:abc", "2:def", "3:ghi"]);
    assert_eq!(
        shown["tool"]["launch_url"],
        "http://127.0.0.1:8080/lti/launch"
    );

    // Clear errors and a non-zero exit for what cannot be done.
    let dup = run(
        &dir,
        &[
            "deployment",
            "add",
            "--tenant",
            &tenant_id,
            "--platform",
            &platform_id,
            "--deployment-id",
            "3:ghi",
        ],
    );
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already registered"));
    let other = uuid::Uuid::new_v4().to_string();
    let missing = run(&dir, &["platform", "list", "--tenant", &other]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no tenant with id"));
    let bad_kind = run(
        &dir,
        &[
            "platform",
            "add",
            "--tenant",
            &tenant_id,
            "--kind",
            "blackboardx",
            "--issuer",
            "x",
            "--client-id",
            "y",
            "--auth-url",
            "https://a",
            "--token-url",
            "https://a",
            "--jwks-url",
            "https://a",
        ],
    );
    assert!(!bad_kind.status.success());
    assert!(String::from_utf8_lossy(&bad_kind.stderr).contains("unknown platform kind"));

    // Every change so far is in an intact audit chain.
    let verified = run(&dir, &["audit", "verify"]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains("intact"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn config_print_layers_file_env_and_flags_and_masks_secrets() {
    let dir = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lmsbridge.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:9001\"\nclock_skew_secs = 20\n").unwrap();
    let out = bin()
        .args(["config", "print", "--config"])
        .arg(&file)
        .env("LMSBRIDGE_LISTEN", "127.0.0.1:9002")
        .env(
            "LMSBRIDGE_DATABASE_URL",
            "postgres://app:hunter2@db.example/lmsbridge",
        )
        .env(
            "LMSBRIDGE_MASTER_KEY",
            "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=",
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v = json(&out);
    assert_eq!(v["listen"], "127.0.0.1:9002", "env wins over the file");
    assert_eq!(v["clock_skew_secs"], 20);
    assert_eq!(v["public_url"], "http://127.0.0.1:9002/");
    assert!(!text.contains("hunter2"));
    assert!(!text.contains("c2VjcmV0"));
    let out = bin()
        .args([
            "config",
            "print",
            "--listen",
            "127.0.0.1:9003",
            "--public-url",
            "https://tools.example/",
        ])
        .env("LMSBRIDGE_LISTEN", "127.0.0.1:9002")
        .output()
        .unwrap();
    let v = json(&out);
    assert_eq!(v["listen"], "127.0.0.1:9003", "flags win over env");
    assert_eq!(v["public_url"], "https://tools.example/");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn help_reads_well() {
    let out = bin().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "serve",
        "demo",
        "tenant",
        "platform",
        "deployment",
        "keys",
        "audit",
        "migrate",
        "config",
    ] {
        assert!(text.contains(cmd), "--help lists {cmd}");
    }
    let out = bin().args(["platform", "add", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--deployment-id"));
}

#[test]
fn key_rotation_publishes_the_next_key_before_it_signs() {
    let dir = data_dir();
    let first = json(&run(&dir, &["keys", "list", "--json"]));
    assert_eq!(first.as_array().unwrap().len(), 1);
    assert_eq!(first[0]["status"], "current");
    let rotated = json(&run(
        &dir,
        &["keys", "rotate", "--publish-lead", "3600", "--grace", "600"],
    ));
    let statuses: Vec<(String, String)> = rotated["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().unwrap().into(),
                k["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(statuses.len(), 2);
    assert_eq!(
        statuses[0],
        (
            rotated["kid"].as_str().unwrap().to_owned(),
            "next".to_owned()
        )
    );
    assert_eq!(
        statuses[1].1, "current",
        "the old key signs until the new one activates"
    );
    // With no lead the new key signs at once and the old one is retiring (still published).
    let now = json(&run(
        &dir,
        &["keys", "rotate", "--publish-lead", "0", "--grace", "600"],
    ));
    let status_of = |kid: &serde_json::Value| {
        now["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| &k["kid"] == kid)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status_of(&now["kid"]), "current");
    assert_eq!(status_of(&first[0]["kid"]), "retiring");
    let published = json(&run(&dir, &["keys", "list", "--json"]));
    assert_eq!(published.as_array().unwrap().len(), 3);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn registration_urls_and_enabling_registrations_from_the_shell() {
    let dir = data_dir();
    let tenant = json(&run(&dir, &["tenant", "create", "--name", "Shelbyville"]));
    let tenant_id = tenant["id"].as_str().unwrap().to_owned();
    let issued = json(&run(
        &dir,
        &[
            "tenant",
            "registration-url",
            "--tenant",
            &tenant_id,
            "--days",
            "3",
            "--label",
            "district moodle",
        ],
    ));
    let url = url::Url::parse(issued["registration_url"].as_str().unwrap()).unwrap();
    assert_eq!(url.path(), "/lti/register");
    let invite: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(invite.len(), 1);
    assert_eq!(invite[0].0, "invite");
    assert!(
        invite[0].1.len() >= 32,
        "the invite is a long random secret"
    );
    let bad_days = run(
        &dir,
        &[
            "tenant",
            "registration-url",
            "--tenant",
            &tenant_id,
            "--days",
            "0",
        ],
    );
    assert!(!bad_days.status.success());

    let platform = json(&run(
        &dir,
        &[
            "platform",
            "add",
            "--tenant",
            &tenant_id,
            "--kind",
            "moodle",
            "--issuer",
            "https://moodle.example",
            "--client-id",
            "abc",
            "--auth-url",
            "https://moodle.example/mod/lti/auth.php",
            "--token-url",
            "https://moodle.example/mod/lti/token.php",
            "--jwks-url",
            "https://moodle.example/mod/lti/certs.php",
        ],
    ));
    let platform_id = platform["id"].as_str().unwrap().to_owned();
    let disabled = json(&run(
        &dir,
        &[
            "platform",
            "disable",
            "--tenant",
            &tenant_id,
            "--platform",
            &platform_id,
        ],
    ));
    assert_eq!(disabled["enabled"], false);
    let listed = run(&dir, &["platform", "list", "--tenant", &tenant_id]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("(disabled)"));
    let enabled = json(&run(
        &dir,
        &[
            "platform",
            "enable",
            "--tenant",
            &tenant_id,
            "--platform",
            &platform_id,
        ],
    ));
    assert_eq!(enabled["enabled"], true);
    let shown = json(&run(
        &dir,
        &[
            "platform",
            "show",
            "--tenant",
            &tenant_id,
            "--platform",
            &platform_id,
            "--json",
        ],
    ));
    assert_eq!(shown["registered_via"], "manual");
    assert_eq!(shown["platform"]["enabled"], true);
    let unknown = run(
        &dir,
        &[
            "platform",
            "enable",
            "--tenant",
            &tenant_id,
            "--platform",
            &uuid::Uuid::new_v4().to_string(),
        ],
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("has no platform"));
    let verified = run(&dir, &["audit", "verify"]);
    assert!(verified.status.success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn scores_retry_needs_to_be_told_what_to_retry() {
    let dir = data_dir();
    let tenant = json(&run(&dir, &["tenant", "create", "--name", "Ogdenville"]));
    let tenant_id = tenant["id"].as_str().unwrap().to_owned();
    let vague = run(&dir, &["scores", "retry", "--tenant", &tenant_id]);
    assert!(!vague.status.success());
    assert!(String::from_utf8_lossy(&vague.stderr).contains("--dead"));
    let none = json(&run(
        &dir,
        &["scores", "retry", "--tenant", &tenant_id, "--dead"],
    ));
    assert_eq!(none["replayed"], serde_json::json!([]));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn audit_export_writes_jsonl_and_csv() {
    let dir = data_dir();
    let tenant = json(&run(
        &dir,
        &["tenant", "create", "--name", "North \"Haverbrook\", Inc"],
    ));
    let tenant_id = tenant["id"].as_str().unwrap().to_owned();
    let jsonl = run(&dir, &["audit", "export", "--tenant", &tenant_id]);
    assert!(
        jsonl.status.success(),
        "{}",
        String::from_utf8_lossy(&jsonl.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&jsonl.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|e| e["action"] == "tenant.created"),
        "{lines:?}"
    );
    assert!(lines.iter().all(|e| e["chain"] == tenant_id.as_str()));

    let csv = run(
        &dir,
        &["audit", "export", "--tenant", &tenant_id, "--format", "csv"],
    );
    assert!(csv.status.success());
    let text = String::from_utf8_lossy(&csv.stdout).into_owned();
    let mut rows = text.lines();
    assert_eq!(
        rows.next().unwrap(),
        "seq,at_micros,actor_kind,actor_id,action,subject,detail,prev_hash,hash"
    );
    assert_eq!(rows.count(), lines.len());
    // The detail holds the quoted name: the field is quoted and its quotes doubled.
    assert!(text.contains(",\"{\"\"api_key_prefix\"\":"), "{text}");
    assert!(text.contains("North \\\"\"Haverbrook\\\"\", Inc"), "{text}");

    let none = run(
        &dir,
        &[
            "audit",
            "export",
            "--tenant",
            &tenant_id,
            "--since",
            "2999-01-01T00:00:00Z",
        ],
    );
    assert!(none.status.success());
    assert!(none.stdout.is_empty());
    let bad = run(
        &dir,
        &["audit", "export", "--tenant", &tenant_id, "--since", "soon"],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"));
    let _ = std::fs::remove_dir_all(dir);
}
