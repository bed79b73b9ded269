//! Set-up shared by the end-to-end tests that build their own app over loopback rather than
//! starting the demo (`mod.rs`): settings in a fresh directory, the server served with a
//! stop signal, the Google endpoints pointed at the simulated Classroom, the product API's
//! bearer calls and scores. Included with
//! `#[path = "common/harness.rs"] mod harness;` so that the demo tests do not compile it.

// Each test uses a part of this.
#![allow(dead_code)]

use serde_json::Value;
use server::Settings;
use std::path::PathBuf;
use std::time::Duration;
use testkit::SimulatedClassroom;
use url::Url;

/// Default settings on a free loopback port, stored under a fresh temporary directory named
/// after the test (`lmsbridge-{name}-{uuid}`), on `database_url` when given (else SQLite
/// there).
pub fn settings(name: &str, database_url: Option<String>) -> (Settings, PathBuf) {
    let dir = std::env::temp_dir().join(format!("lmsbridge-{name}-{}", uuid::Uuid::new_v4()));
    let mut settings = Settings::defaults_for("127.0.0.1:0".parse().unwrap(), dir.clone());
    if let Some(url) = database_url {
        settings.database_url = url;
    }
    (settings, dir)
}

/// Points the settings' Google OAuth and Classroom API endpoints at the simulated Classroom.
pub fn point_at_classroom(settings: &mut Settings, fake: &SimulatedClassroom) {
    let urls = fake.urls();
    settings.google_authorization_url = urls.authorization;
    settings.google_token_url = urls.token;
    settings.google_revocation_url = urls.revocation;
    settings.google_userinfo_url = urls.userinfo;
    settings.google_classroom_api_url = urls.api_base;
}

/// The client the tests call the server with; the Google flows read redirects themselves,
/// so they do not follow them.
pub fn http(follow_redirects: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if !follow_redirects {
        builder = builder.redirect(reqwest::redirect::Policy::none());
    }
    builder.build().unwrap()
}

/// lmsbridge serving in this process until [`Served::stop`], which also removes its directory.
pub struct Served {
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    dir: PathBuf,
}

impl Served {
    pub fn spawn(
        listener: tokio::net::TcpListener,
        running: server::Running,
        router: impl FnOnce(server::App) -> axum::Router + Send + 'static,
        run_worker: bool,
        dir: PathBuf,
    ) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(lmsbridge::cli::run_server(
            listener,
            running,
            router,
            run_worker,
            async {
                let _ = stopped.await;
            },
        ));
        Self { stop, server, dir }
    }

    /// Stops serving, waits for the server to wind down cleanly and removes its directory.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The handoff code a launch gave the product's page, read from the address the browser
/// landed on.
pub fn handoff_code(landed: &Url) -> String {
    landed
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a handoff code")
}

/// What a client that keeps no cookies sees walking a Google sign-in from our start address
/// through Google's consent, then at the callback Google sends it back to: first without
/// the start's cookie, then again with it (the state is single use either way).
pub struct SignInWalk {
    pub start_status: u16,
    /// The start's whole `Set-Cookie`, attributes included.
    pub cookie: String,
    pub callback: String,
    pub without_cookie: (u16, String),
    pub replayed: (u16, String),
}

pub async fn sign_in_without_cookies(
    http: &reqwest::Client,
    start: impl reqwest::IntoUrl,
) -> SignInWalk {
    let started = http.get(start).send().await.unwrap();
    let start_status = started.status().as_u16();
    let cookie = started.headers()["set-cookie"].to_str().unwrap().to_owned();
    let to_google = started.headers()["location"].to_str().unwrap().to_owned();
    let consent = http.get(&to_google).send().await.unwrap();
    assert_eq!(
        consent.status().as_u16(),
        302,
        "Google's consent sends the browser back"
    );
    let callback = consent.headers()["location"].to_str().unwrap().to_owned();
    let r = http.get(&callback).send().await.unwrap();
    let without_cookie = (r.status().as_u16(), r.text().await.unwrap());
    let r = http
        .get(&callback)
        .header("cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    let replayed = (r.status().as_u16(), r.text().await.unwrap());
    SignInWalk {
        start_status,
        cookie,
        callback,
        without_cookie,
        replayed,
    }
}

/// A tenant whose Google OAuth client is the simulated Classroom's registered one.
pub struct GoogleTenant {
    pub scope: store::TenantScope,
    pub api_key: String,
    pub platform: domain::PlatformId,
}

/// Creates the tenant `name` (with the product's launch URL, if any) and configures its
/// Google OAuth client as the simulated Classroom registered it.
pub async fn google_tenant(
    app: &server::App,
    name: &str,
    product: Option<&Url>,
    fake: &SimulatedClassroom,
    project_number: Option<&str>,
    certs_url: &Url,
    master: &store::crypto::MasterKey,
) -> GoogleTenant {
    let actor = domain::Actor::system("test");
    let (tenant, key) = app
        .store()
        .create_tenant(name, product, &actor)
        .await
        .unwrap();
    let scope = app.store().tenant_scope(tenant.id).await.unwrap();
    let registered = fake.client();
    let urls = fake.urls();
    let platform = app
        .store()
        .tenant(&scope)
        .configure_google_client(
            &store::google::NewGoogleClient {
                client_id: registered.client_id.clone(),
                client_secret: store::google::SecretString::new(registered.client_secret.clone()),
                project_number: project_number.map(str::to_owned),
                authorization_url: urls.authorization,
                token_url: urls.token,
                certs_url: certs_url.clone(),
            },
            master,
            &actor,
        )
        .await
        .unwrap()
        .id;
    GoogleTenant {
        scope,
        api_key: key.secret().to_owned(),
        platform,
    }
}

/// How long a posted score may take to settle.
pub const SCORE_PATIENCE: Duration = Duration::from_secs(40);

/// The product API as the tests' product calls it: the tenant's key over loopback.
pub struct Api {
    pub http: reqwest::Client,
    pub base: Url,
    pub api_key: String,
}

impl Api {
    /// One call: the status and the JSON body (null when the body is not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.base.join(path).unwrap())
            .bearer_auth(&self.api_key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Redeems a launch's handoff code: the status and the launch.
    pub async fn redeem(&self, code: &str) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            "api/v1/launches/redeem",
            Some(serde_json::json!({"code": code})),
        )
        .await
    }

    /// Posts a final score by the AI grader through `POST /api/v1/scores` and polls it until
    /// it is delivered or dead; returns the score as the API shows it then.
    pub async fn score(&self, target: &Value, person: &Value, given: f64, max: f64) -> Value {
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                "api/v1/scores",
                Some(serde_json::json!({
                    "grade_target_id": target, "person_id": person,
                    "score_given": given, "score_maximum": max,
                    "activity_progress": "Completed", "grading_progress": "FullyGraded",
                    "actor": {"kind": "ai_grader", "id": "grader-v1"},
                })),
            )
            .await;
        assert_eq!(s, 202, "{v:#}");
        let id = v["id"].as_str().unwrap().to_owned();
        let started = std::time::Instant::now();
        loop {
            let path = format!("api/v1/scores/{id}");
            let (s, v) = self.call(reqwest::Method::GET, &path, None).await;
            assert_eq!(s, 200, "GET {path}: {v:#}");
            let state = v["status"]["state"].as_str().unwrap_or_default();
            if state == "delivered" || state == "dead" {
                return v;
            }
            assert!(started.elapsed() < SCORE_PATIENCE, "score stuck: {v:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
