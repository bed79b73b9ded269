//! A simulated LMS: an LTI 1.3 platform with Assignment and Grade Services 2.0 and Names and
//! Role Provisioning Services 2.0, for integration tests and the demo.
//!
//! It is a real platform as far as a tool can tell: id_tokens are RS256-signed with its own
//! key and published in a JWKS, the token endpoint verifies the tool's client assertion
//! against the tool's JWKS, and every service call is checked the way Canvas and Moodle check
//! it (media types, bearer scopes, score ordering). What it accepted can be read back
//! ([`SimulatedLms::scores`], [`SimulatedLms::gradebook`]) and faults can be switched on
//! ([`SimulatedLms::faults`]).
//!
//! The router works at the root of its own server ([`SimulatedLms::spawn`]) or nested under
//! a path prefix of a bigger one; `base_url` must say where it is reachable.

mod ags;
mod auth;
mod canvas_bucket;
mod data;
mod deep_linking;
mod faults;
mod moodle;
mod nrps;
mod pages;
mod received;
mod registration;
mod respond;
mod stats;
mod throttle;
mod token;

pub use canvas_bucket::CanvasBucket;
pub use data::{GradebookEntry, RecordedScore, SimCourse, SimLineItem, SimResource, SimUser};
pub use faults::{FaultKind, Faults};
pub use moodle::LmsBehaviour;
pub use received::ScoreRequestRecord;
pub use registration::RegistrationStyle;
pub use stats::{RejectReason, Stats};
pub use throttle::RateLimit;

use axum::Router;
use axum::routing::{get, post};
use data::LineItem;
use lti::ToolKey;
use lti::jwks::{JwksCache, JwksCachePolicy};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use url::Url;

/// The tool as registered in the LMS by an administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRegistration {
    pub client_id: String,
    pub deployment_id: String,
    /// The tool's OIDC login initiation URL (LTI Core §4.1).
    pub login_url: Url,
    /// The tool's launch URL: the only `redirect_uri` the LMS accepts, and the
    /// `target_link_uri` of every launch.
    pub launch_url: Url,
    /// Where the tool publishes the keys it signs client assertions with.
    pub jwks_url: Url,
}

/// How a simulated LMS is set up.
#[derive(Debug, Clone)]
pub struct LmsConfig {
    /// Where the router is reachable, e.g. `http://127.0.0.1:8080/lms/`. The issuer is this
    /// URL without its trailing slash.
    pub base_url: Url,
    pub tool: ToolRegistration,
    /// Lifetime of the access tokens the token endpoint issues.
    pub token_ttl: Duration,
    /// The largest NRPS page, whatever `limit` the tool asks for.
    pub page_size: usize,
    /// People enrolled besides the seed data; they launch and are graded like the others.
    pub extra_users: Vec<SimUser>,
    /// Whose score handling to reproduce: the AGS specification's, or Moodle's.
    pub behaviour: LmsBehaviour,
}

impl LmsConfig {
    /// A configuration with the defaults: tokens live an hour, NRPS pages hold 50 members.
    pub fn new(base_url: Url, tool: ToolRegistration) -> Self {
        Self {
            base_url,
            tool,
            token_ttl: Duration::from_secs(3600),
            page_size: 50,
            extra_users: Vec::new(),
            behaviour: LmsBehaviour::Standard,
        }
    }
}

/// Why a simulated LMS could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LmsError {
    #[error("the platform key could not be generated: {0}")]
    Key(#[from] lti::ToolKeyError),
    #[error("the HTTP client for the tool's JWKS could not be built")]
    HttpClient,
    #[error("base_url {0} cannot carry paths")]
    BaseUrl(Url),
}

/// A running simulated LMS. Cheap to clone; every clone is the same LMS.
#[derive(Clone)]
pub struct SimulatedLms {
    inner: Arc<Inner>,
}

