//! Assignment and Grade Services 2.0: the client, its errors, and scores (AGS §3.4).
//!
//! Line items (§3.2) live in [`lineitems`], results (§3.5) in [`results`]. Every call goes
//! through [`AgsClient`], which takes an access token for exactly the scope the call needs
//! from the shared [`TokenClient`] and, when the platform answers 401, drops that token and
//! tries once more with a fresh one. Every other non-2xx answer becomes an [`AgsError`]
//! variant named for what it means.

pub mod lineitems;
pub mod results;

use crate::http_error::{ServiceError, ServiceErrorKind};
use crate::keys::ToolKey;
use crate::service_url::append_segment;
use crate::token::{AccessToken, TokenClient, TokenEndpoint};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use url::Url;

pub use lineitems::{LineItem, LineItemPage, LineItemQuery, LineItemUrl, PlatformLineItem};
pub use results::{LineItemResult, ResultsPage, ResultsQuery};

pub const SCOPE_LINEITEM: &str = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem";
pub const SCOPE_LINEITEM_READONLY: &str =
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly";
pub const SCOPE_RESULT_READONLY: &str =
    "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly";
pub const SCOPE_SCORE: &str = "https://purl.imsglobal.org/spec/lti-ags/scope/score";
pub const MEDIA_TYPE_SCORE: &str = "application/vnd.ims.lis.v1.score+json";
pub const MEDIA_TYPE_LINE_ITEM: &str = "application/vnd.ims.lis.v2.lineitem+json";
pub const MEDIA_TYPE_LINE_ITEMS: &str = "application/vnd.ims.lis.v2.lineitemcontainer+json";
pub const MEDIA_TYPE_RESULTS: &str = "application/vnd.ims.lis.v2.resultcontainer+json";
/// Canvas's score extension: whether the score makes a submission, and when it was made.
pub const CANVAS_SUBMISSION_EXTENSION: &str = "https://canvas.instructure.com/lti/submission";

/// A score as sent on the wire (AGS §3.4.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Score {
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_given: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_maximum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// ISO 8601 with sub-second precision; platforms order scores by it.
    pub timestamp: String,
    pub activity_progress: String,
    pub grading_progress: String,
}

/// Canvas's `https://canvas.instructure.com/lti/submission` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanvasSubmission {
    /// Whether Canvas records a new submission attempt. It defaults to true, which would
    /// mark a learner who has not handed anything in as submitted.
    pub new_submission: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission_type: Option<String>,
    /// When the learner submitted; Canvas judges lateness by it.
    pub submitted_at: String,
}

impl CanvasSubmission {
    /// The extension for a score: a submission only once the learner handed the work in.
    pub fn for_score(score: &Score) -> Self {
        Self {
            new_submission: matches!(score.activity_progress.as_str(), "Submitted" | "Completed"),
            submission_type: None,
            submitted_at: score.timestamp.clone(),
        }
    }
}

/// A score with the platform extensions sent alongside it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScorePost {
    #[serde(flatten)]
    pub score: Score,
    #[serde(
        rename = "https://canvas.instructure.com/lti/submission",
        skip_serializing_if = "Option::is_none"
    )]
    pub canvas_submission: Option<CanvasSubmission>,
}

impl From<Score> for ScorePost {
    fn from(score: Score) -> Self {
        Self {
            score,
            canvas_submission: None,
        }
    }
}

/// Formats a timestamp as AGS wants it: UTC, microsecond precision.
///
/// Microseconds matter: a platform keeps the score with the latest timestamp and refuses
/// (Moodle: 409) or ignores an older or equal one, and two grades can be set within one
/// millisecond. The store hands out strictly increasing values per (line item, learner).
pub fn format_timestamp(unix_micros: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_micros) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

