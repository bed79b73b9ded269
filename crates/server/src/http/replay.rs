//! Replaying dead scores after an admin fixed what killed them (a closed course reopened, a
//! student enrolled again, a registration's scopes enabled).

use super::api::TenantApiKey;
use super::error::ApiError;
use crate::App;
use axum::Json;
use axum::extract::{Path, State};
use domain::{Actor, ScoreId};

fn api_actor() -> Actor {
    Actor::system("product-api")
}

/// `POST /api/v1/scores/{id}/replay`: queues one dead score again.
pub async fn replay_one(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id: ScoreId = id.parse().map_err(|_| ApiError::NotFound("not_found"))?;
    let tenant = app.store().tenant(&scope);
    tenant
        .score(id)
        .await?
        .ok_or(ApiError::NotFound("not_found"))?;
    let replayed = tenant.replay_dead_scores(Some(&[id]), &api_actor()).await?;
    if replayed.is_empty() {
        return Err(ApiError::Conflict(
            "only a dead score with no newer score for the same person and target can be replayed"
                .into(),
        ));
    }
    app.inner().wake_worker.notify_one();
    Ok(Json(serde_json::json!({"replayed": replayed})))
}

/// `POST /api/v1/scores:replay-dead`: queues every replayable dead score of the tenant.
pub async fn replay_all(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
) -> Result<Json<serde_json::Value>, ApiError> {
    let replayed = app
        .store()
        .tenant(&scope)
        .replay_dead_scores(None, &api_actor())
        .await?;
    if !replayed.is_empty() {
        app.inner().wake_worker.notify_one();
    }
    Ok(Json(serde_json::json!({"replayed": replayed})))
}
