//! The product API for rosters read by LTI Names and Role Provisioning Services 2.0:
//! start a sync of a context (`POST /api/v1/contexts/{id}/sync`), follow it
//! (`GET /api/v1/roster-syncs/{id}`), and list the context's members with their roles and
//! status (`GET /api/v1/contexts/{id}/members`). Context ids are the ones launches hand the
//! product.

use super::api::TenantApiKey;
use super::error::ApiError;
use crate::App;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::{Actor, ContextId, EnrollmentStatus, PersonId, Role};
use lti::nrps::MembershipQuery;
use serde_json::{Value, json};
use std::collections::HashMap;
use store::{MemberQuery, RosterSync, RosterSyncId, SyncKind, SyncState};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;
/// Longer than any role URI a platform sends.
const MAX_ROLE_LEN: usize = 500;

/// Query parameters, each at most once.
fn params(raw: Option<&str>, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(ApiError::Invalid(format!(
                "unknown query parameter; expected one of: {}",
                allowed.join(", ")
            )));
        }
        if out.insert(k.into_owned(), v.into_owned()).is_some() {
            return Err(ApiError::Invalid(
                "a query parameter was given more than once".into(),
            ));
        }
    }
    Ok(out)
}

fn context_id(raw: &str) -> Result<ContextId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound("context_unknown"))
}

/// A sync as the product sees it.
fn sync_json(sync: &RosterSync) -> Value {
    json!({
        "id": sync.id,
        "context_id": sync.context_id,
        "kind": sync.kind,
        "state": sync.state,
        "pages_fetched": sync.pages_fetched,
        "members_seen": sync.members_seen,
        "added": sync.added,
        "updated": sync.updated,
        "removed": sync.removed,
        // Where a resumed run would go on: more pages are still to be read.
        "more_pages": !sync.state.is_finished() && sync.next_url.is_some(),
        "differences_available": sync.differences_url.is_some(),
        "error": (sync.state == SyncState::Failed).then(|| json!({
            "code": sync.error_code,
            "message": sync.error,
        })),
        "created_at": sync.created_at,
        "started_at": sync.started_at,
        "finished_at": sync.finished_at,
        "updated_at": sync.updated_at,
    })
}

/// `POST /api/v1/contexts/{id}/sync[?mode=full|differences]`: starts a roster sync and
/// answers 202 with it. `differences` reads only what changed since the last sync when the
/// platform gave a differences link, and reads everything otherwise (the answer's `kind`
/// says which). When a sync of the context is already queued or running, that one is the
/// answer.
pub async fn start_sync(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let p = params(raw.as_deref(), &["mode"])?;
    let wants_differences = match p.get("mode").map(String::as_str) {
        None | Some("full") => false,
        Some("differences") => true,
        Some(_) => {
            return Err(ApiError::Invalid("mode must be full or differences".into()));
        }
    };
    let context = context_id(&id)?;
    let tenant = app.store().tenant(&scope);
    let source = tenant.roster_source(context).await.map_err(|e| match e {
        store::StoreError::NotFound => ApiError::NotFound("context_unknown"),
        other => other.into(),
    })?;
    if let Some(active) = source.active {
        return Ok(accepted(&app, scope, &active, false));
    }
    let (kind, first_page) = match (wants_differences, &source.differences_url) {
        (true, Some(link)) => (SyncKind::Differences, Some(link.clone())),
        _ => {
            let limit = app.inner().rosters.config().page_limit;
            let query = MembershipQuery {
                limit,
                ..MembershipQuery::default()
            };
            (
                SyncKind::Full,
                source.memberships_url.as_ref().map(|u| query.url(u)),
            )
        }
    };
    let Some(first_page) = first_page else {
        return Err(ApiError::Invalid(
            "this context has no Names and Roles service: no launch from it carried the NRPS claim, \
             or the tool's registration on the platform does not offer it"
                .into(),
        ));
    };
    let queued = tenant
        .queue_roster_sync(context, kind, &first_page, &Actor::system("product-api"))
        .await
        .map_err(|e| match e {
            store::StoreError::NotFound => ApiError::NotFound("context_unknown"),
            other => other.into(),
        })?;
    Ok(accepted(&app, scope, &queued.sync, queued.created))
}

/// Makes sure the sync runs and answers 202 with it.
fn accepted(app: &App, scope: store::TenantScope, sync: &RosterSync, created: bool) -> Response {
    // Also for a sync found queued or running: after a restart nothing may be running it
    // here yet, and a sync this instance already runs is not started twice.
    app.inner().rosters.start(scope, sync.id);
    let mut body = sync_json(sync);
    body["created"] = json!(created);
    let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/roster-syncs/{}", sync.id)) {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    resp
}

/// `GET /api/v1/roster-syncs/{id}`: a sync's state and progress.
pub async fn get_sync(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: RosterSyncId = id.parse().map_err(|_| ApiError::NotFound("not_found"))?;
    let sync = app
        .store()
        .tenant(&scope)
        .roster_sync(id)
        .await?
        .ok_or(ApiError::NotFound("not_found"))?;
    Ok(Json(sync_json(&sync)))
}

/// A role as the product names it: lmsbridge's own names (`learner`, `instructor`,
/// `teaching_assistant`, ...), or an LTI role URI or short name.
fn parse_role(s: &str) -> Result<Role, ApiError> {
    if s.is_empty() || s.len() > MAX_ROLE_LEN {
        return Err(ApiError::Invalid("role must be 1 to 500 characters".into()));
    }
    if let Ok(role) = serde_json::from_value::<Role>(Value::String(s.to_owned())) {
        return Ok(role);
    }
    Ok(adapters::lti_roles(&[s.to_owned()])
        .pop()
        .unwrap_or_else(|| Role::Other(s.to_owned())))
}

/// `GET /api/v1/contexts/{id}/members[?status=active|inactive|deleted|all][&role=][&limit=][&cursor=]`:
/// the context's members with roles and status, a page at a time; `next_cursor` continues.
pub async fn list_members(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = params(raw.as_deref(), &["status", "role", "limit", "cursor"])?;
    let status = match p.get("status").map(String::as_str) {
        None | Some("active") => Some(EnrollmentStatus::Active),
        Some("inactive") => Some(EnrollmentStatus::Inactive),
        Some("deleted") => Some(EnrollmentStatus::Deleted),
        Some("all") => None,
        Some(_) => {
            return Err(ApiError::Invalid(
                "status must be active, inactive, deleted or all".into(),
            ));
        }
    };
    let role = p.get("role").map(|r| parse_role(r)).transpose()?;
    let limit = match p.get("limit") {
        None => DEFAULT_PAGE,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::Invalid("limit must be a number from 1 to 200".into()))?,
    };
    let after = p
        .get("cursor")
        .map(|c| c.parse::<PersonId>())
        .transpose()
        .map_err(|_| ApiError::Invalid("cursor is not one this API issued".into()))?;
    let context = context_id(&id)?;
    let page = app
        .store()
        .tenant(&scope)
        .list_members(
            context,
            &MemberQuery {
                status,
                role,
                after,
                limit,
            },
        )
        .await
        .map_err(|e| match e {
            store::StoreError::NotFound => ApiError::NotFound("context_unknown"),
            other => other.into(),
        })?;
    Ok(Json(json!({
        "context_id": context,
        "members": page.members,
        "next_cursor": page.next_after,
    })))
}
