//! The product API for Google Classroom:
//!
//! - `POST /api/v1/google/connect-links`: a fifteen-minute link a teacher opens to connect
//!   their Google account (features `roster`, `coursework`; the scopes asked follow them).
//! - `GET /api/v1/google`: the tenant's Google setup and every grant with its state
//!   (`revoked` with Google's reason when a teacher or admin withdrew access).
//! - `DELETE /api/v1/google/grants/{id}`: disconnects a teacher (revoked at Google too).
//! - `GET /api/v1/google/courses?grant_id=…`: the courses that teacher teaches (live from
//!   Classroom, `teacherId=me`, every state), and which are linked.
//! - `POST /api/v1/google/courses`: links a course to a context and starts its roster sync;
//!   the roster is then read like any other (`GET /api/v1/contexts/{id}/members`).
//! - `POST /api/v1/contexts/{id}/google/course-work`: creates an assignment in the course
//!   with our Cloud project, so lmsbridge may grade it; its `grade_target_id` takes scores
//!   through `POST /api/v1/scores` exactly like an AGS line item.

use super::api::{ApiJson, TenantApiKey};
use super::error::ApiError;
use crate::App;
use crate::google::{Feature, GoogleSetupError};
use adapters::course_roster_url;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use classroom::model::{Course, NewCourseWork, UserRef};
use classroom::{ApiError as GoogleApiError, CourseId, CourseQuery};
use domain::{Actor, ContextId};
use serde::Deserialize;
use serde_json::{Value, json};
use store::google::{
    GoogleCourseInput, GoogleGrantId, GradeMode, GrantStatus, NewGoogleCourseWork,
};
use store::{SyncKind, TenantScope};

/// A Classroom refusal as the product sees it: retryable failures as 502/503, refusals as
/// 422 (409 for ProjectPermissionDenied), with Google's classified sentence.
fn google_error(e: &GoogleApiError) -> Response {
    let status = if e.is_retryable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else if matches!(e, GoogleApiError::ProjectPermissionDenied { .. }) {
        StatusCode::CONFLICT
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (
        status,
        Json(json!({"error": e.code(), "message": e.to_string()})),
    )
        .into_response()
}

fn setup_error(e: GoogleSetupError) -> ApiError {
    match e {
        GoogleSetupError::NotConfigured => ApiError::Invalid(e.to_string()),
        GoogleSetupError::Store(s) => s.into(),
    }
}

async fn platform_id(app: &App, scope: &TenantScope) -> Result<domain::PlatformId, ApiError> {
    app.store()
        .tenant(scope)
        .google_platform()
        .await?
        .map(|p| p.id)
        .ok_or_else(|| setup_error(GoogleSetupError::NotConfigured))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    #[serde(default)]
    features: Option<Vec<Feature>>,
    #[serde(default)]
    login_hint: Option<String>,
}

/// `POST /api/v1/google/connect-links`.
pub async fn connect_link(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    ApiJson(body): ApiJson<LinkBody>,
) -> Result<Response, ApiError> {
    let platform = platform_id(&app, &scope).await?;
    let features = body
        .features
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| vec![Feature::Roster, Feature::Coursework]);
    if body.login_hint.as_deref().is_some_and(|h| h.len() > 320) {
        return Err(ApiError::Invalid("login_hint is too long".into()));
    }
    let (url, expires_at) =
        app.google()
            .connect_link(&scope, platform, features, body.login_hint)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"url": url, "expires_at_micros": expires_at})),
    )
        .into_response())
}

/// `GET /api/v1/google`.
pub async fn status(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
) -> Result<Json<Value>, ApiError> {
    let tenant = app.store().tenant(&scope);
    let Some(platform) = tenant.google_platform().await? else {
        return Ok(Json(json!({"configured": false})));
    };
    let client = tenant
        .google_client(platform.id, app.google().master())
        .await?;
    let grants = tenant.google_grants(platform.id).await?;
    let courses = tenant.google_courses(platform.id).await?;
    Ok(Json(json!({
        "configured": client.is_some(),
        "platform_id": platform.id,
        "client_id": platform.client_id,
        "project_number": client.as_ref().and_then(|c| c.project_number.clone()),
        "redirect_uri": app.google().redirect_uri(),
        "grants": grants,
        "courses": courses,
    })))
}

