//! `POST /moodle/events`: batches of events from the lmsbridge Moodle plugin
//! (`local_lmsbridge`), signed with the site's secret.
//!
//! The request names its site (`X-Lmsbridge-Site`), the time it was signed
//! (`X-Lmsbridge-Timestamp`, unix seconds, refused more than the window — 300 s by default —
//! from our clock) and `X-Lmsbridge-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw
//! body>")>`. The key is the secret exactly as `lmsbridge moodle pair` printed it. The MAC is
//! checked in constant time over the raw bytes before anything parses them. Each event is
//! then checked on its own: a malformed one is answered under `rejected` (the plugin gives up
//! on it) while the rest are stored. Events already stored come back under `duplicates`, so a
//! captured request replayed within the window stores nothing; outside it, it is refused.
//!
//! Whole-request refusals: 401 `{"error": "unknown_site" | "stale_timestamp" |
//! "bad_signature"}`, 400 `{"error": "malformed_body", "detail": …}`, 413 for a body over
//! 1 MiB or more than 500 events, 429 with `Retry-After` when this instance already works on
//! [`MAX_CONCURRENT_BATCHES`] batches, 503 with `Retry-After` when the database cannot take
//! the batch now. The plugin retries all but 400. Log lines carry the request id and the site id,
//! never the body, the signature or the secret.

use crate::App;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use store::crypto::{constant_time_eq, hmac_sha256_hex};
use store::{MoodleEvent, MoodleSiteId, StoreError};

/// The largest body accepted.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The most events in one request.
pub const MAX_EVENTS: usize = 500;

/// Batches one instance works on at once; more are answered 429 with `Retry-After` rather
/// than queued behind the database's writer (the plugin retries with backoff).
pub const MAX_CONCURRENT_BATCHES: usize = 8;

/// The route with its admission limit: a request that finds every permit taken is shed.
pub fn route(concurrent: usize) -> axum::routing::MethodRouter<App> {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrent));
    axum::routing::post(receive).layer(axum::middleware::from_fn(
        move |request: Request, next: axum::middleware::Next| {
            let permits = permits.clone();
            async move {
                match permits.try_acquire_owned() {
                    Ok(_permit) => next.run(request).await,
                    Err(_) => {
                        tracing::warn!("moodle events shed: too many batches in progress");
                        Refusal::Overloaded.response()
                    }
                }
            }
        },
    ))
}

/// What a refused request is answered (and logged) with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    UnknownSite,
    StaleTimestamp,
    BadSignature,
    BodyTooLarge,
    TooManyEvents,
    Overloaded,
    Unavailable,
}

impl Refusal {
    fn response(self) -> Response {
        let (status, code) = match self {
            Self::UnknownSite => (StatusCode::UNAUTHORIZED, "unknown_site"),
            Self::StaleTimestamp => (StatusCode::UNAUTHORIZED, "stale_timestamp"),
            Self::BadSignature => (StatusCode::UNAUTHORIZED, "bad_signature"),
            Self::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            Self::TooManyEvents => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_events"),
            Self::Overloaded => (StatusCode::TOO_MANY_REQUESTS, "overloaded"),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        let mut r = (status, Json(json!({"error": code}))).into_response();
        if matches!(self, Self::Overloaded | Self::Unavailable) {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        r
    }
}

fn malformed(detail: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "malformed_body", "detail": detail})),
    )
        .into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The signature header's MAC: `v1=` and 64 hex digits.