/// Posts a score to a line item's scores endpoint with a token the caller holds. Returns
/// the HTTP status on success. [`AgsClient::post_score`] also handles the token.
pub async fn post_score(
    http: &reqwest::Client,
    token: &AccessToken,
    line_item: &Url,
    score: &Score,
) -> Result<u16, ServiceError> {
    let url = append_segment(line_item, "scores");
    let body = serde_json::to_vec(score).map_err(|_| ServiceError {
        kind: ServiceErrorKind::Rejected,
        status: None,
        retry_after: None,
        detail: "score could not be encoded".into(),
    })?;
    let resp = http
        .post(url)
        .bearer_auth(token.secret())
        .header(http::header::CONTENT_TYPE, MEDIA_TYPE_SCORE)
        .body(body)
        .send()
        .await
        .map_err(|e| ServiceError::transport(&e))?;
    if resp.status().is_success() {
        Ok(resp.status().as_u16())
    } else {
        Err(ServiceError::from_response(resp).await)
    }
}

/// Why an AGS call failed. Each platform answer has its own variant; the [`ServiceError`]
/// inside keeps the status, `Retry-After` and a cleaned excerpt of the body, which is for
/// logs and admins, not for end users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgsError {
    /// 400: the request is malformed in the platform's eyes (Moodle: "Incorrect score received").
    #[error("the platform refused the request as malformed ({0})")]
    BadRequest(ServiceError),
    /// 401 even for a token fetched fresh after a first 401: the registration lacks the service.
    #[error("the platform refused a fresh access token ({0})")]
    Unauthorized(ServiceError),
    /// 403 that is not a throttle: the scope is not granted or the operation not allowed
    /// (Moodle's "grade sync only" mode refuses line item changes).
    #[error("the platform forbade the request ({0})")]
    Forbidden(ServiceError),
    /// 404: no such line item or container.
    #[error("the platform does not know this resource ({0})")]
    NotFound(ServiceError),
    /// 409: e.g. a score older than the one on record.
    #[error("the platform reported a conflict ({0})")]
    Conflict(ServiceError),
    /// 422: e.g. Canvas's "User not found in course or is not a student".
    #[error("the platform could not process the request ({0})")]
    Unprocessable(ServiceError),
    /// 429, Canvas's `403 Rate Limit Exceeded`, or 503 with `Retry-After`.
    #[error("rate limited by the platform ({0})")]
    RateLimited(ServiceError),
    /// 5xx (and 408, 425): worth trying again later.
    #[error("the platform failed ({0})")]
    Unavailable(ServiceError),
    /// Any other refusal (405, 410, 415, ...).
    #[error("the platform refused the request ({0})")]
    Refused(ServiceError),
    /// No answer: connection refused, reset, timed out.
    #[error("the platform could not be reached ({0})")]
    Transport(ServiceError),
    /// The token endpoint refused or failed; see the inner kind.
    #[error("no access token ({0})")]
    Token(ServiceError),
    /// A success answer that cannot be used.
    #[error("the platform's answer is unusable: {0}")]
    InvalidResponse(&'static str),
    /// The request could not be built from what the caller gave.
    #[error("the request could not be built: {0}")]
    InvalidRequest(&'static str),
}

impl From<ServiceError> for AgsError {
    fn from(e: ServiceError) -> Self {
        match (e.kind, e.status) {
            (ServiceErrorKind::RateLimited, _) => Self::RateLimited(e),
            (_, None) => Self::Transport(e),
            (_, Some(400)) => Self::BadRequest(e),
            (_, Some(401)) => Self::Unauthorized(e),
            (_, Some(403)) => Self::Forbidden(e),
            (_, Some(404)) => Self::NotFound(e),
            (_, Some(409)) => Self::Conflict(e),
            (_, Some(422)) => Self::Unprocessable(e),
            (ServiceErrorKind::Transient, Some(_)) => Self::Unavailable(e),
            _ => Self::Refused(e),
        }
    }
}

impl AgsError {
    /// The platform's answer, when there was one to classify.
    pub fn service_error(&self) -> Option<&ServiceError> {
        match self {
            Self::BadRequest(e)
            | Self::Unauthorized(e)
            | Self::Forbidden(e)
            | Self::NotFound(e)
            | Self::Conflict(e)
            | Self::Unprocessable(e)
            | Self::RateLimited(e)
            | Self::Unavailable(e)
            | Self::Refused(e)
            | Self::Transport(e)
            | Self::Token(e) => Some(e),
            Self::InvalidResponse(_) | Self::InvalidRequest(_) => None,
        }
    }

    /// The HTTP status the platform answered with.
    pub fn status(&self) -> Option<u16> {
        self.service_error().and_then(|e| e.status)
    }

    /// How long the platform asked us to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        self.service_error().and_then(|e| e.retry_after)
    }
}

