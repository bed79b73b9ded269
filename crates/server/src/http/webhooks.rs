//! The product's webhook settings: `PUT /api/v1/webhook` (a URL; answers the signing secret
//! once), `GET /api/v1/webhook` (the URL and recent deliveries with their attempts),
//! `DELETE /api/v1/webhook`.

use super::api::{ApiJson, TenantApiKey};
use super::error::ApiError;
use crate::App;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use domain::Actor;
use lti::dynamic_registration::UrlPolicy;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    url: String,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<i64>,
}

fn api_actor() -> Actor {
    Actor::system("product-api")
}

/// `PUT /api/v1/webhook`.
pub async fn set(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    ApiJson(body): ApiJson<WebhookBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let url = url::Url::parse(&body.url)
        .map_err(|_| ApiError::Invalid("url must be an absolute URL".into()))?;
    let policy = UrlPolicy::for_public_url(&app.settings().public_url);
    if !policy.accepts(&url) || !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::Invalid(
            "url must be https (plain http only to a loopback address while lmsbridge itself runs on one)"
                .into(),
        ));
    }
    let secret = app
        .store()
        .tenant(&scope)
        .set_webhook(&url, &app.inner().master, &api_actor())
        .await?;
    Ok(Json(serde_json::json!({
        "url": url,
        "secret": secret,
        "events": [
            "score.delivered", "score.dead", "score.held",
            "enrollment.changed", "course.completed", "activity.completed", "grade.overridden",
        ],
        "signature": "Lmsbridge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>",
    })))
}

/// `GET /api/v1/webhook`.
pub async fn get(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let t = app.store().tenant(&scope);
    let url = t.webhook_url().await?;
    let deliveries = t.webhook_deliveries(q.limit.unwrap_or(50)).await?;
    Ok(Json(
        serde_json::json!({"url": url, "deliveries": deliveries}),
    ))
}

/// `DELETE /api/v1/webhook`.
pub async fn remove(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
) -> Result<StatusCode, ApiError> {
    app.store()
        .tenant(&scope)
        .remove_webhook(&api_actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
