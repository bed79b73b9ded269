//! What a platform's HTTP answer means for the caller: retry, slow down, or give up.

use std::time::{Duration, SystemTime};

/// How a failed service call should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceErrorKind {
    /// 429, 503 with Retry-After, Canvas's `403 Rate Limit Exceeded`.
    RateLimited,
    /// 401: the access token was refused.
    Unauthorized,
    /// 5xx, 408, connection and timeout failures.
    Transient,
    /// 4xx that will fail again (400, 403, 404, 409, 422, ...).
    Rejected,
    /// The token endpoint granted none of the scopes asked for.
    InvalidScope,
}

/// A failed call to a platform service, with what we can safely show of its answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ServiceError {
    pub kind: ServiceErrorKind,
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    /// The first few hundred bytes of the platform's body, control characters removed.
    pub detail: String,
}

const DETAIL_LIMIT: usize = 300;

impl ServiceError {
    fn describe(&self) -> String {
        match self.status {
            Some(s) => format!("HTTP {s}: {}", self.detail),
            None => self.detail.clone(),
        }
    }

    /// A transport failure: no answer at all.
    pub fn transport(err: &reqwest::Error) -> Self {
        let what = if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        Self {
            kind: ServiceErrorKind::Transient,
            status: None,
            retry_after: None,
            detail: what.to_owned(),
        }
    }

    /// Classifies a non-success answer.
    pub fn from_parts(status: u16, headers: &http::HeaderMap, body: &str) -> Self {
        let retry_after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let detail = excerpt(body);
        let kind = match status {
            429 => ServiceErrorKind::RateLimited,
            // Canvas answered over-limit requests with 403 before it moved to 429.
            403 if body.contains("Rate Limit Exceeded") => ServiceErrorKind::RateLimited,
            503 if retry_after.is_some() => ServiceErrorKind::RateLimited,
            401 => ServiceErrorKind::Unauthorized,
            400 if body.contains("invalid_scope") => ServiceErrorKind::InvalidScope,
            408 | 425 => ServiceErrorKind::Transient,
            s if s >= 500 => ServiceErrorKind::Transient,
            _ => ServiceErrorKind::Rejected,
        };
        Self {
            kind,
            status: Some(status),
            retry_after,
            detail,
        }
    }

    /// Reads a failed response's body and classifies it.
    pub async fn from_response(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        Self::from_parts(status, &headers, &body)
    }
}

fn excerpt(body: &str) -> String {
    let cleaned: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(DETAIL_LIMIT)
        .collect();
    cleaned.trim().to_owned()
}

/// Parses `Retry-After` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn classification() {
        let h = http::HeaderMap::new();
        assert_eq!(
            ServiceError::from_parts(403, &h, "403 Forbidden (Rate Limit Exceeded)").kind,
            ServiceErrorKind::RateLimited
        );
        assert_eq!(
            ServiceError::from_parts(403, &h, "not allowed").kind,
            ServiceErrorKind::Rejected
        );
        assert_eq!(
            ServiceError::from_parts(400, &h, r#"{"error":"invalid_scope"}"#).kind,
            ServiceErrorKind::InvalidScope
        );
        assert_eq!(
            ServiceError::from_parts(502, &h, "").kind,
            ServiceErrorKind::Transient
        );
        assert_eq!(
            ServiceError::from_parts(422, &h, "").kind,
            ServiceErrorKind::Rejected
        );
        let mut h = http::HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, "3".parse().unwrap());
        let e = ServiceError::from_parts(429, &h, "slow down\n<b>");
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
        assert_eq!(e.detail, "slow down <b>");
    }
}
