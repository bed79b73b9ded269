//! The log of score posts (AGS §3.4) as the platform received them: when each arrived and
//! was answered, the score it carried (line item, `userId`, `timestamp`) and the answer.
//!
//! Tests read it to check what a tool did over time: that one score was not sent twice at
//! once, that scores for a learner arrived oldest first, that a retry waited at least the
//! `Retry-After` the platform gave, and that the request rate stayed under a limit. Times are
//! the wall clock, the clock tools stamp their own records with. A post whose connection the
//! tool closed before the answer (a tool killed mid-send) is logged too, as abandoned.

use super::SimulatedLms;
use super::respond::Refusal;
use super::stats::RejectReason;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;
use time::OffsetDateTime;

/// The status logged for a post abandoned before the platform processed it (the tool went
/// away; the code web servers log for a client that closed its request).
const NOT_PROCESSED: u16 = 499;

/// The largest score body read; a score is a few hundred bytes.
const MAX_SCORE_BODY: usize = 1 << 20;

/// One score post as the platform saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreRequestRecord {
    /// The line item posted to, as in its URL.
    pub line_item_id: String,
    /// The body's `userId`, when the body could be read.
    pub user_id: Option<String>,
    /// The body's `timestamp`, verbatim.
    pub timestamp: Option<String>,
    pub score_given: Option<f64>,
    pub comment: Option<String>,
    /// When the request reached the score endpoint.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When its answer was sent, or when the tool went away.
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// The answer's status: what the platform decided, even when the tool went away before
    /// hearing it; 499 when the tool went away before the platform looked at the score.
    pub status: u16,
    /// The tool closed the connection before the answer was sent.
    pub abandoned: bool,
    /// The answer's `Retry-After`, in seconds, when it had one.
    pub retry_after_secs: Option<u64>,
}

impl ScoreRequestRecord {
    /// Whether the platform took the score (2xx).
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Whether this and `other` were being handled at the same time.
    pub fn overlaps(&self, other: &ScoreRequestRecord) -> bool {
        self.started_at < other.finished_at && other.started_at < self.finished_at
    }
}

/// The log, and when each access token was first used for a score post (by the SHA-256 of
/// the token, so that no usable bearer secret is kept).
#[derive(Debug, Default)]
pub(super) struct ScoreLog {
    requests: Mutex<Vec<ScoreRequestRecord>>,
    first_use: Mutex<HashMap<Vec<u8>, Instant>>,
}

impl ScoreLog {
    fn requests(&self) -> MutexGuard<'_, Vec<ScoreRequestRecord>> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the bearer token of this request has outlived `life` since its first score
    /// post; remembers the first use.
    fn outlived(&self, bearer: &str, life: std::time::Duration) -> bool {
        let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bearer.as_bytes())
            .as_ref()
            .to_vec();
        let now = Instant::now();
        let mut first = self.first_use.lock().unwrap_or_else(|e| e.into_inner());
        let since = *first.entry(hash).or_insert(now);
        now.duration_since(since) > life
    }
}

impl SimulatedLms {
    /// Every score post received, in arrival order, including those refused or failed by
    /// fault injection.
    pub fn score_requests(&self) -> Vec<ScoreRequestRecord> {
        self.inner.received.requests().clone()
    }
}

/// A post being handled; logged when dropped, so that a post the tool abandons (its future
/// is dropped with the connection) is logged too.
struct InFlight {
    lms: SimulatedLms,
    record: ScoreRequestRecord,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.record.finished_at = OffsetDateTime::now_utc();
        let record = self.record.clone();
        self.lms.inner.received.requests().push(record);
    }
}

/// Wraps the score endpoint: logs each post and applies the score-only faults (hold time,
/// early token expiry, delayed answer) around the endpoint.
pub(super) async fn record(
    State(lms): State<SimulatedLms>,
    Path((_course_id, line_item_id)): Path<(String, String)>,
    request: Request,
    next: Next,
) -> Response {
    let started_at = OffsetDateTime::now_utc();
    let (parts, body) = request.into_parts();
    let (bytes, response) = match axum::body::to_bytes(body, MAX_SCORE_BODY).await {
        Ok(bytes) => (bytes, None),
        Err(_) => (
            axum::body::Bytes::new(),
            Some(StatusCode::PAYLOAD_TOO_LARGE.into_response()),
        ),
    };
    let score: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let text = |name: &str| score.get(name).and_then(Value::as_str).map(str::to_owned);
    let mut in_flight = InFlight {
        lms: lms.clone(),
        record: ScoreRequestRecord {
            line_item_id,
            user_id: text("userId"),
            timestamp: text("timestamp"),
            score_given: score.get("scoreGiven").and_then(Value::as_f64),
            comment: text("comment"),
            started_at,
            finished_at: started_at,
            status: NOT_PROCESSED,
            abandoned: true,
            retry_after_secs: None,
        },
    };
    let hold = lms.faults().score_latency();
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, token)| token.trim().to_owned());
    let expired = match (lms.faults().token_life_after_use(), &bearer) {
        (Some(life), Some(bearer)) => lms.inner.received.outlived(bearer, life),
        _ => false,
    };
    let response = match response {
        Some(r) => r,
        None if expired => {
            // The endpoint would have counted the post; it never sees this one.
            lms.count(|s| s.score_posts += 1);
            lms.refuse(
                Refusal::json(
                    RejectReason::TokenExpired,
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the access token has expired",
                )
                .header(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\""),
            )
        }
        None => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    };
    in_flight.record.status = response.status().as_u16();
    in_flight.record.retry_after_secs = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let delay = lms.faults().score_answer_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    in_flight.record.abandoned = false;
    drop(in_flight);
    response
}
