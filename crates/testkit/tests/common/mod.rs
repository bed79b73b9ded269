//! Shared pieces of the integration tests: a minimal LTI tool, built only from the `lti`
//! crate, that a simulated LMS can launch and that can call its services, plus helpers to
//! sign client assertions and fetch tokens by hand.

#![allow(dead_code)] // Each test binary uses its own share of these helpers.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, header};
use lti::jwks::{JwksCache, JwksCachePolicy};
use lti::login::AuthRequest;
use lti::token::{TokenClient, TokenEndpoint};
use lti::{LaunchExpectations, LaunchValidator, ToolKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use testkit::html::escape;
use testkit::{SimulatedLms, SpawnedLms, ToolRegistration};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use url::Url;

pub const CLIENT_ID: &str = "tool-client-1";
pub const DEPLOYMENT_ID: &str = "deployment-1";

/// A server task that stops when dropped.
pub struct Served(JoinHandle<()>);

impl Drop for Served {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds 127.0.0.1 on a free port and serves `router` there.
pub async fn serve(router: Router) -> (Url, Served) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (base, Served(task))
}

fn jwks_router(key: &ToolKey) -> Router {
    let set = serde_json::json!({ "keys": [key.public_jwk()] });
    Router::new().route("/jwks", get(move || async move { axum::Json(set) }))
}

/// Everything a test needs: an LMS on its own port, and a tool registered in it.
pub struct Setup {
    pub lms: SimulatedLms,
    pub tool_key: ToolKey,
    pub tool_base: Url,
    _lms_server: SpawnedLms,
    _tool_server: Served,
}

impl Setup {
    /// An LMS and a tool that only publishes its JWKS: for tests that play the tool by hand.
    pub async fn keys_only() -> Self {
        Self::keys_only_with(|c| c).await
    }

    pub async fn keys_only_with(
        configure: impl FnOnce(testkit::LmsConfig) -> testkit::LmsConfig,
    ) -> Self {
        let tool_key = ToolKey::generate("tool-key-1").unwrap();
        let (tool_base, tool_server) = serve(jwks_router(&tool_key)).await;
        let (lms, lms_server) = SimulatedLms::spawn_with(registration(&tool_base), configure)
            .await
            .unwrap();
        Self {
            lms,
            tool_key,
            tool_base,
            _lms_server: lms_server,
            _tool_server: tool_server,
        }
    }

    /// An LMS and a working tool (login, launch, grade) built on the `lti` crate.
    pub async fn with_tool() -> Self {
        let tool_key = ToolKey::generate("tool-key-1").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tool_base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let (lms, lms_server) = SimulatedLms::spawn(registration(&tool_base)).await.unwrap();
        let router = tool_router(lms.clone(), tool_key.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            lms,
            tool_key,
            tool_base,
            _lms_server: lms_server,
            _tool_server: Served(task),
        }
    }

    /// Signs a client assertion with the tool's key.
    pub fn assertion(&self, claims: serde_json::Value) -> String {
        self.tool_key.sign(&claims).unwrap()
    }

    /// Good assertion claims, fresh `jti`.
    pub fn assertion_claims(&self) -> serde_json::Value {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        serde_json::json!({
            "iss": CLIENT_ID,
            "sub": CLIENT_ID,
            "aud": self.lms.token_url().as_str(),
            "iat": now,
            "exp": now + 300,
            "jti": uuid::Uuid::new_v4().to_string(),
        })
    }

    /// Posts a form to the token endpoint.
    pub async fn token_request(&self, fields: &[(&str, &str)]) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.lms.token_url())
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    /// An access token for `scopes`, obtained the way a tool does.
    pub async fn access_token(&self, scopes: &[&str]) -> String {
        let assertion = self.assertion(self.assertion_claims());
        let scope = scopes.join(" ");
        let resp = self
            .token_request(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", lti::token::ASSERTION_TYPE),
                ("client_assertion", &assertion),
                ("scope", &scope),
            ])
            .await;
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// The token endpoint as the `lti` crate's token client sees it.
    pub fn token_endpoint(&self) -> TokenEndpoint {
        TokenEndpoint {
            issuer: self.lms.issuer(),
            client_id: CLIENT_ID.into(),
            token_url: self.lms.token_url(),
            audience: None,
        }
    }
}

pub fn registration(tool_base: &Url) -> ToolRegistration {
    ToolRegistration {
        client_id: CLIENT_ID.into(),
        deployment_id: DEPLOYMENT_ID.into(),
        login_url: tool_base.join("login").unwrap(),
        launch_url: tool_base.join("launch").unwrap(),
        jwks_url: tool_base.join("jwks").unwrap(),
    }
}

/// A minimal tool: enough of LTI 1.3 to be launched and to send a grade.
#[derive(Clone)]
struct Tool {
    lms: SimulatedLms,
    key: ToolKey,
    validator: LaunchValidator,
    tokens: TokenClient,
    /// state → nonce of logins in flight.
    logins: Arc<Mutex<HashMap<String, String>>>,
    http: reqwest::Client,
}

