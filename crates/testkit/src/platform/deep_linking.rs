//! Deep Linking 2.0 on the platform side (1EdTech LTI Deep Linking 2.0 §4.4, §4.5).
//!
//! A teacher starts a deep linking request here; the tool answers at `/deep_linking/return`
//! with a signed `LtiDeepLinkingResponse`, which is checked the way a platform must (RS256
//! against the tool's JWKS, `iss` = client_id, `aud` = this issuer, deployment, message type,
//! version, nonce, `exp`, the `data` echo, and the items against the request's settings). Its
//! resource links become activities of the course, with a gradebook column when they carry a
//! `lineItem`, and learners launch them with the AGS `lineitem` claim like any other.
//! `/_inspect/deep_linking` shows what was asked and received.

use super::data::LineItem;
use super::pages::{auto_post_page, message_page};
use super::respond::{Params, Refusal, html};
use super::stats::RejectReason;
use super::{SimResource, SimUser, SimulatedLms, ToolRegistration, now, random_secret};
use crate::html::escape;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lti::LaunchClaims;
use lti::claims::{Audience, DeepLinkingSettingsClaim, MessageType};
use lti::deep_linking::{CLAIM_CONTENT_ITEMS, CLAIM_DATA, ContentItem, MESSAGE_TYPE_RESPONSE};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use time::{Duration, OffsetDateTime};
use url::Url;

/// How long a started deep linking request or activity launch may take to reach `/auth`.
const HINT_TTL: Duration = Duration::minutes(10);
/// Clock difference tolerated on the response's `iat` and `exp`.
const SKEW_SECONDS: i64 = 60;
const ALL_TYPES: &str = "ltiResourceLink,link,html,file,image";

/// What deep linking has done in this LMS.
#[derive(Default)]
pub(super) struct DeepLinkingState {
    /// Launches started here, by their single-use `lti_message_hint`.
    pending: HashMap<String, Pending>,
    requests: BTreeMap<u64, IssuedRequest>,
    next_request: u64,
    /// Activities created from responses, in order.
    links: Vec<PlacedLink>,
    /// Every response received, accepted or not, as `/_inspect/deep_linking` shows it.
    responses: Vec<Value>,
    nonces: HashSet<String>,
}

#[derive(Debug, Clone)]
enum Pending {
    Request {
        user_id: String,
        request: u64,
        expires_at: OffsetDateTime,
    },
    Link {
        user_id: String,
        link: String,
        expires_at: OffsetDateTime,
    },
}

/// A deep linking request this LMS sent, answerable once.
#[derive(Debug, Clone, Serialize)]
struct IssuedRequest {
    id: u64,
    user_id: String,
    settings: DeepLinkingSettingsClaim,
    answered: bool,
}

/// An activity created from an `ltiResourceLink` content item.
#[derive(Debug, Clone, Serialize)]
struct PlacedLink {
    id: String,
    title: String,
    text: Option<String>,
    url: Option<Url>,
    custom: BTreeMap<String, String>,
    line_item_id: Option<u64>,
    request: u64,
}

/// The deep linking routes, merged into the LMS's router.
pub(super) fn routes() -> Router<SimulatedLms> {
    Router::new()
        .route("/deep_linking", get(course_page))
        .route("/deep_linking/start", get(start))
        .route("/deep_linking/launch", get(launch_link))
        .route("/deep_linking/return", post(receive))
        .route("/deep_linking/frame", get(frame))
        .route("/_inspect/deep_linking", get(inspect))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;\
padding:0 1rem;color:#1f2933}h1{font-size:1.6rem}a{color:#0b5cad}.muted{color:#616e7c}\
li{margin:.3rem 0}section{border-top:1px solid #cbd2d9;margin-top:1rem}";

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n",
        escape(title)
    )
}

fn bad_request(reason: RejectReason, message: &str) -> Refusal {
    Refusal::with_response(
        reason,
        html(
            StatusCode::BAD_REQUEST,
            message_page("Bad request", message),
        ),
    )
}

