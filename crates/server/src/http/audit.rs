//! `GET /api/v1/audit`: the tenant's audit log with filters, for answering "who set this
//! grade, and who corrected it".

use super::api::TenantApiKey;
use super::error::ApiError;
use crate::App;
use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use store::AuditFilter;
use store::audit::AuditEntry;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Query parameters; times are RFC 3339.
#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    person_id: Option<String>,
    grade_target_id: Option<String>,
    actor_kind: Option<String>,
    action: Option<String>,
    since: Option<String>,
    until: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

/// An entry as the API shows it: the detail parsed, the time readable, the hashes kept so
/// a client can check the chain itself.
#[derive(Debug, Serialize)]
pub struct AuditItem {
    pub seq: i64,
    pub at: String,
    pub actor: serde_json::Value,
    pub action: String,
    pub subject: String,
    pub detail: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// Turns a stored entry into what the API and exports show.
pub fn item(e: AuditEntry) -> AuditItem {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.at) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    AuditItem {
        seq: e.seq,
        at,
        actor: serde_json::json!({"kind": e.actor_kind, "id": e.actor_id}),
        action: e.action,
        subject: e.subject,
        detail: serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::String(e.detail)),
        prev_hash: e.prev_hash,
        hash: e.hash,
    }
}

/// Parses an RFC 3339 time into microseconds since the epoch.
pub fn micros(value: &str, name: &str) -> Result<i64, String> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX))
        .map_err(|_| format!("{name} must be an RFC 3339 time, e.g. 2026-11-27T09:00:00Z"))
}

/// `GET /api/v1/audit`.
pub async fn list(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::Invalid(e.body_text()))?;
    if let Some(k) = &q.actor_kind
        && !matches!(k.as_str(), "instructor" | "ai_grader" | "system")
    {
        return Err(ApiError::Invalid(
            "actor_kind must be instructor, ai_grader or system".into(),
        ));
    }
    let filter = AuditFilter {
        person_id: q.person_id,
        grade_target_id: q.grade_target_id,
        actor_kind: q.actor_kind,
        action_prefix: q.action,
        since: q
            .since
            .as_deref()
            .map(|s| micros(s, "since"))
            .transpose()
            .map_err(ApiError::Invalid)?,
        until: q
            .until
            .as_deref()
            .map(|s| micros(s, "until"))
            .transpose()
            .map_err(ApiError::Invalid)?,
        after_seq: q.after,
        limit: q.limit,
    };
    let entries = app.store().tenant(&scope).query_audit(&filter).await?;
    let limit = filter
        .limit
        .unwrap_or(store::MAX_AUDIT_PAGE)
        .clamp(1, store::MAX_AUDIT_PAGE);
    let next = (i64::try_from(entries.len()).unwrap_or(0) == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    let items: Vec<AuditItem> = entries.into_iter().map(item).collect();
    Ok(Json(
        serde_json::json!({"entries": items, "next_after": next}),
    ))
}