/// How the tool authenticates to one platform's services.
#[derive(Debug, Clone)]
pub struct ServiceAuth {
    pub endpoint: TokenEndpoint,
    pub key: ToolKey,
}

/// The AGS client. Cheap to clone; clones share the token cache.
#[derive(Debug, Clone)]
pub struct AgsClient {
    http: reqwest::Client,
    tokens: TokenClient,
    /// Per token endpoint, the scope line item reads last succeeded with.
    read_scope: Arc<Mutex<HashMap<ReadScopeKey, &'static str>>>,
}

type ReadScopeKey = (String, String, String);

/// Scopes that let a tool read line items, narrowest first. Platforms differ in which they
/// grant: Moodle's "grade sync only" mode permits only `lineitem.readonly`, while a platform
/// that lets the tool manage columns may advertise only `lineitem` and refuse a token that
/// carries just the read-only scope.
const READ_SCOPES: [&str; 2] = [SCOPE_LINEITEM_READONLY, SCOPE_LINEITEM];

/// Largest answer read from a platform; a line item or result page is a few kilobytes.
const BODY_LIMIT: usize = 8 * 1024 * 1024;
/// Most pages followed for one listing, so a platform whose `next` links never end cannot
/// keep a request busy forever.
pub const MAX_PAGES: usize = 500;

/// A platform's answer to a score post.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreAnswer {
    pub status: u16,
    /// Canvas's `X-Rate-Limit-Remaining`: what is left of its leaky bucket (700 when idle).
    pub rate_limit_remaining: Option<f64>,
}

