//! `POST /api/v1/scores:batch`: up to a thousand scores in one request, for products that
//! grade a whole class at once (an assignment deadline).
//!
//! The body is `{"scores": [ … ]}`, each item a score as `POST /api/v1/scores` takes it plus
//! an optional `idempotency_key` (what the single endpoint reads from `Idempotency-Key`).
//! Each item is checked and answered on its own, in order, in a `207 Multi-Status` answer:
//!
//! ```json
//! {"results": [
//!   {"index": 0, "status": 202, "id": "…", "state": "queued", "replayed": false},
//!   {"index": 1, "status": 422, "error": "invalid_request", "message": "score_given needs score_maximum"},
//!   {"index": 2, "status": 404, "error": "grade_target_or_person_unknown", "message": "not found"},
//!   {"index": 3, "status": 409, "error": "conflict", "message": "this Idempotency-Key was used with a different request"}
//! ], "accepted": 1, "refused": 3}
//! ```
//!
//! `state` is `superseded` for an item followed in the same batch by another score for the
//! same target and person. Every accepted item is queued in one transaction, with the
//! semantics of the single endpoint (`store::TenantStore::enqueue_scores`). A body that is
//! not JSON of that shape, has no items or more than [`MAX_ITEMS`] is refused whole with
//! 422, and one larger than [`BODY_LIMIT`] with 413; nothing is queued then.

use super::api::{MAX_IDEMPOTENCY_KEY, ScoreBody, TenantApiKey};
use super::error::ApiError;
use crate::App;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use store::{ScoreBatchOutcome, ScoreRequest};

/// The most scores in one request.
pub const MAX_ITEMS: usize = 1_000;

/// The largest batch body: a thousand scores with comments of a few thousand characters.
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    scores: Vec<Value>,
}

/// An item's refusal, before or after the store saw it.
fn refusal(index: usize, status: u16, error: &str, message: &str) -> Value {
    json!({"index": index, "status": status, "error": error, "message": message})
}

/// The idempotency key of an item: absent, or 1 to 200 visible ASCII characters (what the
/// single endpoint accepts in its header).
fn idempotency_key(item: &mut Map<String, Value>) -> Result<Option<String>, &'static str> {
    const INVALID: &str = "idempotency_key must be 1 to 200 visible ASCII characters";
    match item.remove("idempotency_key") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(k))
            if !k.is_empty()
                && k.len() <= MAX_IDEMPOTENCY_KEY
                && k.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) =>
        {
            Ok(Some(k))
        }
        Some(_) => Err(INVALID),
    }
}

/// Parses and validates one item.
fn item_request(item: Value) -> Result<ScoreRequest, String> {
    let Value::Object(mut fields) = item else {
        return Err("each score must be a JSON object".to_owned());
    };
    let key = idempotency_key(&mut fields).map_err(str::to_owned)?;
    // serde's message names the field at fault (or the unknown one) and nothing else.
    let body: ScoreBody =
        serde_json::from_value(Value::Object(fields)).map_err(|e| e.to_string())?;
    body.into_request(key).map_err(|e| match e {
        ApiError::Invalid(m) => m,
        _ => "the score could not be read".to_owned(),
    })
}

/// `POST /api/v1/scores:batch`.
pub async fn submit_batch(
    State(app): State<App>,
    TenantApiKey(scope): TenantApiKey,
    request: Request,
) -> Result<Response, ApiError> {
    let json_body = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_body {
        return Err(ApiError::Invalid(
            "Content-Type must be application/json".into(),
        ));
    }
    let Ok(bytes) = axum::body::to_bytes(request.into_body(), BODY_LIMIT).await else {
        return Ok((
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({
                "error": "payload_too_large",
                "message": format!("a batch body may hold at most {BODY_LIMIT} bytes"),
            })),
        )
            .into_response());
    };
    let body: BatchBody = serde_json::from_slice(&bytes).map_err(|_| {
        ApiError::Invalid(
            "the body must be JSON of the form {\"scores\": [ … ]}, each item a score".into(),
        )
    })?;
    if body.scores.is_empty() || body.scores.len() > MAX_ITEMS {
        return Err(ApiError::Invalid(format!(
            "scores must hold 1 to {MAX_ITEMS} items; this one holds {}",
            body.scores.len()
        )));
    }

    let total = body.scores.len();
    let mut results: Vec<Option<Value>> = vec![None; total];
    let mut valid: Vec<ScoreRequest> = Vec::with_capacity(total);
    let mut positions: Vec<usize> = Vec::with_capacity(total);
    for (index, item) in body.scores.into_iter().enumerate() {
        match item_request(item) {
            Ok(req) => {
                valid.push(req);
                positions.push(index);
            }
            Err(message) => {
                results[index] = Some(refusal(index, 422, "invalid_request", &message));
            }
        }
    }
    let outcomes = app.store().tenant(&scope).enqueue_scores(&valid).await?;
    let mut created = false;
    for (index, outcome) in positions.into_iter().zip(outcomes) {
        results[index] = Some(match outcome {
            ScoreBatchOutcome::Created(r) => {
                created = true;
                json!({"index": index, "status": 202, "id": r.id, "state": r.state, "replayed": false})
            }
            ScoreBatchOutcome::Replayed(r) => {
                json!({"index": index, "status": 202, "id": r.id, "state": r.state, "replayed": true})
            }
            ScoreBatchOutcome::Conflict(m) => refusal(index, 409, "conflict", m),
            ScoreBatchOutcome::NotFound => {
                refusal(index, 404, "grade_target_or_person_unknown", "not found")
            }
        });
    }
    if created {
        app.inner().wake_worker.notify_one();
    }
    let results: Vec<Value> = results.into_iter().flatten().collect();
    let accepted = results.iter().filter(|r| r["status"] == 202).count();
    Ok((
        StatusCode::MULTI_STATUS,
        Json(json!({"results": results, "accepted": accepted, "refused": total - accepted})),
    )
        .into_response())
}
