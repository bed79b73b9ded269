//! The product API for gradebook columns: line items of a context (LTI AGS §3.2) and their
//! results (§3.5), on whatever LMS the context lives.
//!
//! A line item's id here is its grade target id: `POST /api/v1/scores` takes it as
//! `grade_target_id`. Calls go to the platform first and are recorded once it agreed; what
//! the platform said on refusal goes to the log under a correlation id, never to the client.

use super::api::{ApiJson, TenantApiKey};
use super::error::ApiError;
use crate::App;
use adapters::LtiAdapter;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use domain::{
    Actor, ContextId, DeliveryError, GradeTargetId, GradebookAdapter, LineItemChanges,
    LineItemFields, LineItemsRequest, PersonId, Platform, PlatformEndpoints, PlatformKind,
    ResultsRequest,
};
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::Arc;
use store::{LineItemOrigin, StoreError, StoredLineItem, TenantStore};
use time::OffsetDateTime;
use url::Url;

/// Longest label, tag or id accepted; platforms store these in short columns.
const MAX_TEXT: usize = 255;
/// Largest results page a product may ask for.
const MAX_LIMIT: u32 = 1000;

/// The line item routes, with the adapters they reach platforms through.
pub(super) fn routes(app: &App) -> Router<App> {
    let gradebooks = Gradebooks {
        lti: app.inner().lti.clone(),
    };
    Router::new()
        .route("/api/v1/contexts/{id}/line-items", get(list).post(create))
        .route(
            "/api/v1/line-items/{id}",
            get(get_one).patch(update).delete(delete),
        )
        .route("/api/v1/line-items/{id}/results", get(results))
        .layer(Extension(gradebooks))
}

/// The gradebook adapter of each platform kind: handlers never branch on the LMS.
#[derive(Clone, Debug)]
struct Gradebooks {
    lti: Arc<LtiAdapter>,
}

impl Gradebooks {
    fn for_platform(&self, platform: &Platform) -> Result<Arc<dyn GradebookAdapter>, Failure> {
        if platform.kind.speaks_lti() {
            Ok(self.lti.clone() as Arc<dyn GradebookAdapter>)
        } else {
            Err(Failure::Unsupported(platform.kind))
        }
    }
}

fn endpoints(p: &Platform) -> PlatformEndpoints {
    PlatformEndpoints {
        kind: p.kind,
        issuer: p.issuer.clone(),
        client_id: p.client_id.clone(),
        token_url: p.token_url.clone(),
        token_audience: p.token_audience.clone(),
    }
}

/// Why a line item call failed.
#[derive(Debug)]
enum Failure {
    Api(ApiError),
    /// The platform refused or failed; the detail is logged, not shown.
    Platform(DeliveryError),
    /// The context's launches offered no line item container (AGS `lineitems`).
    NoContainer,
    Unsupported(PlatformKind),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Api(e.into())
    }
}

impl From<DeliveryError> for Failure {
    fn from(e: DeliveryError) -> Self {
        Self::Platform(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Self::Api(e) => return e.into_response(),
            Self::NoContainer => (
                StatusCode::CONFLICT,
                "line_items_unavailable",
                "the LMS has not offered gradebook columns for this context: no launch from it \
                 carried an AGS line item container",
            ),
            Self::Unsupported(kind) => {
                tracing::info!(platform_kind = %kind, "line items asked of a platform without them");
                (
                    StatusCode::CONFLICT,
                    "line_items_not_supported",
                    "line items are not available for this kind of platform yet",
                )
            }
            Self::Platform(e) => return platform_failure(&e),
        };
        (
            status,
            Json(serde_json::json!({"error": code, "message": message})),
        )
            .into_response()
    }
}

