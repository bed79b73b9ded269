//! Refusals and request parameters shared by the platform's endpoints.
//!
//! Every refusal carries the [`RejectReason`] it is counted under, so that the counting
//! happens in one place and no handler can forget it.

use super::stats::RejectReason;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;

/// A refused request: the reason it is counted under and the answer the client gets.
#[derive(Debug)]
pub(super) struct Refusal {
    pub reason: RejectReason,
    // Boxed so that `Result<_, Refusal>` stays small on the happy path.
    pub response: Box<Response>,
}

impl Refusal {
    /// A JSON body `{"error": code, "error_description": description}`, the shape of OAuth 2
    /// errors (RFC 6749 §5.2) that most LMS service endpoints also use.
    pub fn json(
        reason: RejectReason,
        status: StatusCode,
        code: &str,
        description: impl Into<String>,
    ) -> Self {
        let body = json!({"error": code, "error_description": description.into()});
        Self {
            reason,
            response: Box::new((status, axum::Json(body)).into_response()),
        }
    }

    /// Any prepared response.
    pub fn with_response(reason: RejectReason, response: Response) -> Self {
        Self {
            reason,
            response: Box::new(response),
        }
    }

    /// Adds a header to the answer.
    pub fn header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.response.headers_mut().insert(name, v);
        }
        self
    }
}

/// An HTML page answer.
pub(super) fn html(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A JSON answer with a specific media type (AGS and NRPS each have their own).
pub(super) fn json_as(status: StatusCode, media_type: &str, value: &serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, media_type)
        .body(Body::from(value.to_string()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The media type of a `Content-Type` header without parameters, lower-cased.
pub(super) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    Some(essence.to_ascii_lowercase())
}

/// Decoded `application/x-www-form-urlencoded` parameters in the order they came.
///
/// Repeated names are kept so that the endpoints can refuse them: OAuth 2 parameters "MUST
/// NOT be included more than once" (RFC 6749 §3.1, §3.2).
#[derive(Debug, Default)]
pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(encoded: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(encoded).into_owned().collect())
    }

    pub fn from_query(query: Option<&str>) -> Self {
        Self::parse(query.unwrap_or_default().as_bytes())
    }

    /// The value of `name`, if it was sent exactly once and is not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        let mut found = self.0.iter().filter(|(k, _)| k == name);
        match (found.next(), found.next()) {
            (Some((_, v)), None) if !v.is_empty() => Some(v),
            _ => None,
        }
    }

    /// The first of `names` that was sent more than once.
    pub fn repeated<'n>(&self, names: &[&'n str]) -> Option<&'n str> {
        names
            .iter()
            .find(|n| self.0.iter().filter(|(k, _)| k == *n).count() > 1)
            .copied()
    }
}

/// One page of a listing: how many items, and which page (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Paging {
    pub limit: usize,
    pub page: usize,
}

impl Paging {
    /// Reads `limit` and `page`; `limit` defaults to `default` and is capped at `max`.
    pub fn from_params(p: &Params, default: usize, max: usize) -> Result<Self, Refusal> {
        let bad = |what: &str| {
            Refusal::json(
                RejectReason::InvalidPaging,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("{what} must be a positive integer"),
            )
        };
        let limit = match p.get("limit") {
            None => default,
            Some(v) => v
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("limit"))?,
        };
        let page = match p.get("page") {
            None => 1,
            Some(v) => v
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("page"))?,
        };
        Ok(Self {
            limit: limit.min(max.max(1)),
            page,
        })
    }

    /// The items of this page, and whether another page follows.
    pub fn slice<'a, T>(&self, items: &'a [T]) -> (&'a [T], bool) {
        let start = self.limit.saturating_mul(self.page - 1).min(items.len());
        let end = start.saturating_add(self.limit).min(items.len());
        (&items[start..end], end < items.len())
    }
}

/// An RFC 8288 `Link` header value for the next page: `url` with `page` advanced and `limit`
/// set, every other query parameter kept.
pub(super) fn next_link(url: &url::Url, paging: Paging) -> String {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "page" && k != "limit")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut next = url.clone();
    next.set_query(None);
    {
        let mut q = next.query_pairs_mut();
        q.extend_pairs(kept)
            .append_pair("limit", &paging.limit.to_string())
            .append_pair("page", &(paging.page + 1).to_string());
    }
    format!("<{next}>; rel=\"next\"")
}
