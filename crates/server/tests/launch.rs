//! Login, launch and the product API against the simulated LMS, over loopback.

use domain::{Actor, PlatformKind};
use lti::ToolKey;
use reqwest::redirect::Policy;
use server::{AppBuilder, Settings};
use std::collections::HashMap;
use store::NewPlatform;
use store::testing::TestDatabase;
use testkit::{SimulatedLms, SpawnedLms, ToolRegistration};
use url::Url;

struct Env {
    tool: Url,
    lms: SimulatedLms,
    _lms_server: SpawnedLms,
    http: reqwest::Client,
    api_key: String,
    app: server::App,
    _db: TestDatabase,
}

/// A tool with one tenant (no product URL: launches end on the summary page) registered
/// with a simulated LMS, which accepts `deployments`.
async fn env(deployments: &[&str], product: Option<&str>) -> Env {
    env_with(deployments, product, false).await
}

async fn env_with(
    deployments: &[&str],
    product: Option<&str>,
    accept_new_deployments: bool,
) -> Env {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tool = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let (lms, lms_server) = SimulatedLms::spawn(ToolRegistration {
        client_id: "tool-client".into(),
        deployment_id: "dep-1".into(),
        login_url: tool.join("lti/login").unwrap(),
        launch_url: tool.join("lti/launch").unwrap(),
        jwks_url: tool.join(".well-known/jwks.json").unwrap(),
    })
    .await
    .unwrap();
    let db = TestDatabase::sqlite().await.unwrap();
    let dir = std::env::temp_dir().join(format!("lmsbridge-srv-{}", uuid::Uuid::new_v4()));
    let mut settings = Settings::defaults_for(listener.local_addr().unwrap(), dir);
    settings.database_url = db.url.clone();
    let running = AppBuilder::new(settings).build().await.unwrap();
    let store = running.app.store();
    let product = product.map(|u| Url::parse(u).unwrap());
    let (tenant, key) = store
        .create_tenant("School", product.as_ref(), &Actor::system("t"))
        .await
        .unwrap();
    let scope = store.tenant_scope(tenant.id).await.unwrap();
    store
        .tenant(&scope)
        .add_platform(
            &NewPlatform {
                kind: PlatformKind::Lti,
                issuer: lms.issuer(),
                client_id: "tool-client".into(),
                auth_url: lms.auth_url(),
                token_url: lms.token_url(),
                jwks_url: lms.jwks_url(),
                token_audience: None,
                accept_new_deployments,
                deployment_ids: deployments.iter().map(|d| (*d).to_owned()).collect(),
            },
            &Actor::system("t"),
        )
        .await
        .unwrap();
    let app = running.app.clone();
    let router = server::router(running.app);
    tokio::spawn(async move { axum::serve(listener, router).await });
    tokio::spawn(running.worker.run(tokio::sync::watch::channel(false).1));
    Env {
        tool,
        lms,
        _lms_server: lms_server,
        http: reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap(),
        api_key: key.secret().to_owned(),
        app,
        _db: db,
    }
}

/// A launch stopped just before the id_token is posted: what a browser holds at that point.
struct PendingLaunch {
    cookie: String,
    state: String,
    id_token: String,
}

fn location(resp: &reqwest::Response) -> Url {
    Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap()
}

fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        + marker.len();
    body[start..start + body[start..].find('"').unwrap()].to_owned()
}

impl Env {
    async fn begin(&self, user: &str) -> PendingLaunch {
        let to_login = self
            .http
            .get(self.lms.launch_url(user, "resource-1"))
            .send()
            .await
            .unwrap();
        assert_eq!(to_login.status(), 302);
        let login = self.http.get(location(&to_login)).send().await.unwrap();
        assert_eq!(login.status(), 303, "login redirects to the platform");
        let cookie = login.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(cookie.contains("HttpOnly"));
        let auth_url = location(&login);
        let q: HashMap<String, String> = auth_url.query_pairs().into_owned().collect();
        assert_eq!(
            q["redirect_uri"],
            self.tool.join("lti/launch").unwrap().as_str()
        );
        assert_eq!(q["response_mode"], "form_post");
        let auth = self.http.get(auth_url.clone()).send().await.unwrap();
        let body = auth.text().await.unwrap();
        PendingLaunch {
            cookie: cookie.split(';').next().unwrap().to_owned(),
            state: hidden(&body, "state"),
            id_token: hidden(&body, "id_token"),
        }
    }