impl fmt::Debug for SimulatedLms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatedLms")
            .field("issuer", &self.issuer())
            .field("client_id", &self.inner.config.tool.client_id)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: LmsConfig,
    /// Signs id_tokens. A tool key and a platform key are the same kind of RSA key.
    key: ToolKey,
    /// The tool's published keys, for verifying its client assertions.
    tool_keys: JwksCache,
    course: SimCourse,
    users: Vec<SimUser>,
    resources: Vec<SimResource>,
    faults: Faults,
    /// Every score post received (received.rs).
    received: received::ScoreLog,
    /// The service endpoints' rate limit (throttle.rs).
    throttle: throttle::Throttle,
    /// Canvas's leaky bucket over the service endpoints (canvas_bucket.rs).
    canvas_bucket: canvas_bucket::Bucket,
    state: Mutex<State>,
    stats: Mutex<Stats>,
}

/// Everything that changes while the LMS runs. Not `Debug`: its keys are message hints,
/// which are bearer secrets while they live.
#[derive(Default)]
struct State {
    /// Launches started from the LMS, keyed by the `lti_message_hint` sent with them.
    pending_launches: HashMap<String, PendingLaunch>,
    /// Issued access tokens, keyed by the SHA-256 of the token so that the table holds no
    /// usable bearer secret.
    tokens: HashMap<Vec<u8>, IssuedToken>,
    /// Client assertion `jti`s already used, with their `exp`, kept until then.
    used_jtis: HashMap<String, i64>,
    line_items: BTreeMap<u64, LineItem>,
    next_line_item: u64,
    scores: Vec<RecordedScore>,
    /// For each (line item, user), the index in `scores` of the current score.
    current: BTreeMap<(u64, String), usize>,
    /// Deep linking requests, responses and the activities they created (deep_linking.rs).
    deep_linking: deep_linking::DeepLinkingState,
    /// NRPS: roster changes made while the LMS runs, and how memberships are served.
    roster: nrps::Roster,
    /// Dynamic Registration: how this LMS behaves, its unused registration tokens, the tool
    /// registered through it (trusted instead of `config.tool` once present), and the
    /// registration requests received.
    registration_style: RegistrationStyle,
    registration_tokens: std::collections::HashSet<String>,
    registration_count: u64,
    registered_tool: Option<ToolRegistration>,
    registrations: Vec<serde_json::Value>,
}

#[derive(Debug, Clone)]
struct PendingLaunch {
    user_id: String,
    resource_id: String,
    expires_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
struct IssuedToken {
    scopes: Vec<String>,
    expires_at: OffsetDateTime,
    generation: u64,
}

impl SimulatedLms {
    /// Creates an LMS with a fresh platform key and the seed data.
    ///
    /// # Panics
    /// When the crypto library cannot generate an RSA key or the HTTP client cannot be built;
    /// [`SimulatedLms::try_new`] returns those as errors.
    pub fn new(config: LmsConfig) -> Self {
        Self::try_new(config).expect("simulated LMS could not start")
    }

