//! Google Classroom Add-ons: the iframes Classroom opens (attachment discovery, teacher
//! view, student view, student work review, link upgrade), Google sign-in for them, and
//! attachment creation.
//!
//! Every iframe URL names the tenant's Google platform (`/google/addons/{platform}/…`).
//! Classroom appends `courseId`, `itemId`, `itemType`, `addOnToken`, `attachmentId`,
//! `submissionId`, `login_hint` and, for link upgrade, `urlToUpgrade`. None of those is
//! trusted for who the user is: on every open the user is signed in with Google (the
//! `login_hint` flow: authorization code with PKCE, `state` single-use and bound to this
//! browser by a cookie) and `getAddOnContext` is asked, with the user's own token, whether
//! they are a teacher or a student of that post. The product then gets the open through the
//! same one-time code as an LTI launch.
//!
//! Teachers sign in with offline access: the refresh token becomes their stored grant,
//! which later passes the attachment's grades back after they closed the page.

use super::html::escape;
use crate::App;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use classroom::model::{AddOnContext, AddOnRole as ClassroomRole, NewAddOnAttachment};
use classroom::oauth::AuthorizationRequest;
use classroom::{
    AccessToken, AddOnToken, ApiError, AttachmentId, ClassroomClient, ClientId, ClientSecret,
    CourseId, CourseWorkId, Credentials, OAuthClient, OAuthConfig, OAuthError,
};
use domain::{Actor, PlatformId, PlatformKind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use store::crypto::{MasterKey, constant_time_eq, random_token, sha256_hex};
use store::google::{NewGoogleGrant, NewGoogleOAuthState, SecretString};
use store::google_addons::{
    AddOnAttachmentRecord, AddOnOpen, AddOnRole, NewAddOnAttachment as StoredAttachment,
};
use store::{CatalogItem, LaunchPerson, StoreError, TenantScope, now_micros};
use url::Url;

/// Only Classroom may frame these pages.
pub(crate) const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors https://classroom.google.com; base-uri 'none'";
const CLASSROOM_ORIGIN: &str = "https://classroom.google.com";
const SESSION_COOKIE_PREFIX: &str = "lmsb_gaddon_";
const STATE_COOKIE_PREFIX: &str = "lmsb_gastate_";
const RETURN_CONTEXT: &str = "lmsbridge-google-addon-return";
const SESSION_CONTEXT: &str = "lmsbridge-google-addon-session";
const PICK_CONTEXT: &str = "lmsbridge-google-addon-pick";
/// Sealed values longer than this are not ours.
const MAX_SEALED_LEN: usize = 8192;
/// How long a discovery page's pick stays usable.
const PICK_TTL_MICROS: i64 = 30 * 60 * 1_000_000;

/// The routes, merged into the main router.
pub fn routes() -> Router<App> {
    use axum::routing::{get, post};
    Router::new()
        .route("/google/addons/callback", get(callback))
        .route("/google/addons/{platform}/signin", get(sign_in))
        .route("/google/addons/{platform}/attach", post(attach))
        .route("/google/addons/{platform}/{view}", get(open))
}

/// Which iframe Classroom opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    Discovery,
    Teacher,
    Student,
    Review,
    Upgrade,
}

impl View {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "discovery" => Self::Discovery,
            "teacher" => Self::Teacher,
            "student" => Self::Student,
            "review" => Self::Review,
            "upgrade" => Self::Upgrade,
            _ => return None,
        })
    }

    fn path(self) -> &'static str {
        match self {
            Self::Discovery => "discovery",
            Self::Teacher => "teacher",
            Self::Student => "student",
            Self::Review => "review",
            Self::Upgrade => "upgrade",
        }
    }

    /// The name the product sees.
    fn launch_name(self) -> &'static str {
        match self {
            Self::Discovery => "attachment_discovery",
            Self::Teacher => "teacher_view",
            Self::Student => "student_view",
            Self::Review => "student_work_review",
            Self::Upgrade => "link_upgrade",
        }
    }

    /// Views only a teacher of the post may use.
    fn for_teachers(self) -> bool {
        !matches!(self, Self::Student)
    }
}

/// The URL of one view for a platform, as given to Classroom.
pub fn view_url(app: &App, platform: PlatformId, view: View) -> Url {
    app.settings()
        .public(&format!("google/addons/{platform}/{}", view.path()))
}

// ----- failures -----

/// Why an add-on page cannot be shown: one sentence for the person, the detail in the log
/// under a correlation id.
#[derive(Debug)]
pub(crate) enum AddOnFailure {
    BadRequest(&'static str, &'static str),
    NotFound(&'static str, &'static str),
    Forbidden(&'static str, &'static str),
    /// Classroom refused a call; the sentence says what it means for the user.
    Classroom(&'static str, ApiError),
    SignIn(OAuthError),
    Internal(anyhow::Error),
}

impl From<StoreError> for AddOnFailure {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.into())
    }
}