    async fn post_launch(&self, cookie: Option<&str>, fields: &[(&str, &str)]) -> (u16, String) {
        let mut req = self
            .http
            .post(self.tool.join("lti/launch").unwrap())
            .form(fields);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn finish(&self, p: &PendingLaunch) -> (u16, String) {
        self.post_launch(
            Some(&p.cookie),
            &[("id_token", &p.id_token), ("state", &p.state)],
        )
        .await
    }
}

fn check(body: &str) -> &str {
    let marker = "<dt>Check that failed</dt><dd>";
    let start = body
        .find(marker)
        .map(|i| i + marker.len())
        .unwrap_or_else(|| panic!("not an error page: {body}"));
    &body[start..start + body[start..].find('<').unwrap()]
}

#[tokio::test]
async fn a_student_launch_is_validated_recorded_and_summarised() {
    let e = env(&["dep-1"], None).await;
    let p = e.begin("student-1").await;
    let (status, body) = e.finish(&p).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Ada Lovelace"));
    assert!(body.contains("Introduction to Biology"));
    assert!(body.contains("learner"));
    // The same launch cannot be posted twice: its nonce is spent.
    let (status, body) = e.finish(&p).await;
    assert_eq!(status, 401);
    assert_eq!(check(&body), "nonce_replayed");
}

#[tokio::test]
async fn refusals_name_the_failed_check() {
    let e = env(&["dep-1"], None).await;

    let p = e.begin("student-1").await;
    let (status, body) = e
        .post_launch(None, &[("id_token", &p.id_token), ("state", &p.state)])
        .await;
    assert_eq!((status, check(&body)), (400, "state_cookie_missing"));

    // A token signed by someone else under the platform's kid.
    let p = e.begin("student-1").await;
    let forger = ToolKey::generate(e.lms.platform_kid()).unwrap();
    let mut claims: serde_json::Value =
        jsonwebtoken::dangerous::insecure_decode_claims(&p.id_token).unwrap();
    claims["name"] = "Mallory".into();
    let forged = forger.sign(&claims).unwrap();
    let (status, body) = e
        .post_launch(
            Some(&p.cookie),
            &[("id_token", &forged), ("state", &p.state)],
        )
        .await;
    assert_eq!((status, check(&body)), (401, "signature_invalid"));
    assert!(!body.contains("Mallory"));

    // alg "none".
    let p = e.begin("student-1").await;
    use base64::Engine;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let claims: serde_json::Value =
        jsonwebtoken::dangerous::insecure_decode_claims(&p.id_token).unwrap();
    let none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "kid": e.lms.platform_kid()})),
        b64(&claims)
    );
    let (status, body) = e
        .post_launch(Some(&p.cookie), &[("id_token", &none), ("state", &p.state)])
        .await;
    assert_eq!((status, check(&body)), (401, "alg_not_allowed"));

    // The platform's own error, reflected safely.
    let (status, body) = e
        .post_launch(
            None,
            &[("error", "<script>alert(1)</script>"), ("state", "x")],
        )
        .await;
    assert_eq!(status, 400);
    assert!(!body.contains("<script>alert"), "{body}");
    assert_eq!(check(&body), "platform_error");

    // Open redirect: the target must be this tool.
    let mut login = e.tool.join("lti/login").unwrap();
    login
        .query_pairs_mut()
        .append_pair("iss", &e.lms.issuer())
        .append_pair("client_id", "tool-client")
        .append_pair("login_hint", "student-1")
        .append_pair("target_link_uri", "https://evil.example/lti/launch");
    let resp = e.http.get(login).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        check(&resp.text().await.unwrap()),
        "target_link_uri_foreign"
    );

    // An issuer nobody registered.
    let mut login = e.tool.join("lti/login").unwrap();
    login
        .query_pairs_mut()
        .append_pair("iss", "https://unknown.example")
        .append_pair("login_hint", "student-1")
        .append_pair(
            "target_link_uri",
            e.tool.join("lti/launch").unwrap().as_str(),
        );
    let resp = e.http.get(login).send().await.unwrap();
    assert_eq!(check(&resp.text().await.unwrap()), "registration_unknown");
}

