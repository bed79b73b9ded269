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

mod attach;
mod page;
mod session;

use attach::*;
use page::*;
use session::*;

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

// ----- sealed values -----

// ----- cookies -----

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
            // Student Work Review: whose work it is, as Classroom says.
            let reviewed = match (view, &attachment, &submission) {
                (View::Review, Some(a), Some(sub)) => Some(
                    client
                        .get_add_on_submission(
                            &s.credentials(),
                            &q.course(),
                            &q.item(),
                            &AttachmentId::new(a.attachment_id.clone()),
                            &classroom::SubmissionId::new(sub.clone()),
                        )
                        .await
                        .map_err(|e| {
                            AddOnFailure::Classroom(
                                "Classroom did not find this student's work on the attachment.",
                                e,
                            )
                        })?
                        .user_id
                        .map(|u| u.as_str().to_owned())
                        .ok_or(AddOnFailure::NotFound(
                            "submission_unknown",
                            "Classroom did not say whose work this is.",
                        ))?,
                ),
                _ => None,
            };
            let who = Who {
                role,
                submission,
                reviewed,
            };
            hand_off(&app, &p, &s, &q, view, who, attachment).await
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

/// Records the open and hands it to the product with a one-time code.
/// The confirmed role of an open, the student's submission (or the one under review) and,
/// for Student Work Review, whose work it is.
struct Who {
    role: AddOnRole,
    submission: Option<String>,
    reviewed: Option<String>,
}

async fn hand_off(
    app: &App,
    p: &Platform,
    s: &Session,
    q: &AddOnQuery,
    view: View,
    who: Who,
    attachment: Option<AddOnAttachmentRecord>,
) -> Result<Response, AddOnFailure> {
    let Who {
        role,
        submission,
        reviewed,
    } = who;
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
        reviewed_user_id: reviewed,
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

// ----- sign-in -----

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