/// A platform's refusal: a stable code and sentence for the product, the platform's own
/// words (which can name users or echo what we sent) in the log under a correlation id.
fn platform_failure(e: &DeliveryError) -> Response {
    let (status, code, message) = platform_answer(e);
    let id = uuid::Uuid::new_v4().simple().to_string();
    tracing::warn!(correlation_id = %id, code, error = %e, "platform refused a line item call");
    let mut resp = (
        status,
        Json(serde_json::json!({"error": code, "message": message, "correlation_id": id})),
    )
        .into_response();
    if let Some(wait) = e.retry_after() {
        // Whole seconds, rounded up, as Retry-After wants (RFC 9110 §10.2.3).
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// What the product is told of a platform's refusal.
fn platform_answer(e: &DeliveryError) -> (StatusCode, &'static str, &'static str) {
    match e {
        DeliveryError::RateLimited { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "platform_rate_limited",
            "the LMS is limiting requests from lmsbridge; try again later",
        ),
        DeliveryError::Transient { .. } => (
            StatusCode::BAD_GATEWAY,
            "platform_unavailable",
            "the LMS could not be reached or failed; try again later",
        ),
        DeliveryError::Rejected { status: 404, .. } => (
            StatusCode::NOT_FOUND,
            "platform_not_found",
            "the LMS does not have this line item (any more)",
        ),
        DeliveryError::Rejected {
            status: 400 | 422, ..
        } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "platform_rejected",
            "the LMS refused the line item as invalid",
        ),
        DeliveryError::Rejected { status: 409, .. } => (
            StatusCode::CONFLICT,
            "platform_conflict",
            "the LMS refused the change as conflicting with what it holds",
        ),
        DeliveryError::Rejected { status: 403, .. } => (
            StatusCode::BAD_GATEWAY,
            "platform_forbidden",
            "the LMS does not let this tool manage gradebook columns here; an administrator \
             must enable it in the tool's settings",
        ),
        DeliveryError::Rejected { .. } => (
            StatusCode::BAD_GATEWAY,
            "platform_refused",
            "the LMS refused the request",
        ),
        _ => (
            StatusCode::BAD_GATEWAY,
            "platform_misconfigured",
            "the LMS registration needs an administrator's attention (keys or service scopes)",
        ),
    }
}

/// Line item changes made through the API are the product's unless it names an actor.
fn actor(named: Option<Actor>) -> Actor {
    named.unwrap_or_else(|| Actor::system("product-api"))
}

/// `null` and absent mean different things in a PATCH: clear the field, leave it alone.
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn present_time<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<OffsetDateTime>>, D::Error> {
    time::serde::rfc3339::option::deserialize(d).map(Some)
}

fn check_text(name: &str, value: Option<&str>) -> Result<(), ApiError> {
    match value {
        Some(v) if v.trim().is_empty() => Err(ApiError::Invalid(format!(
            "{name} must not be empty (leave it out or send null instead)"
        ))),
        Some(v) if v.chars().count() > MAX_TEXT || v.chars().any(char::is_control) => {
            Err(ApiError::Invalid(format!(
                "{name} must be at most {MAX_TEXT} characters, without control characters"
            )))
        }
        _ => Ok(()),
    }
}

fn check_maximum(score_maximum: f64) -> Result<(), ApiError> {
    if score_maximum.is_finite() && score_maximum > 0.0 && score_maximum <= 1e9 {
        Ok(())
    } else {
        Err(ApiError::Invalid(
            "score_maximum must be a number greater than 0".into(),
        ))
    }
}

fn parse_context(id: &str) -> Result<ContextId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::NotFound("context_not_found"))
}

fn parse_line_item(id: &str) -> Result<GradeTargetId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::NotFound("line_item_not_found"))
}

/// A line item as the product sees it.
#[derive(Debug, Serialize)]
struct LineItemView<'a> {
    /// Ours; also the `grade_target_id` for scores.
    id: GradeTargetId,
    /// The platform's id for it: the AGS line item URL.
    platform_line_item_id: &'a Url,
    context_id: ContextId,
    label: Option<&'a str>,
    score_maximum: Option<f64>,
    /// AGS `resourceId`: the product's id for the activity.
    resource_id: Option<&'a str>,
    resource_link_id: Option<&'a str>,
    tag: Option<&'a str>,
    #[serde(with = "time::serde::rfc3339::option")]
    start_date_time: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    end_date_time: Option<OffsetDateTime>,
    grades_released: Option<bool>,
    origin: LineItemOrigin,
    created_at: i64,
    updated_at: Option<i64>,
}