fn tool_router(lms: SimulatedLms, key: ToolKey) -> Router {
    let tool = Tool {
        lms,
        key: key.clone(),
        validator: LaunchValidator::new(
            JwksCache::new(reqwest::Client::new(), JwksCachePolicy::default()),
            5,
        ),
        tokens: TokenClient::new(reqwest::Client::new()),
        logins: Arc::default(),
        http: reqwest::Client::new(),
    };
    jwks_router(&key).merge(
        Router::new()
            .route("/login", get(tool_login))
            .route("/launch", post(tool_launch))
            .route("/grade", post(tool_grade))
            .with_state(tool),
    )
}

fn random() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn tool_login(
    State(tool): State<Tool>,
    axum::extract::Query(init): axum::extract::Query<lti::login::LoginInitiation>,
) -> Response {
    let reg = tool.lms.tool();
    if init.iss.as_deref() != Some(tool.lms.issuer().as_str())
        || init.client_id.as_deref() != Some(CLIENT_ID)
        || init.deployment() != Some(DEPLOYMENT_ID)
        || init.target_link_uri.as_deref() != Some(reg.launch_url.as_str())
    {
        return (StatusCode::BAD_REQUEST, "bad login initiation").into_response();
    }
    let Some(login_hint) = init.login_hint.as_deref() else {
        return (StatusCode::BAD_REQUEST, "no login_hint").into_response();
    };
    let (state, nonce) = (random(), random());
    tool.logins
        .lock()
        .unwrap()
        .insert(state.clone(), nonce.clone());
    let auth_url = tool.lms.auth_url();
    let url = AuthRequest {
        auth_url: &auth_url,
        client_id: CLIENT_ID,
        redirect_uri: &reg.launch_url,
        login_hint,
        lti_message_hint: init.lti_message_hint.as_deref(),
        state: &state,
        nonce: &nonce,
    }
    .to_url();
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, url.to_string()),
            (
                header::SET_COOKIE,
                format!("lti_state={state}; Path=/; HttpOnly; SameSite=None; Secure"),
            ),
        ],
    )
        .into_response()
}

fn form_fields(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

async fn tool_launch(State(tool): State<Tool>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form_fields(&body);
    if let Some(error) = form.get("error") {
        return (StatusCode::BAD_REQUEST, format!("platform error: {error}")).into_response();
    }
    let (Some(state), Some(id_token)) = (form.get("state"), form.get("id_token")) else {
        return (StatusCode::BAD_REQUEST, "missing state or id_token").into_response();
    };
    if cookie(&headers, "lti_state").as_ref() != Some(state) {
        return (StatusCode::BAD_REQUEST, "state cookie does not match").into_response();
    }
    let Some(nonce) = tool.logins.lock().unwrap().remove(state) else {
        return (StatusCode::BAD_REQUEST, "unknown state").into_response();
    };
    let jwks_url = tool.lms.jwks_url();
    let issuer = tool.lms.issuer();
    let target = tool.lms.tool().launch_url.to_string();
    let expect = LaunchExpectations {
        issuer: &issuer,
        client_id: CLIENT_ID,
        jwks_url: &jwks_url,
        nonce: &nonce,
        target_link_uri: &target,
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    let claims = match tool.validator.validate(id_token, &expect).await {
        Ok(c) => c,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("launch refused: {e}")).into_response(),
    };
    let user = claims.sub.clone().unwrap_or_default();
    let line_item = claims.ags.and_then(|a| a.lineitem).unwrap_or_default();
    Html(format!(
        "<h1 id=\"welcome\">Hello {name}</h1><p id=\"resource\">{resource}</p>\
         <form id=\"grade\" method=\"post\" action=\"/grade\">\
         <input type=\"hidden\" name=\"user\" value=\"{user}\">\
         <input type=\"hidden\" name=\"line_item\" value=\"{line_item}\">\
         <input type=\"number\" name=\"score\" value=\"\"><button>Send grade</button></form>",
        name = escape(claims.name.as_deref().unwrap_or("")),
        resource = escape(&claims.resource_link.map(|r| r.id).unwrap_or_default()),
        user = escape(&user),
        line_item = escape(&line_item),
    ))
    .into_response()
}

async fn tool_grade(State(tool): State<Tool>, body: Bytes) -> Response {
    let form = form_fields(&body);
    let (Some(user), Some(line_item), Some(score)) = (
        form.get("user"),
        form.get("line_item").and_then(|l| Url::parse(l).ok()),
        form.get("score").and_then(|s| s.parse::<f64>().ok()),
    ) else {
        return (StatusCode::BAD_REQUEST, "bad grade form").into_response();
    };
    let endpoint = TokenEndpoint {
        issuer: tool.lms.issuer(),
        client_id: CLIENT_ID.into(),
        token_url: tool.lms.token_url(),
        audience: None,
    };
    let token = match tool
        .tokens
        .token(&endpoint, &[lti::ags::SCOPE_SCORE], &tool.key)
        .await
    {
        Ok(t) => t,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("no token: {e}")).into_response(),
    };
    let micros = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
    let score = lti::ags::Score {
        user_id: user.clone(),
        score_given: Some(score),
        score_maximum: Some(100.0),
        comment: Some("Graded by the test tool".into()),
        timestamp: lti::ags::format_timestamp(i64::try_from(micros).unwrap()),
        activity_progress: "Completed".into(),
        grading_progress: "FullyGraded".into(),
    };
    match lti::ags::post_score(&tool.http, &token, &line_item, &score).await {
        Ok(status) => Html(format!("<p id=\"sent\">Grade sent: {status}</p>")).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("grade refused: {e}")).into_response(),
    }
}
