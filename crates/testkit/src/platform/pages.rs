//! The pages a person sees in the simulated LMS: the course home with its launch links, the
//! gradebook, and the self-submitting form that carries an id_token to the tool.
//!
//! Every piece of text and every attribute value is escaped, including the ones that come
//! from tools (line item labels, score comments).

use super::respond::html;
use super::{SimulatedLms, data::LineItem};
use crate::html::escape;
use axum::extract::State;
use axum::response::Response;
use http::StatusCode;
use std::fmt::Write as _;
use url::Url;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;\
padding:0 1rem;color:#1f2933}h1{font-size:1.6rem}table{border-collapse:collapse}\
th,td{border:1px solid #cbd2d9;padding:.4rem .7rem;text-align:left}th{background:#f0f4f8}\
a{color:#0b5cad}.muted{color:#616e7c}li{margin:.3rem 0}";

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n",
        escape(title)
    )
}

/// A page with a heading and one message.
pub(super) fn message_page(title: &str, message: &str) -> String {
    document(
        title,
        &format!("<h1>{}</h1>\n<p>{}</p>\n", escape(title), escape(message)),
    )
}

/// The form that hands a message to another site in the person's browser, submitted by
/// script as soon as it loads, with a button for browsers without JavaScript.
pub(super) fn auto_post_page(action: &Url, fields: &[(&str, &str)]) -> String {
    let mut body = format!(
        "<form id=\"lti\" method=\"post\" action=\"{}\">\n",
        escape(action.as_str())
    );
    for (name, value) in fields {
        let _ = writeln!(
            body,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(name),
            escape(value)
        );
    }
    body.push_str(
        "<noscript><button type=\"submit\">Continue</button></noscript>\n</form>\n\
<script>document.getElementById('lti').submit()</script>\n",
    );
    document("Launching…", &body)
}

/// `GET /`: the course home page.
pub(super) async fn home(State(lms): State<SimulatedLms>) -> Response {
    let course = lms.course();
    let mut body = format!(
        "<h1>{} <span class=\"muted\">{}</span></h1>\n<p class=\"muted\">lmsbridge simulated LMS \
— issuer <code>{}</code></p>\n<h2>Activities</h2>\n",
        escape(&course.title),
        escape(&course.label),
        escape(&lms.issuer())
    );
    for resource in lms.resources() {
        let _ = writeln!(
            body,
            "<section id=\"{}\">\n<h3>{}</h3>\n<ul>",
            escape(&resource.id),
            escape(&resource.title)
        );
        for user in lms.users() {
            let _ = writeln!(
                body,
                "<li><a href=\"{}\">Launch {} as {}</a> <span class=\"muted\">({:?}) · \
<a href=\"{}\">in a frame, with platform storage</a></span></li>",
                escape(lms.launch_url(&user.id, &resource.id).as_str()),
                escape(&resource.title),
                escape(&user.name),
                user.role,
                escape(lms.frame_url(&user.id, &resource.id).as_str()),
            );
        }
        body.push_str("</ul>\n</section>\n");
    }
    let _ = writeln!(
        body,
        "<p><a href=\"{}\">Gradebook</a></p>",
        escape(lms.gradebook_url().as_str())
    );
    html(StatusCode::OK, document(&course.title, &body))
}

