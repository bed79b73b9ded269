//! A simulated Google Classroom: Google's OAuth 2.0 endpoints for web server apps and the
//! Classroom API v1 methods lmsbridge uses, shaped by Google's discovery document.
//!
//! Every `/v1/…` request is matched against the discovery document ([`Discovery`]): an
//! unknown path is 404, an unknown query parameter or body field, a wrong type or enum value
//! is 400 `INVALID_ARGUMENT`, as Google answers. Tokens are checked the way Google checks
//! them (client secret, redirect URI, PKCE verifier, single-use codes, refresh tokens,
//! revocation, the method's scopes), and the rules that shape a Classroom integration are
//! enforced: only the Cloud project that created a courseWork may grade it
//! (`@ProjectPermissionDenied`), `draftGrade` and `assignedGrade` are separate, returning a
//! submission does not copy one into the other, list pages are bound to their request.
//!
//! Every API request is recorded ([`SimulatedClassroom::requests`]) so a test can check
//! afterwards that everything a client sent was valid.

mod api;
mod data;
mod discovery;
mod faults;
mod oauth;
mod pubsub;

pub use data::{
    AttachmentView, CLASSROOM_UI_PROJECT, ClassroomUser, CourseView, CourseWorkView, DOMAIN,
    RegistrationView, SubmissionView,
};
pub use discovery::{
    CLASSROOM_V1_JSON, DiscoveredMethod, Discovery, DiscoveryError, Location, Param, ParamKind,
    RequestInvalid, ValidatedRequest,
};
pub use faults::{ClassroomFault, ClassroomFaults, RetryAfter};
pub use pubsub::{GooglePushSigner, PushTokenClaims, SpawnedCerts};

use axum::Router;
use axum::routing::{any, get, post};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use url::Url;

/// An OAuth client registered in a Google Cloud project.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthClientRegistration {
    pub client_id: String,
    pub client_secret: String,
    /// The exact redirect URIs the client may use.
    pub redirect_uris: Vec<Url>,
    /// The Cloud project: courseWork it creates belongs to this project.
    pub project: String,
}

impl fmt::Debug for OAuthClientRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClientRegistration")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("redirect_uris", &self.redirect_uris)
            .field("project", &self.project)
            .finish()
    }
}

impl OAuthClientRegistration {
    /// A client of `project` with a random secret, allowed to redirect to `redirect_uri`.
    pub fn new(project: &str, redirect_uri: Url) -> Self {
        Self {
            client_id: format!(
                "{}-{}.apps.googleusercontent.com",
                project,
                &random_urlsafe()[..8]
            ),
            client_secret: format!("GOCSPX-{}", random_urlsafe()),
            redirect_uris: vec![redirect_uri],
            project: project.to_owned(),
        }
    }
}

/// How a simulated Classroom is set up.
#[derive(Debug, Clone)]
pub struct ClassroomConfig {
    /// Where the router is reachable; every endpoint URL is joined onto it.
    pub base_url: Url,
    /// Our OAuth client (more can be added with [`SimulatedClassroom::register_client`]).
    pub client: OAuthClientRegistration,
    pub access_token_ttl: Duration,
    /// A discovery document to load instead of the embedded copy.
    pub discovery_path: Option<PathBuf>,
}

/// What the consent screen does when a user reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Consent {
    /// The user grants every scope asked for.
    GrantAll,
    /// Granular consent: the user unticks these scopes.
    Withhold(Vec<String>),
    /// The user presses Cancel: `error=access_denied`.
    Deny,
    /// The Workspace admin has not allowed the app: `error=admin_policy_enforced`.
    AdminBlocked,
}

/// One authorization request as the fake saw it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorizationRecord {
    pub client_id: String,
    pub user_id: Option<String>,
    pub scopes: Vec<String>,
    pub access_type: Option<String>,
    pub prompt: Option<String>,
    pub include_granted_scopes: Option<String>,
    pub login_hint: Option<String>,
    pub code_challenge_method: Option<String>,
    /// Whether a refresh token will come with the code's exchange.
    pub refresh_token_promised: bool,
}

