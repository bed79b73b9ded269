//! A fake of the web service functions the lmsbridge Moodle plugin exposes
//! (`local_lmsbridge_get_course_completions`, `…_get_activity_completions`,
//! `…_get_grade_items`, `…_get_enrolments`), served as Moodle's REST protocol serves them:
//! `POST /webservice/rest/server.php` with a form carrying `wstoken`, `wsfunction`,
//! `moodlewsrestformat=json` and the function's parameters. Like Moodle, it answers errors
//! with status 200 and an exception object (a wrong token is `invalidtoken`), and without
//! `moodlewsrestformat=json` it answers XML. Tests fill in what each course holds, make
//! courses fail, and read back every call. Loopback only.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use url::Url;

/// One activity completion as the plugin returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WsActivityCompletion {
    pub user_id: i64,
    pub cm_id: i64,
    pub modname: String,
    pub instance_id: i64,
    pub completionstate: i64,
    pub timemodified: i64,
}

/// One enrolment as the plugin returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WsEnrolment {
    pub user_id: i64,
    /// 0 active, 1 suspended.
    pub status: i64,
    pub roles: Vec<String>,
    pub timestart: i64,
    pub timeend: i64,
    /// The enrolment method; the plugin sends it, the wire contract does not promise it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrol: Option<String>,
}

/// A call the fake received (the token is not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsCall {
    pub function: String,
    pub course_id: Option<i64>,
    pub since: Option<i64>,
    pub token_ok: bool,
}

/// What the fake Moodle site holds, per course.
#[derive(Debug, Default)]
pub struct MoodleWsData {
    /// (user id, timecompleted)
    pub course_completions: HashMap<i64, Vec<(i64, i64)>>,
    pub activity_completions: HashMap<i64, Vec<WsActivityCompletion>>,
    pub enrolments: HashMap<i64, Vec<WsEnrolment>>,
    pub grade_items: HashMap<i64, Vec<Value>>,
    /// Courses whose every function fails as a database error would.
    pub failing_courses: HashSet<i64>,
    pub calls: Vec<WsCall>,
}

#[derive(Debug, Clone)]
struct FakeState {
    token: String,
    data: Arc<Mutex<MoodleWsData>>,
}

/// A running fake: `url` is the Moodle site's address (its wwwroot).
#[derive(Debug)]
pub struct SpawnedMoodleWs {
    pub url: Url,
    pub data: Arc<Mutex<MoodleWsData>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SpawnedMoodleWs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SpawnedMoodleWs {
    /// Starts the fake on a loopback port; requests must carry `token`.
    pub async fn spawn(token: &str) -> std::io::Result<Self> {
        let data = Arc::new(Mutex::new(MoodleWsData::default()));
        let state = FakeState {
            token: token.to_owned(),
            data: data.clone(),
        };
        let app = Router::new()
            .route("/moodle/webservice/rest/server.php", post(server))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        // Served under a path, as many Moodle sites are (https://school.example/moodle).
        let url = Url::parse(&format!("http://{addr}/moodle"))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self { url, data, task })
    }

    /// The calls received so far.
    pub fn calls(&self) -> Vec<WsCall> {
        self.data.lock().expect("fake state").calls.clone()
    }
}

fn exception(errorcode: &str, message: &str) -> Response {
    axum::Json(json!({"exception": "moodle_exception", "errorcode": errorcode, "message": message}))
        .into_response()
}

async fn server(State(state): State<FakeState>, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let function = form.get("wsfunction").cloned().unwrap_or_default();
    let course_id = form.get("courseid").and_then(|c| c.parse::<i64>().ok());
    let since = form.get("since").and_then(|c| c.parse::<i64>().ok());
    let token_ok = form.get("wstoken") == Some(&state.token);
    let mut data = state.data.lock().expect("fake state");
    data.calls.push(WsCall {
        function: function.clone(),
        course_id,
        since,
        token_ok,
    });
    if form.get("moodlewsrestformat").map(String::as_str) != Some("json") {
        return (
            [(axum::http::header::CONTENT_TYPE, "application/xml")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<RESPONSE></RESPONSE>\n",
        )
            .into_response();
    }
    if !token_ok {
        return exception("invalidtoken", "Invalid token - token not found");
    }
    let Some(course) = course_id else {
        return exception("invalidparameter", "Invalid parameter value detected");
    };
    if data.failing_courses.contains(&course) {
        return exception("dmlreadexception", "Error reading from database");
    }
    let since = since.unwrap_or(0);
    match function.as_str() {
        "local_lmsbridge_get_course_completions" => {
            let completions: Vec<Value> = data
                .course_completions
                .get(&course)
                .into_iter()
                .flatten()
                .filter(|(_, t)| *t >= since)
                .map(|(u, t)| json!({"user_id": u, "timecompleted": t}))
                .collect();
            axum::Json(json!({"completions": completions, "warnings": []})).into_response()
        }
        "local_lmsbridge_get_activity_completions" => {
            let completions: Vec<&WsActivityCompletion> = data
                .activity_completions
                .get(&course)
                .into_iter()
                .flatten()
                .filter(|c| c.timemodified >= since)
                .collect();
            axum::Json(json!({"completions": completions, "warnings": []})).into_response()
        }
        "local_lmsbridge_get_enrolments" => {
            let enrolments = data.enrolments.get(&course).cloned().unwrap_or_default();
            axum::Json(json!({"enrolments": enrolments, "warnings": []})).into_response()
        }
        "local_lmsbridge_get_grade_items" => {
            let items = data.grade_items.get(&course).cloned().unwrap_or_default();
            axum::Json(json!({"items": items, "warnings": []})).into_response()
        }
        _ => exception(
            "accessexception",
            "Access control exception (the function is not in the service)",
        ),
    }
}