fn presented_mac(headers: &HeaderMap) -> Option<String> {
    let hex = header_str(headers, "x-lmsbridge-signature")?
        .trim()
        .strip_prefix("v1=")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// True when `mac` is the MAC of `"<timestamp>.<body>"` under the secret. The secret as
/// printed is the key; its base64url-decoded bytes are accepted too, for senders that
/// decode it first. Both comparisons run, in constant time.
fn signature_matches(secret: &str, timestamp: &str, body: &[u8], mac: &str) -> bool {
    let mut message = Vec::with_capacity(timestamp.len() + 1 + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    let as_printed = hmac_sha256_hex(secret.as_bytes(), &message);
    let mut ok = constant_time_eq(as_printed.as_bytes(), mac.as_bytes());
    if let Ok(raw) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(secret) {
        let decoded = hmac_sha256_hex(&raw, &message);
        ok |= constant_time_eq(decoded.as_bytes(), mac.as_bytes());
    }
    ok
}

/// `POST /moodle/events`.
pub async fn receive(State(app): State<App>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let request_id = header_str(headers, "x-request-id")
        .unwrap_or("-")
        .to_owned();
    let refuse = |refusal: Refusal, site: Option<&MoodleSiteId>| {
        tracing::warn!(
            request_id,
            site = site.map(MoodleSiteId::as_str),
            ?refusal,
            "moodle events refused"
        );
        refusal.response()
    };

    let Some(site) = header_str(headers, "x-lmsbridge-site").and_then(MoodleSiteId::parse) else {
        return refuse(Refusal::UnknownSite, None);
    };
    let window = app.settings().moodle_timestamp_window_secs;
    let Some(timestamp) = header_str(headers, "x-lmsbridge-timestamp")
        .filter(|t| !t.is_empty() && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()))
    else {
        return refuse(Refusal::StaleTimestamp, Some(&site));
    };
    let signed_at: i64 = timestamp.parse().unwrap_or(0);
    if (now_secs() - signed_at).abs() > window {
        return refuse(Refusal::StaleTimestamp, Some(&site));
    }
    let Some(mac) = presented_mac(headers) else {
        return refuse(Refusal::BadSignature, Some(&site));
    };
    let key = match app.store().moodle_site_key(&site).await {
        Ok(Some(k)) => k,
        Ok(None) => return refuse(Refusal::UnknownSite, Some(&site)),
        Err(e) => {
            tracing::error!(request_id, site = site.as_str(), error = %e, "looking up a moodle site failed");
            return refuse(Refusal::Unavailable, Some(&site));
        }
    };
    // Only a site we know gets its body read, and never more than the limit.
    let declared = header_str(headers, "content-length").and_then(|l| l.parse::<usize>().ok());
    if declared.is_some_and(|l| l > BODY_LIMIT) {
        return refuse(Refusal::BodyTooLarge, Some(&site));
    }
    let Ok(raw) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return refuse(Refusal::BodyTooLarge, Some(&site));
    };
    let secret = match key.secret(&app.inner().master) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(request_id, site = site.as_str(), error = %e, "opening a moodle site secret failed");
            return refuse(Refusal::Unavailable, Some(&site));
        }
    };
    if !signature_matches(secret.secret(), timestamp, &raw, &mac) {
        return refuse(Refusal::BadSignature, Some(&site));
    }

    // Authenticated from here on.
    let Ok(body) = serde_json::from_slice::<Value>(&raw) else {
        tracing::warn!(
            request_id,
            site = site.as_str(),
            "moodle events body is not JSON"
        );
        return malformed("the body is not JSON");
    };
    let Some(events) = body.get("events").and_then(Value::as_array) else {
        tracing::warn!(
            request_id,
            site = site.as_str(),
            "moodle events body has no events array"
        );
        return malformed("the body must be an object with an events array");
    };
    if events.len() > MAX_EVENTS {
        return refuse(Refusal::TooManyEvents, Some(&site));
    }
    if let Some(url) = body.get("site_url").and_then(Value::as_str)
        && url.trim_end_matches('/') != key.site_url
    {
        // Moodle's wwwroot changes (a move to https, a new domain); the pairing stands, but
        // an operator should know.
        tracing::warn!(
            request_id,
            site = site.as_str(),
            paired_url = key.site_url,
            "moodle site sends a site_url other than the one paired"
        );
    }
    let now = now_secs();
    let mut valid = Vec::with_capacity(events.len());
    let mut rejected = Vec::new();
    for v in events {
        match MoodleEvent::from_json(v, now) {
            Ok(e) => valid.push(e),
            Err(r) => rejected.push(r),
        }
    }
    let outcome = match app
        .store()
        .tenant(&key.scope)
        .record_moodle_events(&site, &valid)
        .await
    {
        Ok(o) => o,
        Err(StoreError::NotFound) => return refuse(Refusal::UnknownSite, Some(&site)),
        Err(e) => {
            tracing::error!(request_id, site = site.as_str(), error = %e, "storing moodle events failed");
            return refuse(Refusal::Unavailable, Some(&site));
        }
    };
    tracing::info!(
        request_id,
        site = site.as_str(),
        accepted = outcome.accepted.len(),
        duplicates = outcome.duplicates.len(),
        rejected = rejected.len(),
        "moodle events received"
    );
    if !outcome.accepted.is_empty() {
        // New events may have queued product webhooks.
        app.inner().wake_worker.notify_one();
    }
    Json(json!({
        "accepted": outcome.accepted,
        "duplicates": outcome.duplicates,
        "rejected": rejected,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_beyond_the_limit_are_shed_with_retry_after() {
        use tower::ServiceExt;
        let dir = std::env::temp_dir().join(format!("lmsbridge-shed-{}", uuid::Uuid::new_v4()));
        let mut settings =
            crate::Settings::defaults_for("127.0.0.1:0".parse().unwrap(), dir.clone());
        settings.master_key = Some(store::crypto::MasterKey::generate().to_base64());
        let app = crate::AppBuilder::new(settings).build().await.unwrap().app;
        // One batch to a route with this many permits.
        let post = |permits: usize| {
            axum::Router::new()
                .route("/moodle/events", route(permits))
                .with_state(app.clone())
                .oneshot(
                    Request::post("/moodle/events")
                        .body(axum::body::Body::from("{}"))
                        .unwrap(),
                )
        };
        // No permits: every batch is shed before anything is read.
        let r = post(0).await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        // With a permit the request goes through to the checks.
        let r = post(1).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn signatures_use_the_printed_secret_or_its_bytes() {
        let secret = store::crypto::random_token(32);
        let body = br#"{"events":[]}"#;
        let mac = hmac_sha256_hex(secret.as_bytes(), b"1764290000.{\"events\":[]}");
        assert!(signature_matches(&secret, "1764290000", body, &mac));
        assert!(!signature_matches(&secret, "1764290001", body, &mac));
        assert!(!signature_matches(
            &secret,
            "1764290000",
            b"{\"events\":[1]}",
            &mac
        ));
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&secret)
            .unwrap();
        let mac = hmac_sha256_hex(&raw, b"1764290000.{\"events\":[]}");
        assert!(signature_matches(&secret, "1764290000", body, &mac));
        let mut headers = HeaderMap::new();
        headers.insert("x-lmsbridge-signature", HeaderValue::from_static("v1=abc"));
        assert_eq!(presented_mac(&headers), None);
    }
}