#[tokio::test]
async fn an_unknown_deployment_is_refused_and_nothing_is_recorded() {
    let e = env(&["some-other-deployment"], None).await;
    let p = e.begin("student-1").await;
    let (status, body) = e.finish(&p).await;
    assert_eq!((status, check(&body)), (403, "deployment_unknown"));
    let scope = e
        .app
        .store()
        .authenticate_api_key(&e.api_key)
        .await
        .unwrap()
        .unwrap();
    let actions: Vec<String> = e
        .app
        .store()
        .tenant(&scope)
        .audit_entries()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert!(
        !actions.iter().any(|a| a == "launch.accepted"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn the_product_api_checks_keys_bodies_and_idempotency() {
    let e = env(&["dep-1"], Some("https://product.example/launch")).await;
    let api = |path: &str| e.tool.join(path).unwrap();
    let resp = e
        .http
        .post(api("api/v1/scores"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let resp = e
        .http
        .post(api("api/v1/scores"))
        .bearer_auth("lmsb_forged_key")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let resp = e
        .http
        .post(api("api/v1/scores"))
        .bearer_auth(&e.api_key)
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");

    // A real launch hands off a one-time code; redeeming it gives the ids to grade.
    let p = e.begin("student-2").await;
    let resp = e
        .http
        .post(api("lti/launch"))
        .header("cookie", &p.cookie)
        .form(&[("id_token", &p.id_token), ("state", &p.state)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let to_product = location(&resp);
    assert_eq!(to_product.host_str(), Some("product.example"));
    let code = to_product
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let redeem = |key: String, code: String| {
        e.http
            .post(api("api/v1/launches/redeem"))
            .bearer_auth(key)
            .json(&serde_json::json!({"code": code}))
            .send()
    };
    // Another tenant's key cannot redeem it.
    let (_, other) = e
        .app
        .store()
        .create_tenant("Other", None, &Actor::system("t"))
        .await
        .unwrap();
    assert_eq!(
        redeem(other.secret().to_owned(), code.clone())
            .await
            .unwrap()
            .status(),
        404
    );
    let launch: serde_json::Value = redeem(e.api_key.clone(), code.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(launch["person"]["name"], "Alan Turing");
    assert_eq!(launch["context"]["label"], "BIO101");
    assert_eq!(
        redeem(e.api_key.clone(), code).await.unwrap().status(),
        404,
        "codes are single use"
    );
    let person = launch["person"]["id"].as_str().unwrap().to_owned();
    let target = launch["grade_target_id"].as_str().unwrap().to_owned();
    let body = serde_json::json!({
        "grade_target_id": target, "person_id": person, "score_given": 9.0, "score_maximum": 10.0,
        "actor": {"kind": "instructor", "id": "teacher-1"},
    });
    let post = |b: &serde_json::Value, key: &str| {
        e.http
            .post(api("api/v1/scores"))
            .bearer_auth(&e.api_key)
            .header("idempotency-key", key)
            .json(b)
            .send()
    };
    let first = post(&body, "k-1").await.unwrap();
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.unwrap();
    let again: serde_json::Value = post(&body, "k-1").await.unwrap().json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    let mut changed = body.clone();
    changed["score_given"] = 3.0.into();
    assert_eq!(post(&changed, "k-1").await.unwrap().status(), 409);
    let mut invalid = body.clone();
    invalid["score_given"] = (-1.0).into();
    assert_eq!(post(&invalid, "k-2").await.unwrap().status(), 422);
    let mut unknown = body.clone();
    unknown["grade_target_id"] = uuid::Uuid::now_v7().to_string().into();
    assert_eq!(post(&unknown, "k-3").await.unwrap().status(), 404);

    // The worker delivers it; the API shows the state and the attempt.
    let id = first["id"].as_str().unwrap();
    let mut state = serde_json::Value::Null;
    for _ in 0..100 {
        state = e
            .http
            .get(api(&format!("api/v1/scores/{id}")))
            .bearer_auth(&e.api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if state["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(state["state"], "delivered", "{state}");
    assert_eq!(state["attempt_log"][0]["status"], 200);
    let landed = e
        .lms
        .gradebook()
        .into_iter()
        .find(|g| g.user_id == "student-2")
        .unwrap();
    assert_eq!(landed.score_given, Some(9.0));
    assert_eq!(landed.comment, None);
}

#[tokio::test]
async fn a_new_deployment_waits_for_approval_then_launches() {
    let e = env_with(&[], None, true).await;
    let p = e.begin("student-1").await;
    let (status, body) = e.finish(&p).await;
    assert_eq!((status, check(&body)), (403, "deployment_pending"));
    let store = e.app.store();
    let scope = store
        .authenticate_api_key(&e.api_key)
        .await
        .unwrap()
        .unwrap();
    let t = store.tenant(&scope);
    let platform = t.list_platforms().await.unwrap().remove(0);
    let deployments = t.deployments(platform.id).await.unwrap();
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0].deployment_id, "dep-1");
    assert_eq!(deployments[0].status, domain::DeploymentStatus::Pending);
    // A second launch before approval is still held, and records nothing new.
    let p = e.begin("student-1").await;
    assert_eq!(check(&e.finish(&p).await.1), "deployment_pending");
    assert_eq!(t.deployments(platform.id).await.unwrap().len(), 1);
    t.approve_deployment(platform.id, "dep-1", &Actor::system("admin"))
        .await
        .unwrap();
    let p = e.begin("student-1").await;
    let (status, body) = e.finish(&p).await;
    assert_eq!(status, 200, "{body}");
    let actions: Vec<String> = t
        .audit_entries()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert!(actions.contains(&"deployment.pending".to_owned()));
    assert!(actions.contains(&"deployment.approved".to_owned()));
    // Approving twice is an error, not a silent success.
    assert!(
        t.approve_deployment(platform.id, "dep-1", &Actor::system("admin"))
            .await
            .is_err()
    );
}

fn page_data(body: &str) -> serde_json::Value {
    let start = body.find("id=\"lmsb-data\">").expect("a data block") + "id=\"lmsb-data\">".len();
    let end = start + body[start..].find("</script>").unwrap();
    serde_json::from_str(&body[start..end]).unwrap()
}

#[tokio::test]
async fn platform_storage_binds_a_launch_when_the_cookie_is_blocked() {
    use base64::Engine;
    let e = env(&["dep-1"], Some("https://product.example/launch")).await;
    let to_login = e
        .http
        .get(e.lms.launch_url("student-1", "resource-1"))
        .send()
        .await
        .unwrap();
    let mut login_url = location(&to_login);
    login_url
        .query_pairs_mut()
        .append_pair("lti_storage_target", "post_message_forwarding");
    let login = e.http.get(login_url).send().await.unwrap();
    assert_eq!(login.status(), 200, "a page that stores the secret first");
    let csp = login.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'nonce-"), "{csp}");
    let put = page_data(&login.text().await.unwrap());
    assert_eq!(put["target"], "post_message_forwarding");
    assert_eq!(
        put["origin"],
        e.lms.auth_url().origin().ascii_serialization()
    );
    let secret = put["secret"].as_str().unwrap().to_owned();
    let key = put["key"].as_str().unwrap().to_owned();

    // The platform authenticates and posts the id_token back; the browser lost our cookie.
    let auth = e
        .http
        .get(put["next"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let body = auth.text().await.unwrap();
    let (id_token, state) = (hidden(&body, "id_token"), hidden(&body, "state"));
    let launch = e
        .http
        .post(e.tool.join("lti/launch").unwrap())
        .form(&[("id_token", &id_token), ("state", &state)])
        .send()
        .await
        .unwrap();
    assert_eq!(launch.status(), 200);
    let get = page_data(&launch.text().await.unwrap());
    assert_eq!(
        get["key"],
        key.as_str(),
        "the launch asks for the secret the login stored"
    );
    assert!(
        get.get("secret").is_none(),
        "the launch page never carries the secret"
    );
    let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(get["sealed"].as_str().unwrap())
        .unwrap();
    let context = get["context"].as_str().unwrap();

    // A browser without the secret cannot open the handoff.
    let stranger = store::crypto::MasterKey::generate();
    assert!(stranger.open(&sealed, context).is_err());
    // The browser that logged in can, exactly as the page's script does.
    let opened = store::crypto::MasterKey::from_base64(&secret)
        .unwrap()
        .open(&sealed, context)
        .unwrap();
    let product = Url::parse(std::str::from_utf8(&opened).unwrap()).unwrap();
    assert_eq!(product.host_str(), Some("product.example"));
    let code = product
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let redeemed = e
        .http
        .post(e.tool.join("api/v1/launches/redeem").unwrap())
        .bearer_auth(&e.api_key)
        .json(&serde_json::json!({"code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(redeemed.status(), 200);
    let launch: serde_json::Value = redeemed.json().await.unwrap();
    assert_eq!(launch["person"]["name"], "Ada Lovelace");
}