impl IntoResponse for AddOnFailure {
    fn into_response(self) -> Response {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (status, code, sentence): (StatusCode, &str, &str) = match &self {
            Self::BadRequest(code, s) => (StatusCode::BAD_REQUEST, code, s),
            Self::NotFound(code, s) => (StatusCode::NOT_FOUND, code, s),
            Self::Forbidden(code, s) => (StatusCode::FORBIDDEN, code, s),
            Self::Classroom(s, e) => (
                match e {
                    ApiError::RateLimited { .. }
                    | ApiError::Transient { .. }
                    | ApiError::Transport { .. } => StatusCode::BAD_GATEWAY,
                    _ => StatusCode::FORBIDDEN,
                },
                e.error_type().unwrap_or("classroom_refused"),
                s,
            ),
            Self::SignIn(OAuthError::ConsentDenied) => (
                StatusCode::FORBIDDEN,
                "consent_denied",
                "Google sign-in was cancelled, so the add-on cannot open.",
            ),
            Self::SignIn(OAuthError::AdminPolicyEnforced) => (
                StatusCode::FORBIDDEN,
                "admin_policy_enforced",
                "Your school's Google Workspace administrator has not allowed this add-on yet.",
            ),
            Self::SignIn(_) => (
                StatusCode::BAD_GATEWAY,
                "google_sign_in_failed",
                "Signing in with Google did not work; please try again.",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Something went wrong on our side.",
            ),
        };
        match &self {
            Self::Internal(e) => {
                tracing::error!(correlation_id = %id, code, error = %format!("{e:#}"), "google add-on page failed");
            }
            Self::Classroom(_, e) => {
                tracing::warn!(correlation_id = %id, code, detail = %e, "Classroom refused an add-on call");
            }
            Self::SignIn(e) => {
                tracing::warn!(correlation_id = %id, code, detail = %e, "Google sign-in for an add-on failed");
            }
            _ => tracing::warn!(correlation_id = %id, code, "google add-on page refused"),
        }
        let body = format!(
            "<h1>The add-on could not open</h1><p>{}</p><p class=\"note\">If this keeps happening, give your administrator this information:</p>\
             <dl><dt>Check that failed</dt><dd>{}</dd><dt>Reference</dt><dd>{}</dd></dl>",
            escape(sentence),
            escape(code),
            escape(&id)
        );
        framed_page(status, "Add-on error", &body)
    }
}

/// A page Classroom may frame. `body` must already be escaped.
fn framed_page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:42rem;margin:1.5rem auto;padding:0 1rem;color:#1d2733;line-height:1.5}}\
         h1{{font-size:1.3rem}}dt{{font-weight:600}}dd{{margin:0 0 .5rem 1rem;word-break:break-all}}.note{{color:#5a6675;font-size:.9rem}}\
         label{{display:block;margin:.4rem 0}}button,.button{{font:inherit;padding:.4rem 1rem}}</style></head><body>{body}</body></html>",
        escape(title)
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}

// ----- sealed values -----

fn seal<T: Serialize>(master: &MasterKey, context: &str, value: &T) -> anyhow::Result<String> {
    let json = serde_json::to_vec(value)?;
    Ok(URL_SAFE_NO_PAD.encode(master.seal(&json, context)?))
}

fn open_sealed<T: DeserializeOwned>(master: &MasterKey, context: &str, value: &str) -> Option<T> {
    if value.len() > MAX_SEALED_LEN {
        return None;
    }
    let sealed = URL_SAFE_NO_PAD.decode(value).ok()?;
    let json = master.open(&sealed, context).ok()?;
    serde_json::from_slice(&json).ok()
}

/// Where a sign-in returns to: the view and the query Classroom opened it with.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SignInReturn {
    platform_id: PlatformId,
    view: View,
    query: Vec<(String, String)>,
    login_hint: Option<String>,
    /// Ask Google for consent again (it issues a refresh token only then).
    consent: bool,
    expires_at: i64,
}

/// A signed-in user, sealed into a cookie: who they are and their short-lived token.
#[derive(Clone, Serialize, Deserialize)]
struct Session {
    platform_id: PlatformId,
    sub: String,
    email: Option<String>,
    name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    access_token: String,
    expires_at: i64,
    /// A teacher view's offline grant, kept here until Classroom confirms the user is a
    /// teacher: a student who signs in on a teacher view leaves no grant behind.
    #[serde(default)]
    pending_grant: Option<PendingGrant>,
}

#[derive(Clone, Serialize, Deserialize)]
struct PendingGrant {
    refresh_token: String,
    scopes: Vec<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("platform_id", &self.platform_id)
            .field("sub", &self.sub)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Whether this session is the account Classroom's `login_hint` names.
    fn matches_hint(&self, hint: Option<&str>) -> bool {
        hint.is_none_or(|h| {
            h == self.sub
                || self
                    .email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(h))
        })
    }

    fn person(&self) -> LaunchPerson {
        LaunchPerson {
            platform_user_id: self.sub.clone(),
            name: self.name.clone(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            email: self.email.clone(),
        }
    }

    fn credentials(&self) -> Credentials {
        Credentials::Bearer(AccessToken::new(self.access_token.clone()))
    }
}

/// What the discovery page's form carries back, sealed so it cannot be edited or replayed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pick {
    platform_id: PlatformId,
    sub: String,
    course_id: String,
    item_id: String,
    item_type: String,
    add_on_token: Option<String>,
    jti: String,
    expires_at: i64,
}

// ----- cookies -----

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Cookie attributes: the iframe is third-party inside Classroom, so `SameSite=None;
/// Secure` where the public URL is https; plain-http development setups get `Lax`.
fn cookie(app: &App, name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
    let secure = app.settings().public_url.scheme() == "https";
    let attrs = if secure {
        "SameSite=None; Secure"
    } else {
        "SameSite=Lax"
    };
    let path = app.settings().public("google/addons/");
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={}; Max-Age={max_age}; HttpOnly; {attrs}",
        path.path()
    ))
    .ok()
}

fn session_cookie_name(platform: PlatformId) -> String {
    format!(
        "{SESSION_COOKIE_PREFIX}{}",
        &platform.as_uuid().simple().to_string()[..12]
    )
}

fn session(app: &App, headers: &HeaderMap, platform: PlatformId) -> Option<Session> {
    let raw = cookie_value(headers, &session_cookie_name(platform))?;
    let s: Session = open_sealed(&app.inner().master, SESSION_CONTEXT, raw)?;
    // A minute of margin: a token about to lapse would fail mid-page.
    (s.platform_id == platform && s.expires_at > now_micros() + 60_000_000).then_some(s)
}