/// `DELETE /api/v1/google/grants/{id}`: revokes the grant at Google (RFC 7009) and marks it
/// revoked, so nothing is sent with it until the teacher connects again.
pub async fn disconnect(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let grant = grant_id(&id)?;
    let tenant = app.store().tenant(&scope);
    let g = tenant
        .google_grant(grant)
        .await?
        .ok_or(ApiError::NotFound("grant_unknown"))?;
    let mut revoked_at_google = false;
    if let Some(token) = tenant
        .google_refresh_token(grant, app.google().master())
        .await?
    {
        let client = app
            .google()
            .client(&tenant, g.platform_id)
            .await
            .map_err(setup_error)?;
        let refresh = classroom::RefreshToken::new(token.secret());
        match client.tokens().oauth().revoke(&refresh).await {
            Ok(_) => revoked_at_google = true,
            Err(e) if e.is_retryable() => {
                return Ok((
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({"error": "google_unavailable", "message": e.to_string()})),
                )
                    .into_response());
            }
            // Google refused the revocation: the grant is still never used again here.
            Err(e) => tracing::warn!(error = %e, "Google refused to revoke a grant"),
        }
        client.tokens().forget(&refresh);
    }
    tenant
        .mark_google_grant_revoked(
            grant,
            "disconnected through the product API",
            &Actor::system("product-api"),
        )
        .await?;
    Ok(Json(json!({
        "id": grant, "status": "revoked", "revoked_at_google": revoked_at_google,
    }))
    .into_response())
}

fn grant_id(raw: &str) -> Result<GoogleGrantId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound("grant_unknown"))
}

/// `GET /api/v1/google/courses?grant_id=…`.
pub async fn courses(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let raw_grant = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "grant_id")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| ApiError::Invalid("grant_id is required".into()))?;
    let grant = grant_id(&raw_grant)?;
    let live = match taught_courses(&app, &scope, grant).await? {
        Ok(c) => c,
        Err(refused) => return Ok(refused),
    };
    let tenant = app.store().tenant(&scope);
    let platform = platform_id(&app, &scope).await?;
    let linked = tenant.google_courses(platform).await?;
    let list: Vec<Value> = live
        .iter()
        .map(|c| {
            let link = linked.iter().find(|l| l.course_id == c.id.as_str());
            json!({
                "course_id": c.id,
                "name": c.name,
                "section": c.section,
                "state": c.course_state.as_ref().map(|s| s.as_str()),
                "context_id": link.map(|l| l.context_id),
            })
        })
        .collect();
    Ok(Json(json!({"courses": list})).into_response())
}