/// Reads `X-Rate-Limit-Remaining`; a value that is not a finite number is ignored.
pub fn rate_limit_remaining(headers: &http::HeaderMap) -> Option<f64> {
    headers
        .get("x-rate-limit-remaining")?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

impl AgsClient {
    pub fn new(http: reqwest::Client, tokens: TokenClient) -> Self {
        Self {
            http,
            tokens,
            read_scope: Arc::default(),
        }
    }

    /// The token cache (for metrics and tests).
    pub fn tokens(&self) -> &TokenClient {
        &self.tokens
    }

    /// Posts a score (§3.4) to `line_item`'s scores endpoint. Returns the HTTP status.
    pub async fn post_score(
        &self,
        auth: &ServiceAuth,
        line_item: &LineItemUrl,
        score: &ScorePost,
    ) -> Result<u16, AgsError> {
        Ok(self.send_score(auth, line_item, score).await?.status)
    }

    /// Posts a score (§3.4) and reports, beside the status, what the platform says is left of
    /// its rate budget (Canvas's leaky bucket sends `X-Rate-Limit-Remaining` on every answer).
    pub async fn send_score(
        &self,
        auth: &ServiceAuth,
        line_item: &LineItemUrl,
        score: &ScorePost,
    ) -> Result<ScoreAnswer, AgsError> {
        let url = append_segment(line_item.as_url(), "scores");
        let body = serde_json::to_vec(score)
            .map_err(|_| AgsError::InvalidRequest("the score could not be encoded"))?;
        let resp = self
            .execute(auth, SCOPE_SCORE, || {
                self.http
                    .post(url.clone())
                    .header(http::header::CONTENT_TYPE, MEDIA_TYPE_SCORE)
                    .body(body.clone())
            })
            .await?;
        Ok(ScoreAnswer {
            status: resp.status().as_u16(),
            rate_limit_remaining: rate_limit_remaining(resp.headers()),
        })
    }

    /// Sends a request with a token for `scope`; on 401 drops the token and sends once more
    /// with a fresh one. Any non-success answer becomes an error.
    async fn execute(
        &self,
        auth: &ServiceAuth,
        scope: &'static str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, AgsError> {
        let scopes = [scope];
        let token = self.token(auth, &scopes).await?;
        match send(build().bearer_auth(token.secret())).await {
            Err(AgsError::Unauthorized(_)) => {
                self.tokens.invalidate(&auth.endpoint, &scopes, &token);
                let fresh = self.token(auth, &scopes).await?;
                send(build().bearer_auth(fresh.secret())).await
            }
            other => other,
        }
    }

    /// Sends a line item read with a token for one of [`READ_SCOPES`]: the one that worked
    /// last for this platform, else each in turn while the platform refuses the scope (no
    /// token for it, or a token for it refused with 401 or 403).
    async fn execute_read(
        &self,
        auth: &ServiceAuth,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, AgsError> {
        let key = (
            auth.endpoint.issuer.clone(),
            auth.endpoint.client_id.clone(),
            auth.endpoint.token_url.to_string(),
        );
        let known = lock(&self.read_scope).get(&key).copied();
        let mut order: Vec<&'static str> = known.into_iter().collect();
        order.extend(READ_SCOPES.iter().filter(|s| Some(**s) != known));
        let last = order.len() - 1;
        for (i, scope) in order.into_iter().enumerate() {
            match self.execute(auth, scope, &build).await {
                Ok(resp) => {
                    lock(&self.read_scope).insert(key, scope);
                    return Ok(resp);
                }
                Err(e) if i < last && refuses_scope(&e) => {
                    tracing::debug!(scope, error = %e, "line item read refused for this scope; trying the next");
                }
                Err(e) => return Err(e),
            }
        }
        Err(AgsError::InvalidRequest("no scope to read line items with"))
    }

    async fn token(&self, auth: &ServiceAuth, scopes: &[&str]) -> Result<AccessToken, AgsError> {
        self.tokens
            .token(&auth.endpoint, scopes, &auth.key)
            .await
            .map_err(AgsError::Token)
    }
}

/// True when the platform refused the token's scope rather than the request.
fn refuses_scope(e: &AgsError) -> bool {
    match e {
        AgsError::Unauthorized(_) | AgsError::Forbidden(_) => true,
        AgsError::Token(s) => matches!(
            s.kind,
            ServiceErrorKind::InvalidScope | ServiceErrorKind::Rejected
        ),
        _ => false,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn send(req: reqwest::RequestBuilder) -> Result<reqwest::Response, AgsError> {
    let resp = req
        .send()
        .await
        .map_err(|e| AgsError::Transport(ServiceError::transport(&e)))?;
    if resp.status().is_success() {
        Ok(resp)
    } else {
        Err(ServiceError::from_response(resp).await.into())
    }
}

/// Reads a success answer's body, at most [`BODY_LIMIT`] bytes of it.
async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, AgsError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| AgsError::Transport(ServiceError::transport(&e)))?
    {
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(AgsError::InvalidResponse("the answer is larger than 8 MiB"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The `rel="next"` link of a page, if it stays on the platform's origin. A bearer token
/// must never follow a link to another host, whatever the platform (or a cursor) says.
fn next_link(headers: &http::HeaderMap, page_url: &Url) -> Result<Option<Url>, AgsError> {
    match crate::link_header::find_link(headers, page_url, "next") {
        Some(next) if next.origin() != page_url.origin() => Err(AgsError::InvalidResponse(
            "the next page link points to another host",
        )),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canvas_rate_budget_is_read_when_it_is_a_number() {
        let mut h = http::HeaderMap::new();
        assert_eq!(rate_limit_remaining(&h), None);
        h.insert("x-rate-limit-remaining", "612.75".parse().unwrap());
        assert_eq!(rate_limit_remaining(&h), Some(612.75));
        h.insert("x-rate-limit-remaining", "NaN".parse().unwrap());
        assert_eq!(rate_limit_remaining(&h), None);
        h.insert("x-rate-limit-remaining", "lots".parse().unwrap());
        assert_eq!(rate_limit_remaining(&h), None);
    }

    #[test]
    fn timestamps_carry_microseconds() {
        assert_eq!(
            format_timestamp(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000000Z");
    }

    fn score(progress: &str) -> Score {
        Score {
            user_id: "u1".into(),
            score_given: Some(8.0),
            score_maximum: Some(10.0),
            comment: None,
            timestamp: format_timestamp(0),
            activity_progress: progress.into(),
            grading_progress: "FullyGraded".into(),
        }
    }

    #[test]
    fn score_wire_names() {
        let v = serde_json::to_value(ScorePost::from(score("Completed"))).unwrap();
        assert_eq!(v["userId"], "u1");
        assert_eq!(v["scoreGiven"], 8.0);
        assert_eq!(v["gradingProgress"], "FullyGraded");
        assert!(v.get("comment").is_none());
        assert!(v.get(CANVAS_SUBMISSION_EXTENSION).is_none());
    }

    #[test]
    fn canvas_submission_only_once_handed_in() {
        for (progress, new_submission) in [
            ("Completed", true),
            ("Submitted", true),
            ("InProgress", false),
            ("Initialized", false),
        ] {
            let s = score(progress);
            let post = ScorePost {
                canvas_submission: Some(CanvasSubmission::for_score(&s)),
                score: s,
            };
            let v = serde_json::to_value(&post).unwrap();
            let ext = &v[CANVAS_SUBMISSION_EXTENSION];
            assert_eq!(ext["new_submission"], new_submission, "{progress}");
            assert_eq!(ext["submitted_at"], "1970-01-01T00:00:00.000000Z");
            assert!(ext.get("submission_type").is_none());
            assert_eq!(v["activityProgress"], progress);
        }
    }

    #[test]
    fn every_status_has_its_variant() {
        let h = http::HeaderMap::new();
        let err = |status, body: &str| AgsError::from(ServiceError::from_parts(status, &h, body));
        assert!(matches!(err(400, ""), AgsError::BadRequest(_)));
        assert!(matches!(err(401, ""), AgsError::Unauthorized(_)));
        assert!(matches!(err(403, "nope"), AgsError::Forbidden(_)));
        assert!(matches!(
            err(403, "403 Forbidden (Rate Limit Exceeded)"),
            AgsError::RateLimited(_)
        ));
        assert!(matches!(err(404, ""), AgsError::NotFound(_)));
        assert!(matches!(err(409, ""), AgsError::Conflict(_)));
        assert!(matches!(err(415, ""), AgsError::Refused(_)));
        assert!(matches!(err(422, ""), AgsError::Unprocessable(_)));
        assert!(matches!(err(429, ""), AgsError::RateLimited(_)));
        assert!(matches!(err(500, ""), AgsError::Unavailable(_)));
        assert!(matches!(err(503, ""), AgsError::Unavailable(_)));
        assert_eq!(err(422, "").status(), Some(422));
    }

    #[test]
    fn next_links_stay_on_the_platform() {
        let page = Url::parse("https://lms.example/api/line_items?page=1").unwrap();
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::LINK,
            "</api/line_items?page=2>; rel=\"next\"".parse().unwrap(),
        );
        assert_eq!(
            next_link(&h, &page).unwrap().unwrap().as_str(),
            "https://lms.example/api/line_items?page=2"
        );
        h.insert(
            http::header::LINK,
            "<https://collector.example/steal>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert!(matches!(
            next_link(&h, &page),
            Err(AgsError::InvalidResponse(_))
        ));
    }
}