fn view(l: &StoredLineItem) -> LineItemView<'_> {
    LineItemView {
        id: l.id,
        platform_line_item_id: &l.line_item_url,
        context_id: l.context_id,
        label: l.label.as_deref(),
        score_maximum: l.score_maximum,
        resource_id: l.product_resource_id.as_deref(),
        resource_link_id: l.resource_link_id.as_deref(),
        tag: l.tag.as_deref(),
        start_date_time: l.start_date_time,
        end_date_time: l.end_date_time,
        grades_released: l.grades_released,
        origin: l.origin,
        created_at: l.created_at,
        updated_at: l.updated_at,
    }
}

/// One of the tenant's line items that is not deleted, with its platform.
async fn live_line_item(
    tenant: &TenantStore<'_>,
    id: &str,
) -> Result<(StoredLineItem, Platform), Failure> {
    let item = tenant
        .line_item(parse_line_item(id)?)
        .await?
        .filter(|l| l.deleted_at.is_none())
        .ok_or(ApiError::NotFound("line_item_not_found"))?;
    let platform = tenant.platform(item.platform_id).await?;
    Ok((item, platform))
}

/// A new line item as the product sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    label: String,
    score_maximum: f64,
    #[serde(default)]
    resource_id: Option<String>,
    #[serde(default)]
    resource_link_id: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    start_date_time: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    end_date_time: Option<OffsetDateTime>,
    #[serde(default)]
    grades_released: Option<bool>,
    #[serde(default)]
    actor: Option<Actor>,
}

/// `POST /api/v1/contexts/{id}/line-items`: creates a line item on the platform, records
/// it, answers 201 with our id and the platform's.
async fn create(
    State(app): State<App>,
    Extension(gradebooks): Extension<Gradebooks>,
    TenantApiKey(scope): TenantApiKey,
    Path(context): Path<String>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, Failure> {
    let context = parse_context(&context)?;
    check_text("label", Some(&body.label))?;
    check_maximum(body.score_maximum)?;
    check_text("resource_id", body.resource_id.as_deref())?;
    check_text("resource_link_id", body.resource_link_id.as_deref())?;
    check_text("tag", body.tag.as_deref())?;
    if let (Some(start), Some(end)) = (body.start_date_time, body.end_date_time)
        && end < start
    {
        return Err(ApiError::Invalid("end_date_time is before start_date_time".into()).into());
    }
    let fields = LineItemFields {
        label: body.label.trim().to_owned(),
        score_maximum: body.score_maximum,
        resource_id: body.resource_id,
        resource_link_id: body.resource_link_id,
        tag: body.tag,
        start_date_time: body.start_date_time,
        end_date_time: body.end_date_time,
        grades_released: body.grades_released,
    };
    let tenant = app.store().tenant(&scope);
    let container = tenant
        .line_item_container(context)
        .await
        .map_err(|e| not_found(e, "context_not_found"))?;
    let lineitems = container
        .lineitems_url
        .clone()
        .ok_or(Failure::NoContainer)?;
    let created = gradebooks
        .for_platform(&container.platform)?
        .create_line_item(&endpoints(&container.platform), &lineitems, &fields)
        .await?;
    let stored = tenant
        .record_line_items(
            &container,
            &[created],
            LineItemOrigin::Api,
            Some(&actor(body.actor)),
        )
        .await?;
    let stored = stored.first().ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!("a created line item was not recorded"))
    })?;
    Ok((StatusCode::CREATED, Json(view(stored))).into_response())
}

fn not_found(e: StoreError, code: &'static str) -> Failure {
    match e {
        StoreError::NotFound => ApiError::NotFound(code).into(),
        other => other.into(),
    }
}

/// Filters of a listing, from the query string.
#[derive(Debug, Default)]
struct ListFilters {
    resource_link_id: Option<String>,
    resource_id: Option<String>,
    tag: Option<String>,
}

