//! A sample product, as an edtech product would integrate lmsbridge: it registers its catalog
//! (what teachers can place into a course by deep linking), receives the launch handoff,
//! redeems the code over the API, shows who launched which item, and posts a score.

use anyhow::Context;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use url::Url;

/// The custom parameter lmsbridge adds to every placed catalog item.
const CATALOG_ITEM_PARAM: &str = "lmsbridge_catalog_item";

/// One entry of the product's catalog, as it registers it with lmsbridge.
#[derive(Debug, Clone, Copy)]
pub struct DemoItem {
    pub kind: &'static str,
    pub title: &'static str,
    pub text: &'static str,
    /// Graded items: the gradebook column's maximum.
    pub score_maximum: Option<f64>,
    /// Where a plain link points, under the product.
    pub path: Option<&'static str>,
}

/// What the sample product offers teachers.
pub const CATALOG: [DemoItem; 3] = [
    DemoItem {
        kind: "ltiResourceLink",
        title: "Enzyme kinetics quiz",
        text: "Ten questions on reaction rates and inhibitors.",
        score_maximum: Some(10.0),
        path: None,
    },
    DemoItem {
        kind: "ltiResourceLink",
        title: "Genetics lab report",
        text: "Write up the pea plant crosses; graded by the product's AI grader.",
        score_maximum: Some(20.0),
        path: None,
    },
    DemoItem {
        kind: "link",
        title: "Cell biology reading",
        text: "A chapter to read before class (a plain link, not graded).",
        score_maximum: None,
        path: Some("reading"),
    },
];

/// The sample product's state: its lmsbridge API key, its catalog as lmsbridge knows it, and
/// the launches it has seen.
#[derive(Clone)]
pub struct SampleProduct {
    inner: Arc<Inner>,
}

struct Inner {
    api_base: Url,
    api_key: String,
    gradebook: Url,
    /// Where the product itself is served.
    own_base: Url,
    http: reqwest::Client,
    sessions: Mutex<HashMap<String, Session>>,
    /// lmsbridge's catalog item id → the product's item.
    catalog: Mutex<HashMap<String, DemoItem>>,
    catalog_ready: watch::Sender<bool>,
}

#[derive(Clone)]
struct Session {
    launch: serde_json::Value,
    score_maximum: f64,
}

impl std::fmt::Debug for SampleProduct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleProduct")
            .field("api_base", &self.inner.api_base.as_str())
            .finish_non_exhaustive()
    }
}