// ----- the tenant's Google client -----

struct Platform {
    scope: TenantScope,
    id: PlatformId,
}

async fn platform(app: &App, raw: &str) -> Result<Platform, AddOnFailure> {
    let unknown = AddOnFailure::NotFound(
        "platform_unknown",
        "This add-on address does not belong to a Google Classroom set up in lmsbridge.",
    );
    let Ok(id) = raw.parse::<PlatformId>() else {
        return Err(unknown);
    };
    let Some(reg) = app.store().platform_registration(id).await? else {
        return Err(unknown);
    };
    if reg.platform.kind != PlatformKind::GoogleClassroom {
        return Err(unknown);
    }
    if !reg.platform.enabled {
        return Err(AddOnFailure::Forbidden(
            "platform_disabled",
            "An administrator has turned this Google Classroom connection off.",
        ));
    }
    Ok(Platform {
        scope: reg.scope,
        id,
    })
}

/// Our OAuth client for the add-on sign-in: the tenant's client id and secret with the
/// add-on callback as redirect URI (registered beside the connect callback).
async fn sign_in_client(app: &App, p: &Platform) -> Result<OAuthClient, AddOnFailure> {
    let client = app
        .store()
        .tenant(&p.scope)
        .google_client(p.id, &app.inner().master)
        .await?
        .ok_or(AddOnFailure::NotFound(
            "google_not_configured",
            "Google Classroom is not set up for this add-on yet.",
        ))?;
    Ok(OAuthClient::new(
        app.inner().http.clone(),
        OAuthConfig {
            client_id: ClientId::new(client.platform.client_id.clone()),
            client_secret: ClientSecret::new(client.client_secret.secret()),
            redirect_uri: app.settings().public("google/addons/callback"),
            endpoints: app.inner().google.endpoints().clone(),
        },
    ))
}

async fn api_client(app: &App, p: &Platform) -> Result<ClassroomClient, AddOnFailure> {
    let tenant = app.store().tenant(&p.scope);
    app.inner()
        .google
        .client(&tenant, p.id)
        .await
        .map_err(|e| match e {
            crate::google::GoogleSetupError::NotConfigured => AddOnFailure::NotFound(
                "google_not_configured",
                "Google Classroom is not set up for this add-on yet.",
            ),
            crate::google::GoogleSetupError::Store(e) => e.into(),
        })
}

/// The scopes a view signs in with: teachers get offline access to add-ons (and push
/// registrations when push is configured), students only what `getAddOnContext` needs.
fn scopes_for(app: &App, view: View) -> Vec<&'static str> {
    let mut scopes: Vec<&'static str> = classroom::scopes::SIGN_IN.to_vec();
    if view.for_teachers() {
        scopes.push(classroom::scopes::ADDONS_TEACHER);
        if app.settings().google_pubsub_topic.is_some() {
            scopes.push(classroom::scopes::PUSH_NOTIFICATIONS);
        }
    } else {
        scopes.push(classroom::scopes::ADDONS_STUDENT);
    }
    scopes
}

// ----- the query Classroom sends -----

/// Classroom's iframe parameters. Each is read once; a parameter sent twice is refused.
#[derive(Debug, Clone, Default)]
struct AddOnQuery {
    raw: Vec<(String, String)>,
    course_id: Option<String>,
    item_id: Option<String>,
    item_type: Option<String>,
    add_on_token: Option<String>,
    attachment_id: Option<String>,
    submission_id: Option<String>,
    login_hint: Option<String>,
    url_to_upgrade: Option<String>,
}

impl AddOnQuery {
    fn parse(raw: Option<&str>) -> Result<Self, AddOnFailure> {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let mut q = Self::default();
        for (k, v) in &pairs {
            let slot = match k.as_str() {
                "courseId" => &mut q.course_id,
                "itemId" => &mut q.item_id,
                "itemType" => &mut q.item_type,
                "addOnToken" => &mut q.add_on_token,
                "attachmentId" => &mut q.attachment_id,
                "submissionId" => &mut q.submission_id,
                "login_hint" => &mut q.login_hint,
                "urlToUpgrade" => &mut q.url_to_upgrade,
                _ => continue,
            };
            if v.len() > 4096 || slot.replace(v.clone()).is_some() {
                return Err(AddOnFailure::BadRequest(
                    "parameter_repeated",
                    "Classroom opened the add-on with a malformed address.",
                ));
            }
        }
        q.raw = pairs;
        Ok(q)
    }

    fn required(&self, view: View) -> Result<(), AddOnFailure> {
        let missing = self.course_id.as_deref().is_none_or(str::is_empty)
            || self.item_id.as_deref().is_none_or(str::is_empty)
            || (matches!(view, View::Teacher | View::Student | View::Review)
                && self.attachment_id.as_deref().is_none_or(str::is_empty))
            || (view == View::Review && self.submission_id.as_deref().is_none_or(str::is_empty))
            || (view == View::Upgrade && self.url_to_upgrade.as_deref().is_none_or(str::is_empty));
        if missing {
            return Err(AddOnFailure::BadRequest(
                "parameter_missing",
                "Classroom opened the add-on without the course or post it is for.",
            ));
        }
        // getAddOnContext and attachments exist on courseWork in the client; materials and
        // announcements are not offered.
        if self.item_type.as_deref().is_some_and(|t| t != "courseWork") {
            return Err(AddOnFailure::BadRequest(
                "item_type_unsupported",
                "This add-on can be attached to assignments only.",
            ));
        }
        Ok(())
    }

    fn course(&self) -> CourseId {
        CourseId::new(self.course_id.clone().unwrap_or_default())
    }

