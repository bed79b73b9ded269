//! The product API: redeem launches, queue scores, read their state.

use super::error::ApiError;
use crate::App;
use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use domain::{
    ActivityProgress, Actor, GradeTargetId, GradingProgress, NewScore, PersonId, ScoreId,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use store::crypto::sha256_hex;
use store::{EnqueueOutcome, ScoreRequest, TenantScope};

/// The tenant named by the request's API key.
pub struct TenantApiKey(pub TenantScope);

impl FromRequestParts<App> for TenantApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        app.store()
            .authenticate_api_key(presented)
            .await?
            .map(Self)
            .ok_or(ApiError::Unauthorized)
    }
}

/// JSON bodies whose rejections speak our error format.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| Self(v))
            .map_err(|e| ApiError::Invalid(e.body_text()))
    }
}

#[derive(Deserialize)]
pub struct RedeemBody {
    code: String,
}

/// `POST /api/v1/launches/redeem`: the one-time code from the launch redirect, for the
/// normalised launch.
pub async fn redeem(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    ApiJson(body): ApiJson<RedeemBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    app.store()
        .tenant(&scope)
        .redeem_handoff(&sha256_hex(body.code.as_bytes()))
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("code_invalid_or_used"))
}

/// A score as the product submits it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreBody {
    grade_target_id: GradeTargetId,
    person_id: PersonId,
    #[serde(default)]
    score_given: Option<f64>,
    #[serde(default)]
    score_maximum: Option<f64>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    activity_progress: ActivityProgress,
    #[serde(default)]
    grading_progress: GradingProgress,
    actor: Actor,
}

pub(super) const MAX_IDEMPOTENCY_KEY: usize = 200;

impl ScoreBody {
    /// The score to queue, validated, with the hash idempotency compares: the body
    /// re-serialised from its parsed form, so the same score hashes the same whatever its
    /// whitespace or key order, sent alone or in a batch.
    pub(super) fn into_request(
        self,
        idempotency_key: Option<String>,
    ) -> Result<ScoreRequest, ApiError> {
        let canonical = serde_json::to_vec(&self).map_err(|e| ApiError::Internal(e.into()))?;
        let score = NewScore {
            grade_target_id: self.grade_target_id,
            person_id: self.person_id,
            score_given: self.score_given,
            score_maximum: self.score_maximum,
            comment: self.comment,
            activity_progress: self.activity_progress,
            grading_progress: self.grading_progress,
            actor: self.actor,
        };
        score
            .validate()
            .map_err(|e| ApiError::Invalid(e.to_string()))?;
        Ok(ScoreRequest {
            score,
            idempotency_key,
            request_hash: sha256_hex(&canonical),
        })
    }
}

/// `POST /api/v1/scores`: queue a score. Answers 202 once the score and its audit entry are
/// committed; the worker delivers it.
pub async fn submit_score(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ScoreBody>,
) -> Result<Response, ApiError> {
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
                .ok_or_else(|| {
                    ApiError::Invalid(
                        "Idempotency-Key must be 1 to 200 visible ASCII characters".into(),
                    )
                })?
                .to_owned(),
        ),
    };
    // The body re-serialised from its parsed form: the same request hashes the same
    // whatever its whitespace or key order.
    let canonical = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.into()))?;
    let score = NewScore {
        grade_target_id: body.grade_target_id,
        person_id: body.person_id,
        score_given: body.score_given,
        score_maximum: body.score_maximum,
        comment: body.comment,
        activity_progress: body.activity_progress,
        grading_progress: body.grading_progress,
        actor: body.actor,
    };
    score
        .validate()
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    let outcome = app
        .store()
        .tenant(&scope)
        .enqueue_score(&ScoreRequest {
            score,
            idempotency_key: key,
            request_hash: sha256_hex(&canonical),
        })
        .await
        .map_err(|e| match e {
            store::StoreError::NotFound => ApiError::NotFound("grade_target_or_person_unknown"),
            other => other.into(),
        })?;
    let record = match outcome {
        EnqueueOutcome::Created(r) => {
            app.inner().wake_worker.notify_one();
            r
        }
        EnqueueOutcome::Replayed(r) => r,
    };
    Ok((StatusCode::ACCEPTED, Json(record)).into_response())
}

/// `GET /api/v1/scores/{id}`: a score's delivery state and attempts.
pub async fn get_score(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id: ScoreId = id.parse().map_err(|_| ApiError::NotFound("not_found"))?;
    let tenant = app.store().tenant(&scope);
    let record = tenant
        .score(id)
        .await?
        .ok_or(ApiError::NotFound("not_found"))?;
    let attempts = tenant.score_attempts(id).await?;
    let status = delivery_status(&record, &attempts);
    let mut v = serde_json::to_value(record).map_err(|e| ApiError::Internal(e.into()))?;
    v["status"] = status;
    v["attempt_log"] = serde_json::to_value(attempts).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(v))
}

/// The state in words a product shows as is: what the platform answered for a delivered
/// score, the attempt count and next attempt time of one being retried, the reason of a
/// dead one. Times in RFC 3339 (the record's own fields are microseconds since the epoch).
fn delivery_status(
    record: &store::ScoreRecord,
    attempts: &[store::ScoreAttempt],
) -> serde_json::Value {
    use domain::ScoreState;
    use serde_json::json;
    let at = |micros: Option<i64>| {
        micros
            .and_then(|m| {
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1_000).ok()
            })
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
    };
    let last = attempts.iter().max_by_key(|a| a.attempt);
    match record.state {
        ScoreState::Queued => json!({"state": "queued", "attempts": record.attempts}),
        ScoreState::Sending => json!({"state": "sending", "attempts": record.attempts}),
        ScoreState::Retrying => json!({
            "state": "retrying",
            "attempts": record.attempts,
            "next_attempt_at": at(record.next_attempt_at),
            "last_error": record.last_error,
            "last_platform_status": record.last_status,
        }),
        ScoreState::Delivered => json!({
            "state": "delivered",
            "attempts": record.attempts,
            "delivered_at": at(record.delivered_at),
            "platform_status": record.last_status.or(last.and_then(|a| a.status)),
            "platform_answer": last.and_then(|a| a.detail.clone()).filter(|d| !d.is_empty()),
        }),
        ScoreState::Dead => json!({
            "state": "dead",
            "attempts": record.attempts,
            "reason": record.last_error,
            "platform_status": record.last_status,
            "replay": format!("POST /api/v1/scores/{}/replay once the cause is fixed", record.id),
        }),
        ScoreState::Superseded => json!({
            "state": "superseded",
            "reason": record.last_error.clone().unwrap_or_else(|| {
                "a newer score for the same grade target and person was queued before this one was sent".into()
            }),
        }),
        ScoreState::Held => json!({"state": "held", "reason": record.last_error}),
    }
}