/// The courses the grant's teacher teaches, live from Classroom (`courses.list` with
/// `teacherId=me`) and in every state: a teacher may want a provisioned course ready, or an
/// archived one's roster. `Ok(Err(page))` is Classroom's refusal, answered to the product as
/// it is.
async fn taught_courses(
    app: &App,
    scope: &TenantScope,
    grant: GoogleGrantId,
) -> Result<Result<Vec<Course>, Response>, ApiError> {
    let Some((client, creds)) = app
        .google()
        .grant_client(scope, grant)
        .await
        .map_err(setup_error)?
    else {
        return Err(ApiError::Conflict(
            "this grant is revoked or unknown; the teacher must connect Google Classroom again"
                .into(),
        ));
    };
    let query = CourseQuery {
        teacher_id: Some(UserRef::Me),
        ..CourseQuery::default()
    };
    Ok(client
        .list_courses(&creds, &query)
        .await
        .map_err(|e| google_error(&e)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkCourseBody {
    grant_id: String,
    course_id: String,
}

/// `POST /api/v1/google/courses`: link a course the grant's teacher teaches, and sync it.
pub async fn link_course(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    ApiJson(body): ApiJson<LinkCourseBody>,
) -> Result<Response, ApiError> {
    let grant = grant_id(&body.grant_id)?;
    // Only a course the teacher teaches.
    let courses = match taught_courses(&app, &scope, grant).await? {
        Ok(c) => c,
        Err(refused) => return Ok(refused),
    };
    let Some(course) = courses.iter().find(|c| c.id.as_str() == body.course_id) else {
        return Err(ApiError::NotFound("course_unknown"));
    };
    let platform = platform_id(&app, &scope).await?;
    let tenant = app.store().tenant(&scope);
    let actor = Actor::system("product-api");
    let linked = tenant
        .link_google_course(
            platform,
            grant,
            &GoogleCourseInput {
                course_id: course.id.as_str().to_owned(),
                name: course.name.clone(),
                section: course.section.clone(),
                course_state: course.course_state.as_ref().map(|s| s.as_str().to_owned()),
            },
            &course_roster_url(&app.google().endpoints().api_base, course.id.as_str()),
            &actor,
        )
        .await?;
    let sync = start_sync(&app, &scope, linked.context_id).await?;
    let push = register_for_roster_changes(&app, &scope, platform, grant, &body.course_id).await;
    Ok((
        StatusCode::CREATED,
        Json(json!({"course": linked, "sync": sync, "roster_push": push})),
    )
        .into_response())
}

/// With push configured, registers the linked course for Classroom roster-change
/// notifications with the linking teacher's grant, so later changes re-sync it without
/// waiting for the interval. Says what happened; a failure leaves the interval re-sync
/// covering the course and does not fail the link.
async fn register_for_roster_changes(
    app: &App,
    scope: &TenantScope,
    platform: domain::PlatformId,
    grant: GoogleGrantId,
    course_id: &str,
) -> serde_json::Value {
    if app.settings().google_pubsub_topic.is_none() {
        return json!({"state": "not_configured", "fallback": "interval re-sync"});
    }
    let teacher = match app.store().tenant(scope).google_grant(grant).await {
        Ok(Some(g)) => g.google_sub,
        Ok(None) => return json!({"state": "failed", "reason": "the grant is unknown"}),
        Err(e) => {
            tracing::warn!(error = %e, "reading the grant for a push registration failed");
            return json!({"state": "failed", "reason": "storage failed"});
        }
    };
    match crate::google_push_renewal::ensure_course_registered(
        app, scope, platform, course_id, &teacher,
    )
    .await
    {
        Ok(Some(r)) => json!({"state": "registered", "expires_at": r.expires_at}),
        Ok(None) => json!({"state": "already_registered"}),
        Err(e) => {
            tracing::warn!(course = %course_id, error = %e, "Classroom roster push registration failed");
            json!({"state": "failed", "reason": e.to_string(), "fallback": "interval re-sync"})
        }
    }
}

/// Queues (or finds) a full roster sync of a linked course and runs it in the background.
pub async fn start_sync(
    app: &App,
    scope: &TenantScope,
    context: ContextId,
) -> Result<Value, ApiError> {
    let tenant = app.store().tenant(scope);
    let source = tenant.roster_source(context).await?;
    let first = source
        .memberships_url
        .ok_or_else(|| ApiError::Invalid("this course has no roster URL".into()))?;
    let queued = tenant
        .queue_roster_sync(
            context,
            SyncKind::Full,
            &first,
            &Actor::system("product-api"),
        )
        .await?;
    app.inner().rosters.start(scope.clone(), queued.sync.id);
    Ok(json!({"id": queued.sync.id, "state": queued.sync.state, "created": queued.created}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourseWorkBody {
    title: String,
    #[serde(default)]
    description: Option<String>,
    /// Classroom takes whole points.
    max_points: u32,
    /// `draft` (the default: the teacher reviews, then returns), `assigned`, or
    /// `draft_and_assigned`.
    #[serde(default)]
    grade_mode: Option<String>,
    /// Return the work to the student after each grade.
    #[serde(default)]
    return_on_grade: bool,
}

/// `POST /api/v1/contexts/{id}/google/course-work`.
pub async fn create_course_work(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CourseWorkBody>,
) -> Result<Response, ApiError> {
    let context: ContextId = id
        .parse()
        .map_err(|_| ApiError::NotFound("context_unknown"))?;
    let title = body.title.trim();
    if title.is_empty() || title.chars().count() > 3000 {
        return Err(ApiError::Invalid(
            "title must be 1 to 3000 characters".into(),
        ));
    }
    if body.max_points == 0 {
        return Err(ApiError::Invalid(
            "max_points must be at least 1: an ungraded assignment cannot take scores".into(),
        ));
    }
    let grade_mode: GradeMode = body.grade_mode.as_deref().unwrap_or("draft").parse()?;
    let tenant = app.store().tenant(&scope);
    let course = tenant
        .google_course(context)
        .await?
        .ok_or(ApiError::NotFound("context_unknown"))?;
    let grant = tenant
        .google_grant(course.grant_id)
        .await?
        .ok_or(ApiError::NotFound("grant_unknown"))?;
    if grant.status == GrantStatus::Revoked {
        return Err(ApiError::Conflict(format!(
            "the Google Classroom connection of {} was revoked; they must connect again",
            grant.email.as_deref().unwrap_or("this course's teacher")
        )));
    }
    let Some((client, creds)) = app
        .google()
        .grant_client(&scope, grant.id)
        .await
        .map_err(setup_error)?
    else {
        return Err(ApiError::Conflict(
            "the teacher's Google grant has no usable token; they must connect again".into(),
        ));
    };
    let created = client
        .create_course_work(
            &creds,
            &CourseId::new(course.course_id.as_str()),
            &NewCourseWork {
                title: title.to_owned(),
                description: body.description.clone(),
                max_points: body.max_points,
            },
        )
        .await;
    let work = match created {
        Ok(w) => w,
        Err(e) => {
            if let GoogleApiError::Revoked(_) = &e {
                let _ = tenant
                    .mark_google_grant_revoked(grant.id, &e.to_string(), &Actor::system("google"))
                    .await;
            }
            return Ok(google_error(&e));
        }
    };
    let recorded = tenant
        .record_google_course_work(
            course.platform_id,
            &NewGoogleCourseWork {
                context_id: context,
                grant_id: grant.id,
                course_id: course.course_id.clone(),
                course_work_id: work.id.as_str().to_owned(),
                title: title.to_owned(),
                max_points: f64::from(body.max_points),
                grade_mode,
                return_on_grade: body.return_on_grade,
            },
            &Actor::system("product-api"),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "grade_target_id": recorded.grade_target_id,
            "context_id": recorded.context_id,
            "course_id": recorded.course_id,
            "course_work_id": recorded.course_work_id,
            "title": recorded.title,
            "max_points": recorded.max_points,
            "grade_mode": recorded.grade_mode,
            "return_on_grade": recorded.return_on_grade,
            "alternate_link": work.alternate_link,
        })),
    )
        .into_response())
}