    fn item(&self) -> CourseWorkId {
        CourseWorkId::new(self.item_id.clone().unwrap_or_default())
    }

    fn token(&self) -> Option<AddOnToken> {
        self.add_on_token.clone().map(AddOnToken::new)
    }
}

// ----- the iframes -----

/// `GET /google/addons/{platform}/{view}`: an iframe open.
pub async fn open(
    State(app): State<App>,
    Path((platform_raw, view_raw)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AddOnFailure> {
    let view = View::parse(&view_raw).ok_or(AddOnFailure::NotFound(
        "view_unknown",
        "This add-on page does not exist.",
    ))?;
    let p = platform(&app, &platform_raw).await?;
    let q = AddOnQuery::parse(raw.as_deref())?;
    q.required(view)?;
    let Some(mut s) =
        session(&app, &headers, p.id).filter(|s| s.matches_hint(q.login_hint.as_deref()))
    else {
        return sign_in_page(&app, &p, view, &q, false);
    };
    let client = api_client(&app, &p).await?;
    let attachment = match &q.attachment_id {
        Some(a) => Some(
            app.store()
                .tenant(&p.scope)
                .add_on_attachment(p.id, a)
                .await?
                .ok_or(AddOnFailure::NotFound(
                    "attachment_unknown",
                    "This attachment was not made by this add-on.",
                ))?,
        ),
        None => None,
    };
    let context = match confirm(&client, &s, &q).await {
        Ok(c) => c,
        // The short-lived token lapsed or was revoked: sign in again.
        Err(ApiError::TokenExpired { .. }) => return sign_in_page(&app, &p, view, &q, false),
        Err(e) => {
            return Err(AddOnFailure::Classroom(
                "Classroom did not confirm that you may open this add-on on this post.",
                e,
            ));
        }
    };
    let role = context.role().ok_or(AddOnFailure::Forbidden(
        "no_role",
        "Classroom says you are neither a teacher nor a student of this post.",
    ))?;
    if view.for_teachers() && role != ClassroomRole::Teacher {
        tracing::warn!(view = view.path(), platform = %p.id, "a student opened a teacher view");
        return Err(AddOnFailure::Forbidden(
            "teacher_only",
            "This page is for the course's teachers, and Classroom says you are a student here.",
        ));
    }
    let renewed = match role {
        ClassroomRole::Teacher => keep_pending_grant(&app, &p, &mut s).await?,
        ClassroomRole::Student { .. } => None,
    };
    let mut resp = match view {
        View::Discovery => discovery_page(&app, &p, &s, &q).await,
        View::Upgrade => upgrade(&app, &p, &client, &s, &q).await,
        View::Teacher | View::Student | View::Review => {
            let (role, submission) = match role {
                ClassroomRole::Teacher => (AddOnRole::Teacher, q.submission_id.clone()),
                ClassroomRole::Student { submission_id } => (
                    AddOnRole::Student,
                    submission_id.map(|s| s.as_str().to_owned()),
                ),
            };
            hand_off(&app, &p, &s, &q, view, role, attachment, submission).await
        }
    }?;
    if let Some(c) = renewed {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// Stores the offline grant a confirmed teacher's sign-in brought, and answers the session
/// cookie without it.
async fn keep_pending_grant(
    app: &App,
    p: &Platform,
    s: &mut Session,
) -> Result<Option<HeaderValue>, AddOnFailure> {
    let Some(pending) = s.pending_grant.take() else {
        return Ok(None);
    };
    app.store()
        .tenant(&p.scope)
        .save_google_grant(
            p.id,
            &NewGoogleGrant {
                google_sub: s.sub.clone(),
                email: s.email.clone(),
                name: s.name.clone(),
                given_name: s.given_name.clone(),
                family_name: s.family_name.clone(),
                scopes: pending.scopes,
                refresh_token: Some(SecretString::new(pending.refresh_token)),
            },
            &app.inner().master,
            &teacher_actor(s),
        )
        .await?;
    Ok(session_cookie(app, s))
}

fn session_cookie(app: &App, s: &Session) -> Option<HeaderValue> {
    let max_age = (s.expires_at - now_micros()) / 1_000_000;
    let sealed = seal(&app.inner().master, SESSION_CONTEXT, s).ok()?;
    cookie(
        app,
        &session_cookie_name(s.platform_id),
        &sealed,
        max_age.max(0),
    )
}

/// `getAddOnContext` with the user's own token: Classroom's word on their role.
async fn confirm(
    client: &ClassroomClient,
    s: &Session,
    q: &AddOnQuery,
) -> Result<AddOnContext, ApiError> {
    let attachment = q.attachment_id.clone().map(AttachmentId::new);
    client
        .get_add_on_context(
            &s.credentials(),
            &q.course(),
            &q.item(),
            q.token().as_ref(),
            attachment.as_ref(),
        )
        .await
}

fn sign_in_page(
    app: &App,
    p: &Platform,
    view: View,
    q: &AddOnQuery,
    consent: bool,
) -> Result<Response, AddOnFailure> {
    let back = SignInReturn {
        platform_id: p.id,
        view,
        query: q.raw.clone(),
        login_hint: q.login_hint.clone(),
        consent,
        expires_at: now_micros() + app.settings().login_state_ttl_secs * 1_000_000,
    };
    let mut url = app
        .settings()
        .public(&format!("google/addons/{}/signin", p.id));
    url.query_pairs_mut().append_pair(
        "t",
        &seal(&app.inner().master, RETURN_CONTEXT, &back).map_err(AddOnFailure::Internal)?,
    );
    let href = escape(url.as_str());
    // Google's sign-in page cannot be framed: it opens in a popup, which reloads this
    // iframe when done; without JavaScript the link signs in in a new window.
    let body = format!(
        "<h1>Sign in to continue</h1><p>The add-on needs to know which Google account is using it.</p>\
         <p><a class=\"button\" id=\"signin\" href=\"{href}\" target=\"_blank\" rel=\"opener\">Sign in with Google</a></p>\
         <script>document.getElementById('signin').addEventListener('click',function(e){{e.preventDefault();\
         window.open(this.href,'lmsbridge_signin','width=520,height=640');}});</script>"
    );
    Ok(framed_page(StatusCode::OK, "Sign in", &body))
}

/// Records the open and hands it to the product with a one-time code.
#[allow(clippy::too_many_arguments)]
async fn hand_off(
    app: &App,
    p: &Platform,
    s: &Session,
    q: &AddOnQuery,
    view: View,
    role: AddOnRole,
    attachment: Option<AddOnAttachmentRecord>,
    submission: Option<String>,
) -> Result<Response, AddOnFailure> {
    let code = random_token(32);
    let tenant = app.store().tenant(&p.scope);
    let open = AddOnOpen {
        platform_id: p.id,
        view: view.launch_name().to_owned(),
        person: s.person(),
        role,
        course_id: q.course_id.clone().unwrap_or_default(),
        course_title: None,
        item_id: q.item_id.clone().unwrap_or_default(),
        item_type: q.item_type.clone().unwrap_or_else(|| "courseWork".into()),
        attachment,
        submission_id: submission,
        reviewed_user_id: None,
        extras: serde_json::json!({"platform_kind": "google_classroom"}),
        handoff_code_hash: sha256_hex(code.as_bytes()),
        handoff_expires_at: now_micros() + app.settings().handoff_ttl_secs * 1_000_000,
    };
    let recorded = tenant.record_add_on_open(&open).await?;
    tracing::info!(launch = %recorded.launch_id, platform = %p.id, view = view.path(), role = ?role, "google add-on open accepted");
    match tenant.tenant().await?.launch_url {
        Some(mut product) => {
            product.query_pairs_mut().append_pair("code", &code);
            let mut resp = Redirect::to(product.as_str()).into_response();
            resp.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            Ok(resp)
        }
        None => {
            let who = s.email.as_deref().unwrap_or(&s.sub);
            let body = format!(
                "<h1>Add-on open received</h1><p class=\"note\">lmsbridge confirmed this open with Classroom. Set a launch URL on the tenant to hand it to your product.</p>\
                 <dl><dt>User</dt><dd>{}</dd><dt>Role</dt><dd>{}</dd><dt>Course</dt><dd>{}</dd><dt>Launch id</dt><dd>{}</dd></dl>",
                escape(who),
                escape(match role {
                    AddOnRole::Teacher => "teacher",
                    AddOnRole::Student => "student",
                }),
                escape(&open.course_id),
                escape(&recorded.launch_id.to_string())
            );
            Ok(framed_page(StatusCode::OK, "Add-on open", &body))
        }
    }
}

/// Attachment discovery: the tenant's catalog to pick from.
async fn discovery_page(
    app: &App,
    p: &Platform,
    s: &Session,
    q: &AddOnQuery,
) -> Result<Response, AddOnFailure> {
    let items = app.store().tenant(&p.scope).catalog_items(false).await?;
    let pick = Pick {
        platform_id: p.id,
        sub: s.sub.clone(),
        course_id: q.course_id.clone().unwrap_or_default(),
        item_id: q.item_id.clone().unwrap_or_default(),
        item_type: q.item_type.clone().unwrap_or_else(|| "courseWork".into()),
        add_on_token: q.add_on_token.clone(),
        jti: random_token(16),
        expires_at: now_micros() + PICK_TTL_MICROS,
    };
    let token = seal(&app.inner().master, PICK_CONTEXT, &pick).map_err(AddOnFailure::Internal)?;
    let action = app
        .settings()
        .public(&format!("google/addons/{}/attach", p.id));
    let mut body = String::from("<h1>Add content from the catalog</h1>");
    if items.is_empty() {
        body.push_str(
            "<p>The catalog is empty: the product has not published any content yet.</p>",
        );
        return Ok(framed_page(StatusCode::OK, "Add content", &body));
    }
    body.push_str(&format!(
        "<form id=\"addon-pick\" method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"pick\" value=\"{}\">",
        escape(action.as_str()),
        escape(&token)
    ));
    for (i, item) in items.iter().enumerate() {
        let graded = match item.score_maximum {
            Some(m) if m > 0.0 => format!(" (graded out of {})", points(m)),
            _ => String::new(),
        };
        body.push_str(&format!(
            "<label><input type=\"radio\" name=\"item\" value=\"{}\"{}> {}{}</label>",
            escape(&item.id.to_string()),
            if i == 0 { " checked" } else { "" },
            escape(&item.title),
            escape(&graded)
        ));
    }
    body.push_str("<p><button type=\"submit\">Attach</button></p></form>");
    Ok(framed_page(StatusCode::OK, "Add content", &body))
}

/// Classroom's `maxPoints` is a whole number; a catalog maximum is rounded up to one.
fn points(m: f64) -> u32 {
    if m.is_finite() && m > 0.0 {
        // Bounded by the check and the clamp, so the cast cannot truncate surprisingly.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let p = m.ceil().min(f64::from(u32::MAX)) as u32;
        p.max(1)
    } else {
        0
    }
}

#[derive(Debug, Deserialize)]
pub struct AttachForm {
    pick: Option<String>,
    item: Option<String>,
}

/// `POST /google/addons/{platform}/attach`: the teacher picked an item.
pub async fn attach(
    State(app): State<App>,
    Path(platform_raw): Path<String>,
    headers: HeaderMap,
    Form(form): Form<AttachForm>,
) -> Result<Response, AddOnFailure> {
    let p = platform(&app, &platform_raw).await?;
    let stale = AddOnFailure::BadRequest(
        "pick_invalid",
        "This page has expired; please open the add-on again from Classroom.",
    );
    let pick: Pick = form
        .pick
        .as_deref()
        .and_then(|t| open_sealed(&app.inner().master, PICK_CONTEXT, t))
        .filter(|k: &Pick| k.platform_id == p.id && k.expires_at > now_micros())
        .ok_or(stale)?;
    let s = session(&app, &headers, p.id)
        .filter(|s| s.sub == pick.sub)
        .ok_or(AddOnFailure::Forbidden(
            "session_mismatch",
            "This choice was made in another Google account's session; please open the add-on again.",
        ))?;
    let item_id =
        form.item
            .as_deref()
            .and_then(|i| i.parse().ok())
            .ok_or(AddOnFailure::BadRequest(
                "item_missing",
                "Please choose an item from the catalog.",
            ))?;
    let tenant = app.store().tenant(&p.scope);
    let item = match tenant.catalog_item(item_id).await {
        Ok(i) if !i.archived => i,
        Ok(_) | Err(StoreError::NotFound) => {
            return Err(AddOnFailure::NotFound(
                "item_unknown",
                "That catalog item is no longer available.",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let fresh = tenant
        .use_picker_token(
            &format!("gaddon:{}", pick.jti),
            pick.expires_at,
            &teacher_actor(&s),
            format!("catalog_item:{}", item.id),
            serde_json::json!({"course_id": pick.course_id, "item_id": pick.item_id}),
        )
        .await?;
    if !fresh {
        return Err(AddOnFailure::BadRequest(
            "pick_used",
            "This choice was already submitted; the attachment exists in Classroom.",
        ));
    }
    let q = AddOnQuery {
        course_id: Some(pick.course_id.clone()),
        item_id: Some(pick.item_id.clone()),
        item_type: Some(pick.item_type.clone()),
        add_on_token: pick.add_on_token.clone(),
        ..AddOnQuery::default()
    };
    let client = api_client(&app, &p).await?;
    // The form is not an iframe open, but the role is confirmed again all the same: the
    // pick may have waited while the teacher was removed from the course.
    let context = confirm(&client, &s, &q).await.map_err(|e| {
        AddOnFailure::Classroom(
            "Classroom did not confirm that you may add to this post.",
            e,
        )
    })?;
    if context.role() != Some(ClassroomRole::Teacher) {
        return Err(AddOnFailure::Forbidden(
            "teacher_only",
            "Only the course's teachers can add content, and Classroom says you are not one here.",
        ));
    }
    create_attachment(&app, &p, &client, &s, &q, &item).await
}

fn teacher_actor(s: &Session) -> Actor {
    Actor {
        kind: domain::ActorKind::Instructor,
        id: format!("google:{}", s.sub),
    }
}

/// Creates the attachment in Classroom (graded when the item has a maximum), records it as
/// a grade target, registers the course for roster changes, and closes the iframe.
async fn create_attachment(
    app: &App,
    p: &Platform,
    client: &ClassroomClient,
    s: &Session,
    q: &AddOnQuery,
    item: &CatalogItem,
) -> Result<Response, AddOnFailure> {
    let max_points = item.score_maximum.map(points).filter(|m| *m > 0);
    let new = NewAddOnAttachment {
        title: item.title.clone(),
        teacher_view_uri: view_url(app, p.id, View::Teacher),
        student_view_uri: view_url(app, p.id, View::Student),
        student_work_review_uri: Some(view_url(app, p.id, View::Review)),
        max_points,
    };
    let created = client
        .create_add_on_attachment(
            &s.credentials(),
            &q.course(),
            &q.item(),
            q.token().as_ref(),
            &new,
        )
        .await
        .map_err(|e| AddOnFailure::Classroom("Classroom did not accept the attachment.", e))?;
    let tenant = app.store().tenant(&p.scope);
    let record = tenant
        .record_add_on_attachment(&StoredAttachment {
            platform_id: p.id,
            course_id: created.course_id.as_str().to_owned(),
            course_title: None,
            item_id: created.item_id.as_str().to_owned(),
            item_type: q.item_type.clone().unwrap_or_else(|| "courseWork".into()),
            attachment_id: created.id.as_str().to_owned(),
            catalog_item_id: Some(item.id.to_string()),
            title: item.title.clone(),
            max_points,
            teacher_user_id: s.sub.clone(),
        })
        .await?;
    tracing::info!(platform = %p.id, attachment = %record.attachment_id, graded = max_points.is_some(), "google add-on attachment created");
    let grant = tenant.google_grant_for_user(p.id, &s.sub).await?;
    let passback_ready = grant
        .as_ref()
        .is_some_and(|g| g.status == store::google::GrantStatus::Active && g.has_refresh_token);
    if app.settings().google_pubsub_topic.is_some() && passback_ready {
        let (app, scope, platform, course, sub) = (
            app.clone(),
            p.scope.clone(),
            p.id,
            record.course_id.clone(),
            s.sub.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) =
                crate::google_push_renewal::register_course(&app, &scope, platform, &course, &sub)
                    .await
            {
                tracing::warn!(course = %course, error = %e, "registering roster push for a course failed; the renewal task retries");
            }
        });
    }
    let mut body = format!(
        "<h1>Added</h1><p>“{}” is attached to this assignment",
        escape(&item.title)
    );
    match max_points {
        Some(m) => body.push_str(&format!(", graded out of {m}.</p>")),
        None => body.push_str(".</p>"),
    }
    if max_points.is_some() && !passback_ready {
        body.push_str("<p><strong>Grades cannot reach Classroom yet:</strong> lmsbridge holds no offline access for your account. Open the add-on again and sign in to allow it.</p>");
    }
    // Classroom closes the discovery iframe on this message.
    body.push_str(&format!(
        "<script>window.parent.postMessage({{type:'Classroom',action:'closeIframe'}},'{CLASSROOM_ORIGIN}');</script>"
    ));
    Ok(framed_page(StatusCode::OK, "Added", &body))
}

/// Link upgrade: a teacher pasted a link Classroom recognised as ours; it becomes an
/// attachment when it is a catalog item's URL.
async fn upgrade(
    app: &App,
    p: &Platform,
    client: &ClassroomClient,
    s: &Session,
    q: &AddOnQuery,
) -> Result<Response, AddOnFailure> {
    let wanted = q.url_to_upgrade.as_deref().unwrap_or_default();
    let items = app.store().tenant(&p.scope).catalog_items(false).await?;
    let Some(item) = items.iter().find(|i| i.url.as_str() == wanted) else {
        return Err(AddOnFailure::NotFound(
            "link_unknown",
            "This link is not one of the catalog's items, so it cannot become an attachment.",
        ));
    };
    create_attachment(app, p, client, s, q, item).await
}

// ----- sign-in -----

#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    t: Option<String>,
}

/// `GET /google/addons/{platform}/signin?t=…`: starts the authorization request.
pub async fn sign_in(
    State(app): State<App>,
    Path(platform_raw): Path<String>,
    axum::extract::Query(query): axum::extract::Query<SignInQuery>,
) -> Result<Response, AddOnFailure> {
    let p = platform(&app, &platform_raw).await?;
    let back: SignInReturn = query
        .t
        .as_deref()
        .and_then(|t| open_sealed(&app.inner().master, RETURN_CONTEXT, t))
        .filter(|b: &SignInReturn| b.platform_id == p.id && b.expires_at > now_micros())
        .ok_or(AddOnFailure::BadRequest(
            "signin_link_invalid",
            "This sign-in link has expired; please open the add-on again from Classroom.",
        ))?;
    let oauth = sign_in_client(&app, &p).await?;
    let scopes = scopes_for(&app, back.view);
    let mut request = AuthorizationRequest::new(&scopes);
    if let Some(h) = back.login_hint.as_deref() {
        request = request.login_hint(h);
    }
    request = if !back.view.for_teachers() {
        request.online()
    } else if back.consent {
        request.require_refresh_token()
    } else {
        request
    };
    let pending = oauth.authorization_url(&request);
    let browser_secret = random_token(32);
    let expires_at = now_micros() + app.settings().login_state_ttl_secs * 1_000_000;
    app.store()
        .tenant(&p.scope)
        .put_google_oauth_state(
            &NewGoogleOAuthState {
                platform_id: p.id,
                state: SecretString::new(pending.state.secret()),
                browser_secret: SecretString::new(browser_secret.clone()),
                verifier: SecretString::new(pending.verifier.secret()),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                login_hint: back.login_hint.clone(),
                expires_at,
            },
            &app.inner().master,
        )
        .await?;
    // The cookie carries the browser binding and, sealed, where to return: Google only
    // echoes the random state.
    let state_hash = sha256_hex(pending.state.secret().as_bytes());
    let name = format!("{STATE_COOKIE_PREFIX}{}", &state_hash[..16]);
    let value = format!(
        "{browser_secret}.{}",
        query.t.as_deref().unwrap_or_default()
    );
    let mut resp = Redirect::to(pending.url.as_str()).into_response();
    if let Some(c) = cookie(&app, &name, &value, app.settings().login_state_ttl_secs) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// `GET /google/addons/callback`: Google's redirect after consent.
pub async fn callback(
    State(app): State<App>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AddOnFailure> {
    let unknown = || {
        AddOnFailure::BadRequest(
            "state_unknown",
            "This sign-in has expired or was already used; please open the add-on again.",
        )
    };
    let redirect = app.settings().public(&format!(
        "google/addons/callback?{}",
        raw.as_deref().unwrap_or("")
    ));
    let state_param = redirect
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .filter(|s| !s.is_empty() && s.len() <= 512)
        .ok_or_else(unknown)?;
    let state_hash = sha256_hex(state_param.as_bytes());
    let cookie_name = format!("{STATE_COOKIE_PREFIX}{}", &state_hash[..16]);
    // Single use: the state is taken before anything else, so a replayed redirect finds
    // nothing even when the rest fails.
    let (scope, stored) = app
        .store()
        .take_google_oauth_state(&state_param, &app.inner().master)
        .await?
        .ok_or_else(unknown)?;
    let (secret, t) = cookie_value(&headers, &cookie_name)
        .and_then(|v| v.split_once('.'))
        .ok_or(AddOnFailure::BadRequest(
            "state_cookie_missing",
            "Your browser did not keep this sign-in's cookie; please allow cookies for this site and try again.",
        ))?;
    if !constant_time_eq(
        sha256_hex(secret.as_bytes()).as_bytes(),
        stored.browser_hash.as_bytes(),
    ) {
        return Err(AddOnFailure::BadRequest(
            "state_not_bound",
            "This sign-in was started in another browser; please open the add-on again.",
        ));
    }
    let back: SignInReturn = open_sealed(&app.inner().master, RETURN_CONTEXT, t)
        .filter(|b: &SignInReturn| b.platform_id == stored.platform_id)
        .ok_or_else(unknown)?;
    let p = Platform {
        scope,
        id: stored.platform_id,
    };
    let callback =
        OAuthClient::parse_callback(&redirect, &classroom::CsrfState::new(state_param.clone()))
            .map_err(AddOnFailure::SignIn)?;
    let oauth = sign_in_client(&app, &p).await?;
    let grant = oauth
        .exchange_code(
            &callback.code,
            &classroom::PkceVerifier::new(stored.verifier.secret()),
        )
        .await
        .map_err(AddOnFailure::SignIn)?;
    let user = oauth
        .userinfo(&grant.access_token)
        .await
        .map_err(AddOnFailure::SignIn)?;
    let mut s = Session {
        platform_id: p.id,
        sub: user.sub.as_str().to_owned(),
        email: user.email.clone(),
        name: user.name.clone(),
        given_name: user.given_name.clone(),
        family_name: user.family_name.clone(),
        access_token: grant.access_token.secret().to_owned(),
        expires_at: now_micros()
            + i64::try_from(grant.expires_in.as_micros()).unwrap_or(i64::MAX / 2),
        pending_grant: None,
    };
    if !s.matches_hint(back.login_hint.as_deref()) {
        return Err(AddOnFailure::Forbidden(
            "account_mismatch",
            "You signed in with a different Google account than the one using Classroom.",
        ));
    }
    if back.view.for_teachers() {
        let tenant = app.store().tenant(&p.scope);
        let has_token = match &grant.refresh_token {
            Some(refresh) => {
                s.pending_grant = Some(PendingGrant {
                    refresh_token: refresh.secret().to_owned(),
                    scopes: grant.scopes.iter().map(str::to_owned).collect(),
                });
                true
            }
            // The stored token must also cover what this sign-in asked for: a token
            // consented for other features cannot call the add-on methods.
            None => {
                let wanted = scopes_for(&app, back.view);
                tenant
                    .google_grant_for_user(p.id, &s.sub)
                    .await?
                    .is_some_and(|g| {
                        g.status == store::google::GrantStatus::Active
                            && g.has_refresh_token
                            && wanted
                                .iter()
                                .filter(|w| !classroom::scopes::SIGN_IN.contains(w))
                                .all(|w| g.has_scope(w))
                    })
            }
        };
        // Google issues a refresh token only with consent; ask once more for it, since
        // passback after the teacher leaves depends on it.
        if !has_token && !back.consent {
            let again = SignInReturn {
                consent: true,
                expires_at: now_micros() + app.settings().login_state_ttl_secs * 1_000_000,
                ..back
            };
            let mut url = app
                .settings()
                .public(&format!("google/addons/{}/signin", p.id));
            url.query_pairs_mut().append_pair(
                "t",
                &seal(&app.inner().master, RETURN_CONTEXT, &again)
                    .map_err(AddOnFailure::Internal)?,
            );
            return Ok(with_session(
                &app,
                Redirect::to(url.as_str()).into_response(),
                &s,
                &cookie_name,
            ));
        }
    }
    Ok(with_session(
        &app,
        signed_in_page(&app, p.id, back.view, &back.query),
        &s,
        &cookie_name,
    ))
}

/// After sign-in: in the popup, reload the iframe that opened it and close; signed in
/// in the frame itself, go on to the view (the form carries Classroom's parameters).
fn signed_in_page(
    app: &App,
    platform: PlatformId,
    view: View,
    query: &[(String, String)],
) -> Response {
    let mut body = format!(
        "<h1>Signed in</h1><form id=\"continue\" method=\"get\" action=\"{}\">",
        escape(view_url(app, platform, view).as_str())
    );
    for (k, v) in query {
        body.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(k),
            escape(v)
        ));
    }
    body.push_str(
        "<noscript><button type=\"submit\">Continue</button></noscript></form>\
         <script>if(window.opener&&window.name==='lmsbridge_signin'){try{window.opener.location.reload();}catch(e){}window.close();}\
         else{document.getElementById('continue').submit();}</script>",
    );
    framed_page(StatusCode::OK, "Signed in", &body)
}

fn with_session(app: &App, mut resp: Response, s: &Session, state_cookie: &str) -> Response {
    if let Some(c) = session_cookie(app, s) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    if let Some(c) = cookie(app, state_cookie, "", 0) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_whole_and_positive() {
        assert_eq!(points(10.0), 10);
        assert_eq!(points(7.5), 8);
        assert_eq!(points(0.2), 1);
        assert_eq!(points(0.0), 0);
        assert_eq!(points(f64::NAN), 0);
    }

    #[test]
    fn a_parameter_sent_twice_is_refused() {
        assert!(AddOnQuery::parse(Some("courseId=1&courseId=2")).is_err());
        let q = AddOnQuery::parse(Some("courseId=1&itemId=2&login_hint=a%40b.c&x=y")).unwrap();
        assert_eq!(q.login_hint.as_deref(), Some("a@b.c"));
        assert!(q.required(View::Discovery).is_ok());
        assert!(
            q.required(View::Student).is_err(),
            "attachmentId is required"
        );
        let m = AddOnQuery::parse(Some("courseId=1&itemId=2&itemType=announcements")).unwrap();
        assert!(m.required(View::Discovery).is_err());
    }

    #[test]
    fn sealed_values_open_only_unaltered() {
        let master = MasterKey::generate();
        let pick = Pick {
            platform_id: PlatformId::generate(),
            sub: "1".into(),
            course_id: "c".into(),
            item_id: "i".into(),
            item_type: "courseWork".into(),
            add_on_token: Some("secret".into()),
            jti: "j".into(),
            expires_at: 1,
        };
        let t = seal(&master, PICK_CONTEXT, &pick).unwrap();
        assert!(!t.contains("secret"));
        assert!(open_sealed::<Pick>(&master, PICK_CONTEXT, &t).is_some());
        assert!(open_sealed::<Pick>(&master, SESSION_CONTEXT, &t).is_none());
        assert!(open_sealed::<Pick>(&MasterKey::generate(), PICK_CONTEXT, &t).is_none());
    }
}