fn list_filters(query: Option<&str>) -> Result<ListFilters, ApiError> {
    let mut f = ListFilters::default();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let slot = match k.as_ref() {
            "resource_link_id" => &mut f.resource_link_id,
            "resource_id" => &mut f.resource_id,
            "tag" => &mut f.tag,
            _ => {
                return Err(ApiError::Invalid(
                    "the filters are resource_link_id, resource_id and tag".into(),
                ));
            }
        };
        check_text(&k, Some(&v))?;
        *slot = Some(v.into_owned());
    }
    Ok(f)
}

/// `GET /api/v1/contexts/{id}/line-items[?resource_link_id=&resource_id=&tag=]`: every line
/// item the platform lists for the context (all pages), recorded so each has our id.
async fn list(
    State(app): State<App>,
    Extension(gradebooks): Extension<Gradebooks>,
    TenantApiKey(scope): TenantApiKey,
    Path(context): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Failure> {
    let context = parse_context(&context)?;
    let filters = list_filters(query.as_deref())?;
    let tenant = app.store().tenant(&scope);
    let container = tenant
        .line_item_container(context)
        .await
        .map_err(|e| not_found(e, "context_not_found"))?;
    let lineitems = container
        .lineitems_url
        .clone()
        .ok_or(Failure::NoContainer)?;
    let items = gradebooks
        .for_platform(&container.platform)?
        .list_line_items(&LineItemsRequest {
            platform: endpoints(&container.platform),
            container: lineitems,
            resource_link_id: filters.resource_link_id,
            resource_id: filters.resource_id,
            tag: filters.tag,
        })
        .await?;
    let stored = tenant
        .record_line_items(&container, &items, LineItemOrigin::Platform, None)
        .await?;
    let views: Vec<LineItemView<'_>> = stored.iter().map(view).collect();
    Ok(Json(serde_json::json!({ "line_items": views })).into_response())
}

/// `GET /api/v1/line-items/{id}`: a line item as lmsbridge last saw it.
async fn get_one(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let tenant = app.store().tenant(&scope);
    let (item, _) = live_line_item(&tenant, &id).await?;
    Ok(Json(view(&item)).into_response())
}

/// A change of some fields: absent fields stay, `null` clears the optional ones.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    score_maximum: Option<f64>,
    #[serde(default, deserialize_with = "present")]
    resource_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    resource_link_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    tag: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_time")]
    start_date_time: Option<Option<OffsetDateTime>>,
    #[serde(default, deserialize_with = "present_time")]
    end_date_time: Option<Option<OffsetDateTime>>,
    #[serde(default, deserialize_with = "present")]
    grades_released: Option<Option<bool>>,
    #[serde(default)]
    actor: Option<Actor>,
}

/// `PATCH /api/v1/line-items/{id}`: changes some fields on the platform (keeping all else it
/// holds), then here.
async fn update(
    State(app): State<App>,
    Extension(gradebooks): Extension<Gradebooks>,
    TenantApiKey(scope): TenantApiKey,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PatchBody>,
) -> Result<Response, Failure> {
    check_text("label", body.label.as_deref())?;
    if let Some(max) = body.score_maximum {
        check_maximum(max)?;
    }
    for (name, value) in [
        ("resource_id", &body.resource_id),
        ("resource_link_id", &body.resource_link_id),
        ("tag", &body.tag),
    ] {
        check_text(name, value.as_ref().and_then(|v| v.as_deref()))?;
    }
    let changes = LineItemChanges {
        label: body.label.map(|l| l.trim().to_owned()),
        score_maximum: body.score_maximum,
        resource_id: body.resource_id,
        resource_link_id: body.resource_link_id,
        tag: body.tag,
        start_date_time: body.start_date_time,
        end_date_time: body.end_date_time,
        grades_released: body.grades_released,
    };
    if changes.is_empty() {
        return Err(ApiError::Invalid("the body changes nothing".into()).into());
    }
    let tenant = app.store().tenant(&scope);
    let (item, platform) = live_line_item(&tenant, &id).await?;
    let mut updated = gradebooks
        .for_platform(&platform)?
        .update_line_item(&endpoints(&platform), &item.line_item_url, &changes)
        .await?;
    // Our row is keyed by the URL we know it under; the platform may spell it differently.
    updated.location = item.line_item_url.clone();
    let stored = tenant
        .record_line_item_update(item.id, &updated, &actor(body.actor))
        .await?;
    Ok(Json(view(&stored)).into_response())
}