/// `GET /gradebook`: learners down, line items across, the current grade in each cell.
pub(super) async fn gradebook(State(lms): State<SimulatedLms>) -> Response {
    let course = lms.course();
    let line_items: Vec<LineItem> = lms.state().line_items.values().cloned().collect();
    let grades = lms.gradebook();
    let mut body = format!(
        "<h1>Gradebook — {}</h1>\n<table id=\"gradebook\">\n<thead><tr><th>Student</th>",
        escape(&course.title)
    );
    for li in &line_items {
        let _ = write!(
            body,
            "<th data-line-item=\"{}\">{} <span class=\"muted\">/ {}</span></th>",
            li.id,
            escape(&li.label),
            li.score_maximum
        );
    }
    body.push_str("</tr></thead>\n<tbody>\n");
    for user in lms.users().iter().filter(|u| u.is_learner()) {
        let _ = write!(
            body,
            "<tr data-user=\"{}\"><th>{}</th>",
            escape(&user.id),
            escape(&user.name)
        );
        for li in &line_items {
            let id = li.id.to_string();
            let grade = grades
                .iter()
                .find(|g| g.line_item_id == id && g.user_id == user.id);
            let cell = match grade.and_then(|g| Some((g.score_given?, g.score_maximum?))) {
                Some((given, max)) => format!("{given} / {max}"),
                None => "—".to_owned(),
            };
            let title = grade
                .map(|g| format!("{} · {}", g.activity_progress, g.grading_progress))
                .unwrap_or_default();
            let _ = write!(
                body,
                "<td data-user=\"{}\" data-line-item=\"{}\" title=\"{}\">{}</td>",
                escape(&user.id),
                li.id,
                escape(&title),
                escape(&cell)
            );
        }
        body.push_str("</tr>\n");
    }
    let _ = writeln!(
        body,
        "</tbody>\n</table>\n<p><a href=\"{}\">Back to the course</a></p>",
        escape(lms.home_url().as_str())
    );
    html(StatusCode::OK, document("Gradebook", &body))
}

/// `GET /_inspect/scores`: every accepted score, for tests that only speak HTTP.
pub(super) async fn inspect_scores(State(lms): State<SimulatedLms>) -> Response {
    use axum::response::IntoResponse;
    axum::Json(lms.scores()).into_response()
}

/// The platform side of LTI platform storage: answers `lti.put_data` and `lti.get_data`
/// postMessages from the tool's frame, keeping values in this page's memory, as an LMS page
/// hosting a tool does.
const STORAGE_JS: &str = r#"
const store = new Map();
window.addEventListener('message', (e) => {
  const m = e.data;
  if (!m || typeof m.subject !== 'string') return;
  const reply = (data) => e.source.postMessage(Object.assign({message_id: m.message_id}, data), e.origin);
  const key = e.origin + '|' + m.key;
  if (m.subject === 'lti.capabilities') {
    reply({subject: 'lti.capabilities.response', supported_messages: [{subject: 'lti.put_data'}, {subject: 'lti.get_data'}]});
  } else if (m.subject === 'lti.put_data') {
    store.set(key, m.value);
    reply({subject: 'lti.put_data.response', key: m.key, value: m.value});
  } else if (m.subject === 'lti.get_data') {
    if (store.has(key)) reply({subject: 'lti.get_data.response', key: m.key, value: store.get(key)});
    else reply({subject: 'lti.get_data.response', key: m.key, error: {code: 'bad_request', message: 'no such key'}});
  }
});
// Where the frame's page is readable (same origin, as in the demo), mirror what it shows, so a
// headless browser's DOM dump reveals where the launch ended.
document.getElementById('tool').addEventListener('load', () => {
  try {
    const doc = document.getElementById('tool').contentDocument;
    document.getElementById('observed').textContent = doc.location.pathname + '\n' + doc.body.innerText;
  } catch (e) {
    document.getElementById('observed').textContent = 'cross-origin';
  }
});
"#;

/// `GET /frame?user=&resource=`: the activity inside an iframe of this page, with the login
/// offering platform storage (`lti_storage_target=_parent`).
pub(super) async fn frame(
    State(lms): State<SimulatedLms>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let (Some(user), Some(resource)) = (q.get("user"), q.get("resource")) else {
        return html(
            StatusCode::BAD_REQUEST,
            message_page("Bad request", "user and resource are required."),
        );
    };
    let mut src = lms.launch_url(user, resource);
    src.query_pairs_mut().append_pair("storage", "_parent");
    let body = format!(
        "<h1>Activity</h1>\n<iframe id=\"tool\" name=\"tool\" src=\"{}\" style=\"width:100%;height:32rem;border:1px solid #cbd2d9\"></iframe>\n<pre id=\"observed\" class=\"muted\"></pre>\n<script>{STORAGE_JS}</script>\n",
        escape(src.as_str())
    );
    html(StatusCode::OK, document("Activity", &body))
}
