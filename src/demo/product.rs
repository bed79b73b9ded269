//! A sample product, as an edtech product would integrate lmsbridge: it receives the launch
//! handoff, redeems the code over the API, shows who launched, and posts a score.

use anyhow::Context;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use url::Url;

/// The sample product's state: its lmsbridge API key and the launches it has seen.
#[derive(Clone)]
pub struct SampleProduct {
    inner: Arc<Inner>,
}

struct Inner {
    api_base: Url,
    api_key: String,
    gradebook: Url,
    http: reqwest::Client,
    sessions: Mutex<HashMap<String, serde_json::Value>>,
}

impl std::fmt::Debug for SampleProduct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleProduct")
            .field("api_base", &self.inner.api_base.as_str())
            .finish_non_exhaustive()
    }
}

impl SampleProduct {
    pub fn new(api_base: Url, api_key: String, gradebook: Url) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .context("building the product's HTTP client")?;
        Ok(Self {
            inner: Arc::new(Inner {
                api_base,
                api_key,
                gradebook,
                http,
                sessions: Mutex::default(),
            }),
        })
    }

    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/launch", get(launch))
            .route("/grade", post(grade))
            .with_state(self.clone())
    }

    async fn api(
        &self,
        path: &str,
        body: &serde_json::Value,
        idem: Option<&str>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut req = self
            .inner
            .http
            .post(self.inner.api_base.join(path)?)
            .bearer_auth(&self.inner.api_key)
            .json(body);
        if let Some(k) = idem {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or_default()))
    }
}

use testkit::html::escape as esc;

fn text(v: &serde_json::Value) -> String {
    esc(v.as_str().unwrap_or("—"))
}

fn html(status: StatusCode, body: String) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sample product</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}}\
         .card{{border:1px solid #d5dbe1;border-radius:8px;padding:1rem 1.25rem}}button{{font-size:1rem;padding:.4rem 1rem}}</style>\
         </head><body><p><strong>Sample product</strong> · an app behind lmsbridge</p>{body}</body></html>"
    );
    let mut resp = (status, page).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

#[derive(Deserialize)]
struct LaunchQuery {
    code: Option<String>,
}

async fn launch(State(p): State<SampleProduct>, Query(q): Query<LaunchQuery>) -> Response {
    let Some(code) = q.code else {
        return html(
            StatusCode::BAD_REQUEST,
            "<p>No launch code: open this page from the LMS.</p>".into(),
        );
    };
    let launch = match p
        .api(
            "api/v1/launches/redeem",
            &serde_json::json!({"code": code}),
            None,
        )
        .await
    {
        Ok((200, v)) => v,
        Ok((status, _)) => {
            return html(
                StatusCode::BAD_REQUEST,
                format!(
                    "<p>lmsbridge refused the launch code (HTTP {status}). Open the activity again from the LMS.</p>"
                ),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "sample product could not reach lmsbridge");
            return html(
                StatusCode::BAD_GATEWAY,
                "<p>lmsbridge could not be reached.</p>".into(),
            );
        }
    };
    let session = store::crypto::random_token(24);
    let body = format!(
        "<div class=\"card\"><h1>Welcome, <span id=\"person-name\">{name}</span></h1>\
         <p>Course: <span id=\"course-title\">{course}</span><br>Activity: <span id=\"resource-title\">{resource}</span><br>Roles: {roles}</p>\
         <form id=\"grade\" method=\"post\" action=\"grade\">\
         <input type=\"hidden\" name=\"session\" value=\"{session}\">\
         <label>Score out of 100 <input type=\"number\" name=\"score\" min=\"0\" max=\"100\" value=\"85\"></label> \
         <button type=\"submit\">Grade me</button></form></div>",
        name = text(&launch["person"]["name"]),
        course = text(&launch["context"]["title"]),
        resource = text(&launch["resource"]["title"]),
        roles = esc(&launch["roles"].to_string()),
    );
    p.inner
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(session, launch);
    html(StatusCode::OK, body)
}

#[derive(Deserialize)]
struct GradeForm {
    session: String,
    score: f64,
}

async fn grade(State(p): State<SampleProduct>, Form(f): Form<GradeForm>) -> Response {
    let launch = p
        .inner
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&f.session)
        .cloned();
    let Some(launch) = launch else {
        return html(
            StatusCode::BAD_REQUEST,
            "<p>Your session has ended; open the activity again.</p>".into(),
        );
    };
    if launch["grade_target_id"].is_null() {
        return html(
            StatusCode::BAD_REQUEST,
            "<p>This activity has no gradebook column.</p>".into(),
        );
    }
    let body = serde_json::json!({
        "grade_target_id": launch["grade_target_id"],
        "person_id": launch["person"]["id"],
        "score_given": f.score,
        "score_maximum": 100.0,
        "comment": "Graded by the sample product",
        "actor": {"kind": "ai_grader", "id": "sample-product-grader"},
    });
    let idem = format!(
        "{}:{}",
        launch["launch_id"].as_str().unwrap_or_default(),
        f.score
    );
    match p.api("api/v1/scores", &body, Some(&idem)).await {
        Ok((202, v)) => html(
            StatusCode::OK,
            format!(
                "<div class=\"card\"><h1>Score sent</h1><p id=\"queued\">lmsbridge queued score <code>{id}</code> ({score} / 100, state: {state}).</p>\
                 <p>It reaches the LMS in a moment: <a href=\"{gradebook}\">open the gradebook</a>.</p></div>",
                id = text(&v["id"]),
                score = f.score,
                state = text(&v["state"]),
                gradebook = esc(p.inner.gradebook.as_str()),
            ),
        ),
        Ok((status, v)) => html(
            StatusCode::BAD_GATEWAY,
            format!(
                "<p>lmsbridge refused the score (HTTP {status}): {}</p>",
                text(&v["message"])
            ),
        ),
        Err(e) => {
            tracing::error!(error = %e, "sample product could not reach lmsbridge");
            html(
                StatusCode::BAD_GATEWAY,
                "<p>lmsbridge could not be reached.</p>".into(),
            )
        }
    }
}