impl SampleProduct {
    pub fn new(
        api_base: Url,
        api_key: String,
        gradebook: Url,
        own_base: Url,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the product's HTTP client")?;
        Ok(Self {
            inner: Arc::new(Inner {
                api_base,
                api_key,
                gradebook,
                own_base,
                http,
                sessions: Mutex::default(),
                catalog: Mutex::default(),
                catalog_ready: watch::channel(false).0,
            }),
        })
    }

    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/launch", get(launch))
            .route("/grade", post(grade))
            .route("/reading", get(reading))
            .with_state(self.clone())
    }

    /// Registers the catalog with lmsbridge in the background, once the server answers:
    /// the product is started in the same process before lmsbridge serves.
    pub fn register_catalog_in_background(&self) {
        let product = self.clone();
        tokio::spawn(async move {
            for attempt in 1..=50 {
                match product.register_catalog().await {
                    Ok(n) => {
                        tracing::info!(items = n, "the sample product's catalog is registered");
                        product.inner.catalog_ready.send_replace(true);
                        return;
                    }
                    Err(e) if attempt == 50 => {
                        tracing::error!(error = %format!("{e:#}"), "the sample product could not register its catalog");
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
    }

    /// Waits until the catalog is registered (or `within` passes); true when it is.
    pub async fn catalog_ready(&self, within: Duration) -> bool {
        let mut ready = self.inner.catalog_ready.subscribe();
        tokio::time::timeout(within, ready.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Creates the catalog items lmsbridge does not have yet (matched by title: the demo
    /// tenant, and its catalog, survive restarts). Returns how many items the product has.
    async fn register_catalog(&self) -> anyhow::Result<usize> {
        let (status, existing) = self.api_get("api/v1/catalog").await?;
        anyhow::ensure!(status == 200, "listing the catalog answered HTTP {status}");
        let mut known: HashMap<String, DemoItem> = HashMap::new();
        for item in CATALOG {
            let found = existing["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|i| i["title"] == item.title && i["type"] == item.kind);
            let id = match found {
                Some(i) => i["id"].as_str().unwrap_or_default().to_owned(),
                None => {
                    let mut body = serde_json::json!({
                        "type": item.kind,
                        "title": item.title,
                        "text": item.text,
                        "custom": {"demo_subject": "biology"},
                    });
                    if let Some(max) = item.score_maximum {
                        body["score_maximum"] = max.into();
                    }
                    if let Some(path) = item.path {
                        body["url"] = self.inner.own_base.join(path)?.as_str().into();
                        body["custom"] = serde_json::json!({});
                    }
                    let (status, created) = self.api("api/v1/catalog", &body, None).await?;
                    anyhow::ensure!(
                        status == 201,
                        "registering {:?} answered HTTP {status}: {created}",
                        item.title
                    );
                    created["id"].as_str().unwrap_or_default().to_owned()
                }
            };
            known.insert(id, item);
        }
        let n = known.len();
        *self.inner.catalog.lock().unwrap_or_else(|e| e.into_inner()) = known;
        Ok(n)
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

    async fn api_get(&self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        let resp = self
            .inner
            .http
            .get(self.inner.api_base.join(path)?)
            .bearer_auth(&self.inner.api_key)
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or_default()))
    }

    /// The product's item a launch is for, from the custom parameter lmsbridge placed.
    fn item_of(&self, launch: &serde_json::Value) -> Option<DemoItem> {
        let id = launch["extras"]["custom"][CATALOG_ITEM_PARAM].as_str()?;
        self.inner
            .catalog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
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
    // A launch of an item a teacher placed by deep linking names the item; the seeded
    // activities of the LMS are scored out of 100.
    let item = p.item_of(&launch);
    let score_maximum = item.and_then(|i| i.score_maximum).unwrap_or(100.0);
    let item_line = match item {
        Some(i) => format!(
            "<br>Catalog item: <span id=\"catalog-item\">{}</span>",
            esc(i.title)
        ),
        None => String::new(),
    };
    let session = store::crypto::random_token(24);
    let body = format!(
        "<div class=\"card\"><h1>Welcome, <span id=\"person-name\">{name}</span></h1>\
         <p>Course: <span id=\"course-title\">{course}</span><br>Activity: <span id=\"resource-title\">{resource}</span>{item_line}<br>Roles: {roles}</p>\
         <form id=\"grade\" method=\"post\" action=\"grade\">\
         <input type=\"hidden\" name=\"session\" value=\"{session}\">\
         <label>Score out of <span id=\"score-maximum\">{score_maximum}</span> <input type=\"number\" name=\"score\" min=\"0\" max=\"{score_maximum}\" step=\"any\" value=\"{suggested}\"></label> \
         <button type=\"submit\">Grade me</button></form></div>",
        name = text(&launch["person"]["name"]),
        course = text(&launch["context"]["title"]),
        resource = text(&launch["resource"]["title"]),
        roles = esc(&launch["roles"].to_string()),
        suggested = (score_maximum * 0.85).round(),
    );
    p.inner
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            session,
            Session {
                launch,
                score_maximum,
            },
        );
    html(StatusCode::OK, body)
}

#[derive(Deserialize)]
struct GradeForm {
    session: String,
    score: f64,
}

async fn grade(State(p): State<SampleProduct>, Form(f): Form<GradeForm>) -> Response {
    let session = p
        .inner
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&f.session)
        .cloned();
    let Some(Session {
        launch,
        score_maximum,
    }) = session
    else {
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
        "score_maximum": score_maximum,
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
                "<div class=\"card\"><h1>Score sent</h1><p id=\"queued\">lmsbridge queued score <code>{id}</code> ({score} / {score_maximum}, state: {state}).</p>\
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

/// `GET /reading`: what the catalog's plain link points at.
async fn reading() -> Response {
    html(
        StatusCode::OK,
        "<div class=\"card\"><h1>Cell biology reading</h1><p>Cells are the basic unit of life…</p></div>".into(),
    )
}