    /// Creates an LMS with a fresh platform key and the seed data.
    pub fn try_new(mut config: LmsConfig) -> Result<Self, LmsError> {
        if config.base_url.cannot_be_a_base() {
            return Err(LmsError::BaseUrl(config.base_url));
        }
        // Endpoint URLs are joined onto the base, which needs the trailing slash.
        if !config.base_url.path().ends_with('/') {
            let path = format!("{}/", config.base_url.path());
            config.base_url.set_path(&path);
        }
        config.base_url.set_query(None);
        config.base_url.set_fragment(None);
        let kid = format!("lms-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let key = ToolKey::generate(kid)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|_| LmsError::HttpClient)?;
        let line_items: BTreeMap<u64, LineItem> = data::line_items()
            .into_iter()
            .map(|li| (li.id, li))
            .collect();
        let next_line_item = line_items.keys().max().copied().unwrap_or(0) + 1;
        let users = data::users()
            .into_iter()
            .chain(config.extra_users.iter().cloned())
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                key,
                tool_keys: JwksCache::new(http, JwksCachePolicy::default()),
                course: data::course(),
                users,
                resources: data::resources(),
                faults: Faults::default(),
                received: received::ScoreLog::default(),
                throttle: throttle::Throttle::default(),
                canvas_bucket: canvas_bucket::Bucket::default(),
                state: Mutex::new(State {
                    line_items,
                    next_line_item,
                    ..State::default()
                }),
                stats: Mutex::new(Stats::default()),
            }),
        })
    }

    /// Binds 127.0.0.1 on a free port and serves the LMS at its root, with the defaults.
    pub async fn spawn(tool: ToolRegistration) -> std::io::Result<(SimulatedLms, SpawnedLms)> {
        Self::spawn_with(tool, |config| config).await
    }

    /// Like [`SimulatedLms::spawn`], with a chance to change the configuration first (token
    /// lifetime, page size). `base_url` is set to the bound address whatever `configure` does.
    pub async fn spawn_with(
        tool: ToolRegistration,
        configure: impl FnOnce(LmsConfig) -> LmsConfig,
    ) -> std::io::Result<(SimulatedLms, SpawnedLms)> {
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let mut base_url = Url::parse("http://127.0.0.1/").map_err(std::io::Error::other)?;
        base_url
            .set_port(Some(addr.port()))
            .map_err(|()| std::io::Error::other("port not settable"))?;
        let mut config = configure(LmsConfig::new(base_url.clone(), tool));
        config.base_url = base_url;
        let lms = Self::try_new(config).map_err(std::io::Error::other)?;
        let router = lms.router();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!(error = %e, "simulated LMS server stopped");
            }
        });
        Ok((lms, SpawnedLms { addr, task }))
    }

    /// The LMS's routes, relative to the path of `base_url`. Serve it at the root or nest it
    /// under that path.
    pub fn router(&self) -> Router {
        let services = Router::new()
            .route("/token", post(token::token))
            .route(
                "/api/lti/courses/{course_id}/line_items",
                get(ags::list_line_items).post(ags::create_line_item),
            )
            .route(
                "/api/lti/courses/{course_id}/line_items/{line_item_id}",
                get(ags::get_line_item)
                    .put(ags::update_line_item)
                    .delete(ags::delete_line_item),
            )
            .route(
                "/api/lti/courses/{course_id}/line_items/{line_item_id}/scores",
                post(ags::post_score).layer(axum::middleware::from_fn_with_state(
                    self.clone(),
                    received::record,
                )),
            )
            .route(
                "/api/lti/courses/{course_id}/line_items/{line_item_id}/results",
                get(ags::results),
            )
            .route(
                "/api/lti/courses/{course_id}/names_and_roles",
                get(nrps::memberships),
            )
            .route_layer(axum::middleware::from_fn_with_state(
                self.clone(),
                injected_latency,
            ))
            .route_layer(axum::middleware::from_fn_with_state(
                self.clone(),
                throttle::limit,
            ))
            .route_layer(axum::middleware::from_fn_with_state(
                self.clone(),
                canvas_bucket::limit,
            ));
        Router::new()
            .route("/", get(pages::home))
            .route("/launch", get(auth::launch))
            .route("/frame", get(pages::frame))
            .route("/auth", get(auth::authenticate).post(auth::authenticate))
            .route("/jwks", get(auth::jwks))
            .route("/gradebook", get(pages::gradebook))
            .route("/_inspect/scores", get(pages::inspect_scores))
            .route(
                "/.well-known/openid-configuration",
                get(registration::openid_configuration),
            )
            .route("/register", post(registration::register))
            .merge(deep_linking::routes())
            .merge(services)
            .with_state(self.clone())
    }

    /// The platform's issuer: `base_url` without its trailing slash.
    pub fn issuer(&self) -> String {
        self.base().as_str().trim_end_matches('/').to_owned()
    }

    /// The OIDC authentication endpoint.
    pub fn auth_url(&self) -> Url {
        self.endpoint(&["auth"])
    }

    /// The OAuth 2 token endpoint; also the `aud` client assertions must carry.
    pub fn token_url(&self) -> Url {
        self.endpoint(&["token"])
    }

    /// The platform's key set.
    pub fn jwks_url(&self) -> Url {
        self.endpoint(&["jwks"])
    }

    /// The course home page.
    ///
    /// This is the issuer URL, without a trailing slash when the LMS is nested: axum's
    /// `Router::nest("/lms", …)` serves the nested `/` at `/lms` but not at `/lms/`.
    pub fn home_url(&self) -> Url {
        Url::parse(&self.issuer()).unwrap_or_else(|_| self.base().clone())
    }

    /// The gradebook page.
    pub fn gradebook_url(&self) -> Url {
        self.endpoint(&["gradebook"])
    }

    /// A page that launches the activity in an iframe and offers platform storage.
    pub fn frame_url(&self, user_id: &str, resource_id: &str) -> Url {
        let mut url = self.endpoint(&["frame"]);
        url.query_pairs_mut()
            .append_pair("user", user_id)
            .append_pair("resource", resource_id);
        url
    }

    /// The link a person clicks in the LMS to launch `resource_id` as `user_id`.
    pub fn launch_url(&self, user_id: &str, resource_id: &str) -> Url {
        let mut url = self.endpoint(&["launch"]);
        url.query_pairs_mut()
            .append_pair("user", user_id)
            .append_pair("resource", resource_id);
        url
    }

    /// The line items container of the course (AGS `lineitems`).
    pub fn line_items_url(&self) -> Url {
        self.endpoint(&["api", "lti", "courses", &self.inner.course.id, "line_items"])
    }

    /// One line item's URL, which is also its id on the wire.
    pub fn line_item_url(&self, line_item_id: &str) -> Url {
        let mut url = self.line_items_url();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(line_item_id);
        }
        url
    }

    /// The course's NRPS membership container.
    pub fn memberships_url(&self) -> Url {
        self.endpoint(&[
            "api",
            "lti",
            "courses",
            &self.inner.course.id,
            "names_and_roles",
        ])
    }

    /// The registration this LMS was set up with.
    pub fn tool(&self) -> &ToolRegistration {
        &self.inner.config.tool
    }

    /// The registration this LMS trusts now: the one made through Dynamic Registration, once
    /// there is one, else the one it was set up with.
    pub fn current_tool(&self) -> ToolRegistration {
        self.state()
            .registered_tool
            .clone()
            .unwrap_or_else(|| self.inner.config.tool.clone())
    }

    /// The tool registered through Dynamic Registration, if any.
    pub fn registered_tool(&self) -> Option<ToolRegistration> {
        self.state().registered_tool.clone()
    }

    /// The Dynamic Registration requests this LMS accepted, as received.
    pub fn registration_requests(&self) -> Vec<serde_json::Value> {
        self.state().registrations.clone()
    }

    /// Makes the registration endpoints behave like Moodle's or Canvas's.
    pub fn set_registration_style(&self, style: RegistrationStyle) {
        self.state().registration_style = style;
    }

    /// A single-use registration token, as an admin starting a Dynamic Registration gets.
    pub fn issue_registration_token(&self) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.state().registration_tokens.insert(token.clone());
        token
    }

    /// The platform's OpenID configuration URL.
    pub fn openid_configuration_url(&self) -> Url {
        self.endpoint(&[".well-known", "openid-configuration"])
    }

    /// What an admin's browser opens to start Dynamic Registration: the tool's registration
    /// URL with this LMS's `openid_configuration` and a fresh `registration_token`.
    pub fn dynamic_registration_url(&self, tool_registration_url: &Url) -> Url {
        let mut url = tool_registration_url.clone();
        url.query_pairs_mut()
            .append_pair(
                "openid_configuration",
                self.openid_configuration_url().as_str(),
            )
            .append_pair("registration_token", &self.issue_registration_token());
        url
    }

    /// The kid of the key id_tokens are signed with.
    pub fn platform_kid(&self) -> &str {
        self.inner.key.kid()
    }

    pub fn users(&self) -> Vec<SimUser> {
        self.inner.users.clone()
    }

    pub fn resources(&self) -> Vec<SimResource> {
        self.inner.resources.clone()
    }

    pub fn course(&self) -> SimCourse {
        self.inner.course.clone()
    }

    /// The current line items, including those tools created.
    pub fn line_items(&self) -> Vec<SimLineItem> {
        let state = self.state();
        state
            .line_items
            .values()
            .map(|li| self.line_item_view(li))
            .collect()
    }

    /// Every score the LMS accepted, in arrival order.
    pub fn scores(&self) -> Vec<RecordedScore> {
        self.state().scores.clone()
    }

    /// The current grade for each (line item, user) that has one, ordered by line item then
    /// user. Scores on deleted line items are not shown.
    pub fn gradebook(&self) -> Vec<GradebookEntry> {
        let state = self.state();
        state
            .current
            .iter()
            .filter_map(|((line_item, _), index)| {
                let li = state.line_items.get(line_item)?;
                let score = state.scores.get(*index)?;
                let result_score =
                    moodle::stored_result(self.inner.config.behaviour, score, li.score_maximum);
                Some(GradebookEntry {
                    line_item_id: li.id.to_string(),
                    line_item_label: li.label.clone(),
                    user_id: score.user_id.clone(),
                    score_given: score.score_given,
                    score_maximum: score.score_maximum,
                    result_score,
                    comment: score.comment.clone(),
                    activity_progress: score.activity_progress.clone(),
                    grading_progress: score.grading_progress.clone(),
                    timestamp: score.timestamp.clone(),
                })
            })
            .collect()
    }

    /// Fault injection switches.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// A snapshot of the request counters.
    pub fn stats(&self) -> Stats {
        self.stats_mut().clone()
    }

    fn base(&self) -> &Url {
        &self.inner.config.base_url
    }

    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base().clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn user(&self, id: &str) -> Option<&SimUser> {
        self.inner.users.iter().find(|u| u.id == id)
    }

    fn resource(&self, id: &str) -> Option<&SimResource> {
        self.inner.resources.iter().find(|r| r.id == id)
    }

    fn line_item_view(&self, li: &LineItem) -> SimLineItem {
        SimLineItem {
            id: li.id.to_string(),
            url: self.line_item_url(&li.id.to_string()),
            label: li.label.clone(),
            score_maximum: li.score_maximum,
            resource_link_id: li.resource_link_id.clone(),
            resource_id: li.resource_id.clone(),
            tag: li.tag.clone(),
            start_date_time: li.start_date_time.clone(),
            end_date_time: li.end_date_time.clone(),
        }
    }

    // Neither lock is ever held across an await, so a std mutex is enough; a poisoned lock
    // only means a test thread panicked, and the data is still usable for the others.
    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stats_mut(&self) -> MutexGuard<'_, Stats> {
        self.inner.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, update: impl FnOnce(&mut Stats)) {
        update(&mut self.stats_mut());
    }

    /// Counts a refusal and turns it into the answer.
    fn refuse(&self, refusal: respond::Refusal) -> axum::response::Response {
        *self.stats_mut().rejected.entry(refusal.reason).or_default() += 1;
        tracing::debug!(reason = ?refusal.reason, "simulated LMS refused a request");
        *refusal.response
    }

    /// Answers with the handler's response, or with its refusal, counted.
    fn answer(
        &self,
        result: Result<axum::response::Response, respond::Refusal>,
    ) -> axum::response::Response {
        result.unwrap_or_else(|refusal| self.refuse(refusal))
    }
}

/// Delays service answers by the injected latency.
async fn injected_latency(
    axum::extract::State(lms): axum::extract::State<SimulatedLms>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let latency = lms.faults().latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    next.run(request).await
}

/// The server task of a spawned LMS; dropping it stops the server.
#[derive(Debug)]
pub struct SpawnedLms {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SpawnedLms {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SpawnedLms {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The platform's clock.
fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A random, URL-safe secret of 256 bits.
fn random_secret() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}