/// One API request as the fake received it, with the answer's status. Bearer tokens are not
/// kept, and token-like query values are replaced by `[redacted]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    /// The path as sent, percent-encoded.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<String>,
    /// The discovery method id, when the path matched one.
    pub method_id: Option<String>,
    pub status: u16,
    /// Why the discovery document refused it, if it did.
    pub invalid: Option<String>,
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClassroomStats {
    pub authorizations: u64,
    pub code_exchanges: u64,
    pub refreshes: u64,
    pub token_refusals: u64,
    pub revocations: u64,
    pub api_requests: u64,
    pub api_unauthorized: u64,
}

/// The endpoint URLs of a running fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassroomUrls {
    pub authorization: Url,
    pub token: Url,
    pub revocation: Url,
    pub userinfo: Url,
    pub api_base: Url,
}

/// Why a simulated Classroom could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClassroomError {
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error("base_url {0} cannot carry paths")]
    BaseUrl(Url),
}

/// A running simulated Classroom. Cheap to clone; every clone is the same Classroom.
#[derive(Clone)]
pub struct SimulatedClassroom {
    inner: Arc<Inner>,
}

impl fmt::Debug for SimulatedClassroom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatedClassroom")
            .field("base_url", &self.inner.config.base_url.as_str())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: ClassroomConfig,
    discovery: Arc<Discovery>,
    users: Vec<ClassroomUser>,
    faults: ClassroomFaults,
    state: Mutex<State>,
}

struct IssuedCode {
    client_id: String,
    user_id: String,
    redirect_uri: String,
    /// (method, challenge) when the request used PKCE.
    challenge: Option<(String, String)>,
    scopes: BTreeSet<String>,
    refresh: bool,
    expires_at: OffsetDateTime,
    used: bool,
}

struct GrantRec {
    client_id: String,
    user_id: String,
    scopes: BTreeSet<String>,
    revoked: bool,
}

struct IssuedAccess {
    grant: u64,
    expires_at: OffsetDateTime,
    generation: u64,
}

struct AddOnTokenRec {
    course_id: String,
    item_id: String,
    expires_at: OffsetDateTime,
}

/// Where a list continues: bound to the request it came from, as Google binds it.
struct PageCursor {
    fingerprint: String,
    offset: usize,
}

/// Everything that changes while the fake runs. Not `Debug`: its keys are token hashes.
struct State {
    signed_in: String,
    consent: Consent,
    clients: Vec<OAuthClientRegistration>,
    codes: HashMap<Vec<u8>, IssuedCode>,
    refresh_tokens: HashMap<Vec<u8>, u64>,
    access_tokens: HashMap<Vec<u8>, IssuedAccess>,
    grants: BTreeMap<u64, GrantRec>,
    /// Scopes each (client id, user id) consented to, for `include_granted_scopes` and for
    /// issuing a refresh token only at first consent.
    consented: HashMap<(String, String), BTreeSet<String>>,
    courses: BTreeMap<String, data::Course>,
    course_work: BTreeMap<String, data::CourseWork>,
    submissions: BTreeMap<String, data::Submission>,
    attachments: BTreeMap<String, data::Attachment>,
    add_on_tokens: HashMap<String, AddOnTokenRec>,
    registrations: Vec<data::RegistrationRec>,
    page_tokens: HashMap<String, PageCursor>,
    requests: Vec<RecordedRequest>,
    authorizations: Vec<AuthorizationRecord>,
    stats: ClassroomStats,
    allowed_uri_prefixes: Vec<String>,
    next_id: u64,
}

impl State {
    /// A fresh numeric id, as Classroom's are.
    fn id(&mut self, prefix: u64) -> String {
        self.next_id += 1;
        format!("{}", prefix * 1_000_000_000 + self.next_id)
    }
}