/// `DELETE /api/v1/line-items/{id}`: deletes the line item on the platform (and with it
/// the grades there), then marks it deleted here; 204. A line item the platform no longer
/// has is marked deleted too.
async fn delete(
    State(app): State<App>,
    Extension(gradebooks): Extension<Gradebooks>,
    TenantApiKey(scope): TenantApiKey,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let tenant = app.store().tenant(&scope);
    let (item, platform) = live_line_item(&tenant, &id).await?;
    match gradebooks
        .for_platform(&platform)?
        .delete_line_item(&endpoints(&platform), &item.line_item_url)
        .await
    {
        Ok(()) | Err(DeliveryError::Rejected { status: 404, .. }) => {}
        Err(e) => return Err(e.into()),
    }
    tenant
        .record_line_item_deleted(item.id, &actor(None))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// One result as the product sees it.
#[derive(Debug, Serialize)]
struct ResultView {
    /// Our person, when lmsbridge has seen them (a launch or a roster sync).
    person_id: Option<PersonId>,
    platform_user_id: String,
    result_score: Option<f64>,
    result_maximum: Option<f64>,
    comment: Option<String>,
}

/// The associated data results cursors are sealed with: one tenant's one line item.
fn cursor_context(scope: &store::TenantScope, line_item: GradeTargetId) -> String {
    format!("results-cursor:{}:{line_item}", scope.tenant_id())
}

/// `GET /api/v1/line-items/{id}/results[?person_id=&limit=&cursor=]`: one page of the
/// learners' current results as the platform holds them, with `next_cursor` for the next
/// page. The cursor is opaque and carries the filters of the first request.
async fn results(
    State(app): State<App>,
    Extension(gradebooks): Extension<Gradebooks>,
    TenantApiKey(scope): TenantApiKey,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, Failure> {
    let (mut person, mut limit, mut cursor) = (None, None, None);
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "person_id" => {
                person =
                    Some(v.parse::<PersonId>().map_err(|_| {
                        ApiError::Invalid("person_id must be a person's id".into())
                    })?);
            }
            "limit" => {
                limit = Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|l| (1..=MAX_LIMIT).contains(l))
                        .ok_or_else(|| {
                            ApiError::Invalid(format!("limit must be between 1 and {MAX_LIMIT}"))
                        })?,
                );
            }
            "cursor" => cursor = Some(v.into_owned()),
            _ => {
                return Err(ApiError::Invalid(
                    "the parameters are person_id, limit and cursor".into(),
                )
                .into());
            }
        }
    }
    let tenant = app.store().tenant(&scope);
    let (item, platform) = live_line_item(&tenant, &id).await?;
    let invalid_cursor =
        || ApiError::Invalid("cursor is not one this line item's results gave".into());
    let page = match cursor {
        Some(c) => {
            let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c.as_bytes())
                .map_err(|_| invalid_cursor())?;
            let opened = app
                .inner()
                .master
                .open(&sealed, &cursor_context(&scope, item.id))
                .map_err(|_| invalid_cursor())?;
            let url = std::str::from_utf8(&opened)
                .ok()
                .and_then(|s| Url::parse(s).ok())
                .filter(|u| u.origin() == item.line_item_url.origin())
                .ok_or_else(invalid_cursor)?;
            Some(url)
        }
        None => None,
    };
    let platform_user_id = match person {
        Some(p) => Some(
            tenant
                .platform_user_id(p, platform.id)
                .await?
                .ok_or(ApiError::NotFound("person_not_found"))?,
        ),
        None => None,
    };
    let page = gradebooks
        .for_platform(&platform)?
        .results_page(&ResultsRequest {
            platform: endpoints(&platform),
            line_item: item.line_item_url.clone(),
            platform_user_id,
            limit,
            page,
        })
        .await?;
    let user_ids: Vec<String> = page
        .results
        .iter()
        .map(|r| r.platform_user_id.clone())
        .collect();
    let people = tenant
        .people_by_platform_user_id(platform.id, &user_ids)
        .await?;
    let next_cursor = page
        .next
        .map(|next| {
            app.inner()
                .master
                .seal(next.as_str().as_bytes(), &cursor_context(&scope, item.id))
                .map(|s| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s))
        })
        .transpose()?;
    let results: Vec<ResultView> = page
        .results
        .into_iter()
        .map(|r| ResultView {
            person_id: people.get(&r.platform_user_id).copied(),
            platform_user_id: r.platform_user_id,
            result_score: r.result_score,
            result_maximum: r.result_maximum,
            comment: r.comment,
        })
        .collect();
    Ok(Json(serde_json::json!({
        "line_item_id": item.id,
        "results": results,
        "next_cursor": next_cursor,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn answer(e: DeliveryError) -> (StatusCode, Option<String>, serde_json::Value) {
        let resp = Failure::Platform(e).into_response();
        let status = resp.status();
        let retry = resp
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        (status, retry, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn platform_refusals_are_told_in_our_words_only() {
        let secret = "token=abc123 <b>user 42 not in course</b>";
        let cases = [
            (
                DeliveryError::RateLimited {
                    retry_after: Some(Duration::from_millis(1500)),
                    detail: secret.into(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
                "platform_rate_limited",
                Some("2"),
            ),
            (
                DeliveryError::Transient {
                    status: Some(500),
                    retry_after: None,
                    detail: secret.into(),
                },
                StatusCode::BAD_GATEWAY,
                "platform_unavailable",
                None,
            ),
            (
                DeliveryError::Rejected {
                    status: 404,
                    detail: secret.into(),
                },
                StatusCode::NOT_FOUND,
                "platform_not_found",
                None,
            ),
            (
                DeliveryError::Rejected {
                    status: 400,
                    detail: secret.into(),
                },
                StatusCode::UNPROCESSABLE_ENTITY,
                "platform_rejected",
                None,
            ),
            (
                DeliveryError::Rejected {
                    status: 409,
                    detail: secret.into(),
                },
                StatusCode::CONFLICT,
                "platform_conflict",
                None,
            ),
            (
                DeliveryError::Rejected {
                    status: 403,
                    detail: secret.into(),
                },
                StatusCode::BAD_GATEWAY,
                "platform_forbidden",
                None,
            ),
            (
                DeliveryError::Misconfigured {
                    detail: secret.into(),
                },
                StatusCode::BAD_GATEWAY,
                "platform_misconfigured",
                None,
            ),
        ];
        for (error, status, code, retry) in cases {
            let (got, retry_after, body) = answer(error).await;
            assert_eq!(got, status, "{code}");
            assert_eq!(body["error"], code);
            assert_eq!(retry_after.as_deref(), retry, "{code}");
            assert!(body["correlation_id"].is_string());
            let text = body.to_string();
            assert!(
                !text.contains("abc123") && !text.contains("user 42"),
                "{code}: {text}"
            );
        }
    }

    #[test]
    fn text_fields_are_bounded_and_clean() {
        assert!(check_text("tag", None).is_ok());
        assert!(check_text("tag", Some("final")).is_ok());
        assert!(check_text("tag", Some("  ")).is_err());
        assert!(check_text("tag", Some("a\u{0}b")).is_err());
        assert!(check_text("tag", Some(&"x".repeat(MAX_TEXT + 1))).is_err());
        assert!(check_maximum(0.0).is_err());
        assert!(check_maximum(f64::NAN).is_err());
        assert!(check_maximum(100.0).is_ok());
    }
}