fn list(p: &Params, name: &str, default: &str) -> Vec<String> {
    p.get(name)
        .unwrap_or(default)
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn flag(p: &Params, name: &str, default: bool) -> bool {
    match p.get(name) {
        Some("true" | "1") => true,
        Some("false" | "0") => false,
        _ => default,
    }
}

/// `GET /deep_linking/start?user=…`: a teacher asks the tool for content. Optional:
/// `accept_types` (comma list, default `ltiResourceLink`), `accept_multiple` and
/// `accept_lineitem` (default true), `targets` (default `iframe,window`), `data` (default a
/// fresh random value; `no_data=1` sends none), `storage` (offer platform storage).
async fn start(State(lms): State<SimulatedLms>, RawQuery(query): RawQuery) -> Response {
    let result = lms.start_deep_linking(&Params::from_query(query.as_deref()));
    lms.answer(result)
}

/// `GET /deep_linking/launch?user=…&link=…`: launches an activity created by deep linking.
async fn launch_link(State(lms): State<SimulatedLms>, RawQuery(query): RawQuery) -> Response {
    let result = lms.start_link_launch(&Params::from_query(query.as_deref()));
    lms.answer(result)
}

/// `POST /deep_linking/return?request=…`: the tool's `LtiDeepLinkingResponse`, form field `JWT`.
async fn receive(
    State(lms): State<SimulatedLms>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let request = Params::from_query(query.as_deref())
        .get("request")
        .and_then(|r| r.parse::<u64>().ok());
    let jwt = Params::parse(&body).get("JWT").map(str::to_owned);
    match lms.accept_response(request, jwt.as_deref()).await {
        Ok(created) => {
            let mut body = format!(
                "<h1>Deep linking: {} activit{} added</h1>\n<ul id=\"created\">\n",
                created.len(),
                if created.len() == 1 { "y" } else { "ies" }
            );
            for link in &created {
                let _ = writeln!(
                    body,
                    "<li data-link=\"{}\">{}</li>",
                    escape(&link.id),
                    escape(&link.title)
                );
            }
            let _ = writeln!(
                body,
                "</ul>\n<p><a href=\"{}\">Back to the course's activities</a></p>",
                escape(lms.deep_linking_page_url().as_str())
            );
            html(StatusCode::OK, document("Deep linking", &body))
        }
        Err((code, detail)) => html(
            StatusCode::BAD_REQUEST,
            message_page(
                "Deep linking response refused",
                &format!("{code}: {detail}"),
            ),
        ),
    }
}

/// The platform side of the frame page: answers LTI platform storage messages
/// (`lti.put_data`, `lti.get_data`) from the tool's frame, mirrors what the frame shows (same
/// origin only, as in the demo) so a headless browser's DOM dump reveals where the flow ended,
/// and with `pick` set plays the teacher: ticks every offered item and presses "Add selected".
const FRAME_JS: &str = r#"
const store = new Map();
window.addEventListener('message', (e) => {
  const m = e.data;
  if (!m || typeof m.subject !== 'string') return;
  const reply = (data) => e.source.postMessage(Object.assign({message_id: m.message_id}, data), e.origin);
  const key = e.origin + '|' + m.key;
  if (m.subject === 'lti.put_data') {
    store.set(key, m.value);
    reply({subject: 'lti.put_data.response', key: m.key, value: m.value});
  } else if (m.subject === 'lti.get_data') {
    if (store.has(key)) reply({subject: 'lti.get_data.response', key: m.key, value: store.get(key)});
    else reply({subject: 'lti.get_data.response', key: m.key, error: {code: 'bad_request', message: 'no such key'}});
  }
});
const frame = document.getElementById('tool');
const pick = frame.dataset.pick === 'all';
let picked = false;
frame.addEventListener('load', () => {
  try {
    const doc = frame.contentDocument;
    document.getElementById('observed').textContent = doc.location.pathname + '\n' + doc.body.innerText;
    const form = doc.getElementById('picker');
    if (pick && form && !picked) {
      picked = true;
      form.querySelectorAll('input[name=item]').forEach((i) => { i.checked = true; });
      form.querySelector('button[type=submit]').click();
    }
  } catch (e) {
    document.getElementById('observed').textContent = 'cross-origin';
  }
});
"#;

/// `GET /deep_linking/frame?user=…[&pick=all][&storage=1]`: the deep linking request inside an
/// iframe of this page, as an LMS shows it, optionally offering platform storage.
async fn frame(State(lms): State<SimulatedLms>, RawQuery(query): RawQuery) -> Response {
    let p = Params::from_query(query.as_deref());
    let Some(user) = p.get("user") else {
        return html(
            StatusCode::BAD_REQUEST,
            message_page("Bad request", "user is required."),
        );
    };
    let mut src = lms.deep_linking_url(user);
    if flag(&p, "storage", false) {
        src.query_pairs_mut().append_pair("storage", "_parent");
    }
    let pick = if p.get("pick") == Some("all") {
        "all"
    } else {
        "none"
    };
    let body = format!(
        "<h1>Add activities</h1>\n<iframe id=\"tool\" name=\"tool\" data-pick=\"{pick}\" src=\"{}\" \
         style=\"width:100%;height:32rem;border:1px solid #cbd2d9\"></iframe>\n\
         <pre id=\"observed\" class=\"muted\"></pre>\n<script>{FRAME_JS}</script>\n",
        escape(src.as_str())
    );
    html(StatusCode::OK, document("Add activities", &body))
}

/// `GET /_inspect/deep_linking`: requests sent, responses received, activities created.
async fn inspect(State(lms): State<SimulatedLms>) -> Response {
    let state = lms.state();
    let dl = &state.deep_linking;
    axum::Json(json!({
        "requests": dl.requests.values().collect::<Vec<_>>(),
        "responses": dl.responses,
        "links": dl.links,
    }))
    .into_response()
}

/// `GET /deep_linking`: the course's deep linking page: where a teacher adds activities from
/// the tool, and the activities added so far with a launch link for everyone.
async fn course_page(State(lms): State<SimulatedLms>) -> Response {
    let course = lms.course();
    let mut body = format!(
        "<h1>{} <span class=\"muted\">activities from the tool</span></h1>\n<h2>Add activities</h2>\n<ul>\n",
        escape(&course.title)
    );
    for user in lms.users().iter().filter(|u| !u.is_learner()) {
        let _ = writeln!(
            body,
            "<li><a href=\"{}\">Add activities from the tool as {}</a></li>",
            escape(lms.deep_linking_url(&user.id).as_str()),
            escape(&user.name)
        );
    }
    body.push_str("</ul>\n<h2>Activities added by deep linking</h2>\n");
    let links = lms.state().deep_linking.links.clone();
    if links.is_empty() {
        body.push_str("<p class=\"muted\" id=\"no-links\">None yet.</p>\n");
    }
    for link in &links {
        let graded = match link.line_item_id.and_then(|id| lms.line_item(id)) {
            Some(li) => format!("graded, out of {}", li.score_maximum),
            None => "not graded".to_owned(),
        };
        let _ = writeln!(
            body,
            "<section id=\"{}\">\n<h3>{}</h3>\n<p class=\"muted\">{}</p>\n<ul>",
            escape(&link.id),
            escape(&link.title),
            escape(&graded)
        );
        for user in lms.users() {
            let _ = writeln!(
                body,
                "<li><a href=\"{}\">Launch {} as {}</a></li>",
                escape(lms.deep_linked_launch_url(&user.id, &link.id).as_str()),
                escape(&link.title),
                escape(&user.name)
            );
        }
        body.push_str("</ul>\n</section>\n");
    }
    let _ = writeln!(
        body,
        "<p><a href=\"{}\">Gradebook</a> · <a href=\"{}\">Course home</a></p>",
        escape(lms.gradebook_url().as_str()),
        escape(lms.home_url().as_str())
    );
    html(StatusCode::OK, document("Activities from the tool", &body))
}

impl SimulatedLms {
    /// The tool this LMS trusts now (set up, or registered dynamically).
    fn dl_tool(&self) -> ToolRegistration {
        self.current_tool()
    }

    /// The page where a teacher adds activities by deep linking and everyone launches them.
    pub fn deep_linking_page_url(&self) -> Url {
        self.endpoint(&["deep_linking"])
    }

    /// The link that starts a deep linking request as `user_id`; add `accept_types`,
    /// `accept_multiple`, `accept_lineitem`, `targets`, `data` or `no_data` to the query to
    /// change the request's settings.
    pub fn deep_linking_url(&self, user_id: &str) -> Url {
        let mut url = self.endpoint(&["deep_linking", "start"]);
        url.query_pairs_mut().append_pair("user", user_id);
        url
    }

    /// A page that shows the deep linking request in an iframe, as an LMS does; `pick_all`
    /// makes its script tick every offered item and submit, `storage` offers platform storage.
    pub fn deep_linking_frame_url(&self, user_id: &str, pick_all: bool, storage: bool) -> Url {
        let mut url = self.endpoint(&["deep_linking", "frame"]);
        url.query_pairs_mut().append_pair("user", user_id);
        if pick_all {
            url.query_pairs_mut().append_pair("pick", "all");
        }
        if storage {
            url.query_pairs_mut().append_pair("storage", "1");
        }
        url
    }

    /// The link that launches an activity created by deep linking.
    pub fn deep_linked_launch_url(&self, user_id: &str, link_id: &str) -> Url {
        let mut url = self.endpoint(&["deep_linking", "launch"]);
        url.query_pairs_mut()
            .append_pair("user", user_id)
            .append_pair("link", link_id);
        url
    }

    /// The activities created by deep linking, with their line item ids ("" when ungraded).
    pub fn deep_linked_resources(&self) -> Vec<SimResource> {
        self.state()
            .deep_linking
            .links
            .iter()
            .map(|l| SimResource {
                id: l.id.clone(),
                title: l.title.clone(),
                line_item_id: l.line_item_id.map(|i| i.to_string()).unwrap_or_default(),
            })
            .collect()
    }

    /// Every deep linking response received, accepted or not, in order.
    pub fn deep_linking_responses(&self) -> Vec<Value> {
        self.state().deep_linking.responses.clone()
    }

    fn line_item(&self, id: u64) -> Option<LineItem> {
        self.state().line_items.get(&id).cloned()
    }

    /// Registers a single-use hint and sends the browser to the tool's login initiation.
    fn begin_login(&self, user: &SimUser, pending: Pending, target: &Url, p: &Params) -> Response {
        let hint = random_secret();
        {
            let mut state = self.state();
            let now = now();
            state.deep_linking.pending.retain(|_, p| match p {
                Pending::Request { expires_at, .. } | Pending::Link { expires_at, .. } => {
                    *expires_at > now
                }
            });
            state.deep_linking.pending.insert(hint.clone(), pending);
        }
        let tool = self.dl_tool();
        let mut login = tool.login_url.clone();
        login
            .query_pairs_mut()
            .append_pair("iss", &self.issuer())
            .append_pair("login_hint", &user.id)
            .append_pair("target_link_uri", target.as_str())
            .append_pair("lti_message_hint", &hint)
            .append_pair("client_id", &tool.client_id)
            .append_pair("lti_deployment_id", &tool.deployment_id);
        if let Some(storage) = p.get("storage") {
            login
                .query_pairs_mut()
                .append_pair("lti_storage_target", storage);
        }
        (StatusCode::FOUND, [(header::LOCATION, login.as_str())]).into_response()
    }

    fn start_deep_linking(&self, p: &Params) -> Result<Response, Refusal> {
        let user = p
            .get("user")
            .and_then(|id| self.user(id))
            .cloned()
            .ok_or_else(|| bad_request(RejectReason::UnknownUser, "No such user."))?;
        let data = if flag(p, "no_data", false) {
            None
        } else {
            Some(p.get("data").map_or_else(random_secret, str::to_owned))
        };
        let id = {
            let mut state = self.state();
            state.deep_linking.next_request += 1;
            state.deep_linking.next_request
        };
        let mut return_url = self.endpoint(&["deep_linking", "return"]);
        return_url
            .query_pairs_mut()
            .append_pair("request", &id.to_string());
        let course = self.course();
        let settings = DeepLinkingSettingsClaim {
            deep_link_return_url: return_url.to_string(),
            accept_types: list(p, "accept_types", "ltiResourceLink"),
            accept_presentation_document_targets: list(p, "targets", "iframe,window"),
            accept_media_types: None,
            accept_multiple: Some(flag(p, "accept_multiple", true)),
            accept_lineitem: Some(flag(p, "accept_lineitem", true)),
            auto_create: Some(true),
            title: Some(format!("Add activities to {}", course.title)),
            text: Some("Choose what the class should do next.".to_owned()),
            data,
        };
        if settings
            .accept_types
            .iter()
            .any(|t| !ALL_TYPES.split(',').any(|known| known == t))
        {
            return Err(bad_request(
                RejectReason::MalformedBody,
                "accept_types may only name ltiResourceLink, link, html, file and image.",
            ));
        }
        self.state().deep_linking.requests.insert(
            id,
            IssuedRequest {
                id,
                user_id: user.id.clone(),
                settings,
                answered: false,
            },
        );
        let target = self.dl_tool().launch_url;
        Ok(self.begin_login(
            &user,
            Pending::Request {
                user_id: user.id.clone(),
                request: id,
                expires_at: now() + HINT_TTL,
            },
            &target,
            p,
        ))
    }

    fn start_link_launch(&self, p: &Params) -> Result<Response, Refusal> {
        let user = p
            .get("user")
            .and_then(|id| self.user(id))
            .cloned()
            .ok_or_else(|| bad_request(RejectReason::UnknownUser, "No such user."))?;
        let link = p
            .get("link")
            .and_then(|id| {
                self.state()
                    .deep_linking
                    .links
                    .iter()
                    .find(|l| l.id == id)
                    .cloned()
            })
            .ok_or_else(|| bad_request(RejectReason::UnknownResource, "No such activity."))?;
        // LTI Core §5.1.3: the launch goes to the link's own URL when the tool gave one.
        let target = link
            .url
            .clone()
            .unwrap_or_else(|| self.dl_tool().launch_url);
        Ok(self.begin_login(
            &user,
            Pending::Link {
                user_id: user.id.clone(),
                link: link.id,
                expires_at: now() + HINT_TTL,
            },
            &target,
            p,
        ))
    }

    /// Answers the OIDC authentication request of a launch started here, or `None` when the
    /// message hint is not one of ours (then `/auth` handles it as an ordinary launch).
    pub(super) fn authenticate_deep_linking(
        &self,
        p: &Params,
        nonce: &str,
        state: &str,
        redirect: &Url,
    ) -> Option<Result<Response, Refusal>> {
        let hint = p.get("lti_message_hint")?;
        // Single use: taken out whether or not what follows succeeds.
        let pending = self.state().deep_linking.pending.remove(hint)?;
        let refuse = |reason, error: &str, description: &str| {
            Refusal::with_response(
                reason,
                html(
                    StatusCode::OK,
                    auto_post_page(
                        redirect,
                        &[
                            ("error", error),
                            ("error_description", description),
                            ("state", state),
                        ],
                    ),
                ),
            )
        };
        let (user_id, expires_at) = match &pending {
            Pending::Request {
                user_id,
                expires_at,
                ..
            }
            | Pending::Link {
                user_id,
                expires_at,
                ..
            } => (user_id.clone(), *expires_at),
        };
        if expires_at <= now() {
            return Some(Err(refuse(
                RejectReason::MessageHintUnknown,
                "invalid_request",
                "lti_message_hint is unknown, expired or already used",
            )));
        }
        // LTI Core §4.1.1: login_hint must be the person the launch was started for.
        if p.get("login_hint") != Some(user_id.as_str()) {
            return Some(Err(refuse(
                RejectReason::LoginHintMismatch,
                "login_required",
                "login_hint is not the signed-in user",
            )));
        }
        let claims = self
            .user(&user_id)
            .cloned()
            .and_then(|user| match &pending {
                Pending::Request { request, .. } => {
                    self.deep_linking_claims(&user, *request, nonce)
                }
                Pending::Link { link, .. } => self.link_claims(&user, link, nonce),
            });
        let Some(claims) = claims else {
            return Some(Err(refuse(
                RejectReason::UnknownUser,
                "invalid_request",
                "the launch no longer exists",
            )));
        };
        Some(match self.inner.key.sign(&claims) {
            Ok(id_token) => Ok(html(
                StatusCode::OK,
                auto_post_page(redirect, &[("id_token", &id_token), ("state", state)]),
            )),
            Err(e) => {
                tracing::error!(error = %e, "simulated LMS could not sign an id_token");
                Ok(html(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    message_page("Error", "Something went wrong."),
                ))
            }
        })
    }

    /// The claims of a deep linking request (DL §4.4): no resource link, the settings claim.
    fn deep_linking_claims(
        &self,
        user: &SimUser,
        request: u64,
        nonce: &str,
    ) -> Option<LaunchClaims> {
        let settings = self
            .state()
            .deep_linking
            .requests
            .get(&request)?
            .settings
            .clone();
        let none = SimResource {
            id: String::new(),
            title: String::new(),
            line_item_id: String::new(),
        };
        let mut claims = self.launch_claims(user, &none, nonce);
        claims.message_type = MessageType::LtiDeepLinkingRequest.as_str().to_owned();
        claims.resource_link = None;
        // The line items service stays offered; there is no line item of a link yet.
        if let Some(ags) = claims.ags.as_mut() {
            ags.lineitem = None;
        }
        claims.deep_linking_settings = Some(settings);
        claims.target_link_uri = Some(self.dl_tool().launch_url.to_string());
        Some(claims)
    }

    /// The claims of a launch of an activity created by deep linking: its custom parameters,
    /// and its line item when it has one.
    fn link_claims(&self, user: &SimUser, link_id: &str, nonce: &str) -> Option<LaunchClaims> {
        let link = self
            .state()
            .deep_linking
            .links
            .iter()
            .find(|l| l.id == link_id)
            .cloned()?;
        let resource = SimResource {
            id: link.id.clone(),
            title: link.title.clone(),
            line_item_id: link.line_item_id.map(|i| i.to_string()).unwrap_or_default(),
        };
        let mut claims = self.launch_claims(user, &resource, nonce);
        if link.line_item_id.is_none()
            && let Some(ags) = claims.ags.as_mut()
        {
            ags.lineitem = None;
        }
        claims.custom = Some(
            link.custom
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        );
        let target = link.url.unwrap_or_else(|| self.dl_tool().launch_url);
        claims.target_link_uri = Some(target.to_string());
        Some(claims)
    }

    /// Verifies a deep linking response and places its activities. On refusal, the check that
    /// failed and why; nothing is created then and the request can still be answered.
    async fn accept_response(
        &self,
        request: Option<u64>,
        jwt: Option<&str>,
    ) -> Result<Vec<PlacedLink>, (&'static str, String)> {
        let result = self.verify_response(request, jwt).await;
        let mut state = self.state();
        let outcome = match result {
            Err((code, detail)) => {
                state.deep_linking.responses.push(json!({
                    "request": request, "accepted": false, "error": code, "detail": detail,
                }));
                return Err((code, detail));
            }
            Ok(v) => v,
        };
        let (issued, claims, items) = outcome;
        let mut created = Vec::new();
        for (n, item) in items.iter().enumerate() {
            let ContentItem::LtiResourceLink(link) = item else {
                continue;
            };
            let id = format!("dl-{}-{}", issued.id, n + 1);
            let title = link
                .title
                .clone()
                .unwrap_or_else(|| format!("Activity {id}"));
            // DL §3.1 lineItem: the platform creates the column with the link.
            let line_item_id = link.line_item.as_ref().map(|li| {
                let li_id = state.next_line_item;
                state.next_line_item += 1;
                state.line_items.insert(
                    li_id,
                    LineItem {
                        id: li_id,
                        label: li.label.clone().unwrap_or_else(|| title.clone()),
                        score_maximum: li.score_maximum,
                        resource_link_id: Some(id.clone()),
                        resource_id: li.resource_id.clone(),
                        tag: li.tag.clone(),
                        start_date_time: None,
                        end_date_time: None,
                    },
                );
                li_id
            });
            created.push(PlacedLink {
                id,
                title,
                text: link.text.clone(),
                url: link.url.clone(),
                custom: link.custom.clone(),
                line_item_id,
                request: issued.id,
            });
        }
        let dl = &mut state.deep_linking;
        if let Some(r) = dl.requests.get_mut(&issued.id) {
            r.answered = true;
        }
        if let Some(nonce) = claims["nonce"].as_str() {
            dl.nonces.insert(nonce.to_owned());
        }
        dl.links.extend(created.iter().cloned());
        dl.responses.push(json!({
            "request": issued.id,
            "accepted": true,
            "claims": claims,
            "content_items": items,
            "created": created,
        }));
        Ok(created)
    }

    /// Every check a platform makes of a deep linking response (DL §4.5, Security Framework
    /// §5.1.3 applied to a message from the tool).
    async fn verify_response(
        &self,
        request: Option<u64>,
        jwt: Option<&str>,
    ) -> Result<(IssuedRequest, Value, Vec<ContentItem>), (&'static str, String)> {
        let fail = |code: &'static str, detail: &str| Err((code, detail.to_owned()));
        let Some(request) = request else {
            return fail("request_unknown", "the return URL names no request");
        };
        let issued = self.state().deep_linking.requests.get(&request).cloned();
        let Some(issued) = issued else {
            return fail("request_unknown", "no such deep linking request");
        };
        if issued.answered {
            return fail(
                "request_already_answered",
                "this request was answered before",
            );
        }
        let Some(jwt) = jwt else {
            return fail("jwt_missing", "the form has no JWT field");
        };
        let tool = self.dl_tool();
        let Ok(header) = lti::jwt::inspect_header(jwt) else {
            return fail("jwt_malformed", "JWT is not a compact JWS");
        };
        if header.alg != "RS256" {
            return fail("alg_not_rs256", "the response must be signed with RS256");
        }
        let Some(kid) = header.kid else {
            return fail("kid_missing", "the JWT header has no kid");
        };
        let jwk = match self.inner.tool_keys.key(&tool.jwks_url, &kid).await {
            Ok(jwk) => jwk,
            Err(e) => return Err(("key_unknown", e.to_string())),
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            return fail("key_unknown", "the tool's key for this kid is not usable");
        };
        let mut validation = Validation::new(Algorithm::RS256);
        // Each claim is checked below with its own answer.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let Ok(data) = jsonwebtoken::decode::<Value>(jwt, &key, &validation) else {
            return fail("signature_invalid", "the signature does not verify");
        };
        let claims = data.claims;
        let text = |k: &str| claims[k].as_str();
        // The tool speaks as itself to this platform.
        if text("iss") != Some(tool.client_id.as_str()) {
            return fail("iss_mismatch", "iss must be the tool's client_id");
        }
        let aud: Option<Audience> = serde_json::from_value(claims["aud"].clone()).ok();
        if !aud.is_some_and(|a| a.contains(&self.issuer())) {
            return fail("aud_mismatch", "aud must be this platform's issuer");
        }
        let now = now().unix_timestamp();
        match claims["exp"].as_i64() {
            None => return fail("exp_missing", "exp is required"),
            Some(exp) if exp + SKEW_SECONDS < now => {
                return fail("expired", "the response has expired");
            }
            Some(_) => {}
        }
        if claims["iat"]
            .as_i64()
            .is_none_or(|iat| iat - SKEW_SECONDS > now)
        {
            return fail("iat_invalid", "iat is missing or in the future");
        }
        if text(lti::claims::CLAIM_DEPLOYMENT_ID) != Some(tool.deployment_id.as_str()) {
            return fail(
                "deployment_mismatch",
                "deployment_id is not this deployment",
            );
        }
        if text(lti::claims::CLAIM_MESSAGE_TYPE) != Some(MESSAGE_TYPE_RESPONSE) {
            return fail(
                "message_type_wrong",
                "message_type must be LtiDeepLinkingResponse",
            );
        }
        if text(lti::claims::CLAIM_VERSION) != Some(lti::launch::LTI_VERSION) {
            return fail("version_wrong", "version must be 1.3.0");
        }
        let Some(nonce) = text("nonce").filter(|n| !n.is_empty()) else {
            return fail("nonce_missing", "nonce is required");
        };
        if self.state().deep_linking.nonces.contains(nonce) {
            return fail("nonce_replayed", "this response was received before");
        }
        // DL §4.4.1: data comes back exactly as it was sent, or not at all if none was.
        if claims.get(CLAIM_DATA).and_then(Value::as_str) != issued.settings.data.as_deref()
            || (issued.settings.data.is_none() && claims.get(CLAIM_DATA).is_some())
        {
            return fail("data_mismatch", "data is not the value the request sent");
        }
        let items: Vec<ContentItem> = match claims.get(CLAIM_CONTENT_ITEMS) {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => match serde_json::from_value(v.clone()) {
                Ok(items) => items,
                Err(e) => return Err(("content_items_malformed", e.to_string())),
            },
        };
        let settings = &issued.settings;
        if items.len() > 1 && settings.accept_multiple != Some(true) {
            return fail("multiple_not_accepted", "this request accepts one item");
        }
        for item in &items {
            if !settings.accept_types.iter().any(|t| t == item.type_name()) {
                return Err((
                    "item_type_not_accepted",
                    format!("{} is not accepted here", item.type_name()),
                ));
            }
            if let Some(target) = item.presentation_targets().into_iter().find(|t| {
                !settings
                    .accept_presentation_document_targets
                    .iter()
                    .any(|a| a == t)
            }) {
                return Err((
                    "presentation_not_accepted",
                    format!("{target} is not offered here"),
                ));
            }
            if item.line_item().is_some() && settings.accept_lineitem == Some(false) {
                return fail("line_item_not_accepted", "line items are not accepted here");
            }
        }
        Ok((issued, claims, items))
    }
}