impl SimulatedClassroom {
    /// Creates the fake with the seed data.
    pub fn try_new(mut config: ClassroomConfig) -> Result<Self, ClassroomError> {
        if config.base_url.cannot_be_a_base() {
            return Err(ClassroomError::BaseUrl(config.base_url));
        }
        if !config.base_url.path().ends_with('/') {
            let path = format!("{}/", config.base_url.path());
            config.base_url.set_path(&path);
        }
        let discovery = match &config.discovery_path {
            Some(p) => Arc::new(Discovery::load(p)?),
            None => Discovery::classroom_v1(),
        };
        let courses = data::courses()
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let mut state = State {
            signed_in: data::ADA.to_owned(),
            consent: Consent::GrantAll,
            clients: vec![config.client.clone()],
            codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            grants: BTreeMap::new(),
            consented: HashMap::new(),
            courses,
            course_work: BTreeMap::new(),
            submissions: BTreeMap::new(),
            attachments: BTreeMap::new(),
            add_on_tokens: HashMap::new(),
            registrations: Vec::new(),
            page_tokens: HashMap::new(),
            requests: Vec::new(),
            authorizations: Vec::new(),
            stats: ClassroomStats::default(),
            allowed_uri_prefixes: Vec::new(),
            next_id: 0,
        };
        api::insert_course_work(
            &mut state,
            data::READING_LOG.to_owned(),
            data::ALGEBRA,
            "Reading log (made in Classroom)",
            Some(20.0),
            data::CLASSROOM_UI_PROJECT,
            data::ADA,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                discovery,
                users: data::users(),
                faults: ClassroomFaults::default(),
                state: Mutex::new(state),
            }),
        })
    }

    /// Binds 127.0.0.1 on a free port and serves the fake at its root, with our client
    /// registered for `http://127.0.0.1/google/callback`.
    pub async fn spawn() -> std::io::Result<(SimulatedClassroom, SpawnedClassroom)> {
        Self::spawn_with(|c| c).await
    }

    /// Like [`SimulatedClassroom::spawn`], with a chance to change the configuration first.
    /// `base_url` is set to the bound address whatever `configure` does.
    pub async fn spawn_with(
        configure: impl FnOnce(ClassroomConfig) -> ClassroomConfig,
    ) -> std::io::Result<(SimulatedClassroom, SpawnedClassroom)> {
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let base_url = Url::parse(&format!("http://{addr}/")).map_err(std::io::Error::other)?;
        let redirect =
            Url::parse("http://127.0.0.1/google/callback").map_err(std::io::Error::other)?;
        let mut config = configure(ClassroomConfig {
            base_url: base_url.clone(),
            client: OAuthClientRegistration::new("lmsbridge-test", redirect),
            access_token_ttl: Duration::from_secs(3600),
            discovery_path: None,
        });
        config.base_url = base_url;
        let fake = Self::try_new(config).map_err(std::io::Error::other)?;
        let router = fake.router();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!(error = %e, "simulated Classroom stopped");
            }
        });
        Ok((fake, SpawnedClassroom { addr, task }))
    }

    /// The routes, relative to `base_url`'s path.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/o/oauth2/v2/auth", get(oauth::authorize))
            .route("/token", post(oauth::token))
            .route("/revoke", post(oauth::revoke))
            .route("/oauth2/v3/userinfo", get(oauth::userinfo))
            .route("/v1/{*rest}", any(api::handle))
            .with_state(self.clone())
    }

    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.inner.config.base_url.clone();
        let joined = format!("{}{}", url.path(), path);
        url.set_path(&joined);
        url
    }

    pub fn base_url(&self) -> &Url {
        &self.inner.config.base_url
    }

    pub fn urls(&self) -> ClassroomUrls {
        ClassroomUrls {
            authorization: self.endpoint("o/oauth2/v2/auth"),
            token: self.endpoint("token"),
            revocation: self.endpoint("revoke"),
            userinfo: self.endpoint("oauth2/v3/userinfo"),
            api_base: self.base_url().clone(),
        }
    }

    /// Our OAuth client, secret included (tests configure the client under test with it).
    pub fn client(&self) -> OAuthClientRegistration {
        self.inner.config.client.clone()
    }

    /// Registers another OAuth client, e.g. of another Cloud project.
    pub fn register_client(&self, client: OAuthClientRegistration) {
        self.state().clients.push(client);
    }

    pub fn discovery(&self) -> &Discovery {
        &self.inner.discovery
    }

    pub fn users(&self) -> Vec<ClassroomUser> {
        self.inner.users.clone()
    }

    pub fn user(&self, id: &str) -> Option<ClassroomUser> {
        self.inner.users.iter().find(|u| u.id == id).cloned()
    }

    /// Ada Lovelace, who teaches Algebra 1 (with Grace), Geometry (archived) and Statistics.
    pub fn teacher(&self) -> ClassroomUser {
        self.user(data::ADA).expect("seeded")
    }

    /// Grace Hopper, co-teacher of Algebra 1 and teacher of Chemistry.
    pub fn co_teacher(&self) -> ClassroomUser {
        self.user(data::GRACE).expect("seeded")
    }

    /// The seven students of Algebra 1, in id order.
    pub fn students(&self) -> Vec<ClassroomUser> {
        self.inner
            .users
            .iter()
            .filter(|u| u.id.starts_with('2'))
            .cloned()
            .collect()
    }

    /// Algebra 1's id.
    pub fn algebra_course_id(&self) -> String {
        data::ALGEBRA.to_owned()
    }

    /// The seeded courseWork of Algebra 1 made in the Classroom web app (another project).
    pub fn foreign_course_work_id(&self) -> String {
        data::READING_LOG.to_owned()
    }

    pub fn courses(&self) -> Vec<CourseView> {
        self.state()
            .courses
            .values()
            .map(|c| CourseView {
                id: c.id.clone(),
                name: c.name.clone(),
                state: c.state.clone(),
                owner_id: c.owner_id.clone(),
                teachers: c.teachers.clone(),
                students: c.students.clone(),
            })
            .collect()
    }

    /// Adds a courseWork created by `project`'s client (published, submissions for every
    /// student), as if another integration or the Classroom UI made it.
    pub fn seed_course_work(
        &self,
        course_id: &str,
        title: &str,
        max_points: Option<f64>,
        project: &str,
    ) -> String {
        let mut state = self.state();
        let id = state.id(4);
        let creator = state
            .courses
            .get(course_id)
            .map(|c| c.owner_id.clone())
            .unwrap_or_default();
        api::insert_course_work(
            &mut state,
            id.clone(),
            course_id,
            title,
            max_points,
            project,
            &creator,
        );
        id
    }

    pub fn course_work(&self, id: &str) -> Option<CourseWorkView> {
        self.state().course_work.get(id).map(course_work_view)
    }

    /// Every courseWork of a course, seeded or created.
    pub fn course_works(&self, course_id: &str) -> Vec<CourseWorkView> {
        self.state()
            .course_work
            .values()
            .filter(|w| w.course_id == course_id)
            .map(course_work_view)
            .collect()
    }

    /// The submissions of a courseWork, by student id.
    pub fn submissions(&self, course_work_id: &str) -> Vec<SubmissionView> {
        let mut v: Vec<SubmissionView> = self
            .state()
            .submissions
            .values()
            .filter(|s| s.course_work_id == course_work_id)
            .map(|s| SubmissionView {
                id: s.id.clone(),
                course_work_id: s.course_work_id.clone(),
                user_id: s.user_id.clone(),
                state: s.state.clone(),
                draft_grade: s.draft_grade,
                assigned_grade: s.assigned_grade,
            })
            .collect();
        v.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        v
    }

    /// One student's submission of a courseWork.
    pub fn submission_of(&self, course_work_id: &str, user_id: &str) -> Option<SubmissionView> {
        self.submissions(course_work_id)
            .into_iter()
            .find(|s| s.user_id == user_id)
    }

    pub fn attachments(&self) -> Vec<AttachmentView> {
        self.state()
            .attachments
            .values()
            .map(|a| AttachmentView {
                id: a.id.clone(),
                course_id: a.course_id.clone(),
                item_id: a.item_id.clone(),
                title: a.title.clone(),
                project: a.project.clone(),
                max_points: a.max_points,
                grade_sync_enabled: a.grade_sync_enabled,
                points: a.points.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            })
            .collect()
    }

    pub fn registrations(&self) -> Vec<RegistrationView> {
        self.state()
            .registrations
            .iter()
            .map(|r| RegistrationView {
                id: r.id.clone(),
                feed_type: r.feed_type.clone(),
                course_id: r.course_id.clone(),
                topic: r.topic.clone(),
                user_id: r.user_id.clone(),
                project: r.project.clone(),
                expiry_time: r.expiry_time.clone(),
            })
            .collect()
    }

    /// The account the browser is signed in to when no `login_hint` names another.
    pub fn sign_in_as(&self, user_id: &str) {
        self.state().signed_in = user_id.to_owned();
    }

    /// What the consent screen does from now on.
    pub fn set_consent(&self, consent: Consent) {
        self.state().consent = consent;
    }

    /// Only attachment URIs starting with one of these are accepted (the add-on listing's
    /// allowed URI prefixes). Empty: any http(s) URI.
    pub fn set_allowed_uri_prefixes(&self, prefixes: &[&str]) {
        self.state().allowed_uri_prefixes = prefixes.iter().map(|p| (*p).to_owned()).collect();
    }

    /// The `addOnToken` Classroom appends when a teacher opens the add-on on a post; valid
    /// for an hour, for that post only.
    pub fn issue_add_on_token(&self, course_id: &str, item_id: &str) -> String {
        let token = random_urlsafe();
        self.state().add_on_tokens.insert(
            token.clone(),
            AddOnTokenRec {
                course_id: course_id.to_owned(),
                item_id: item_id.to_owned(),
                expires_at: now() + time::Duration::hours(1),
            },
        );
        token
    }

    /// Every API request received, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// The API requests that did not match Google's discovery document, in order: a test
    /// of the client under test expects none.
    pub fn invalid_requests(&self) -> Vec<RecordedRequest> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.invalid.is_some())
            .cloned()
            .collect()
    }

    /// Every authorization request received, in order.
    pub fn authorizations(&self) -> Vec<AuthorizationRecord> {
        self.state().authorizations.clone()
    }

    pub fn stats(&self) -> ClassroomStats {
        self.state().stats.clone()
    }

    pub fn faults(&self) -> &ClassroomFaults {
        &self.inner.faults
    }

    // A std mutex: it is never held across an await.
    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn find_user(&self, reference: &str) -> Option<&ClassroomUser> {
        self.inner
            .users
            .iter()
            .find(|u| u.id == reference || u.email.eq_ignore_ascii_case(reference))
    }
}

/// The server task of a spawned fake; dropping it stops the server.
#[derive(Debug)]
pub struct SpawnedClassroom {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SpawnedClassroom {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SpawnedClassroom {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn course_work_view(w: &data::CourseWork) -> CourseWorkView {
    CourseWorkView {
        id: w.id.clone(),
        course_id: w.course_id.clone(),
        title: w.title.clone(),
        state: w.state.clone(),
        work_type: w.work_type.clone(),
        max_points: w.max_points,
        project: w.project.clone(),
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// 256 random bits, base64url.
fn random_urlsafe() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// SHA-256 of a secret: the form in which tokens and codes are stored and looked up.
fn hash(secret: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}
