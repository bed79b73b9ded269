//! `POST /google/push`: Cloud Pub/Sub push deliveries of Classroom roster-change
//! notifications.
//!
//! Pub/Sub signs each push with a Google-issued OpenID Connect token in `Authorization:
//! Bearer` (Pub/Sub "Authenticate push subscriptions"). It is checked before the body is
//! read: RS256 only, the key by `kid` from Google's JWKS (a setting), `iss`
//! `accounts.google.com`, `aud` our configured audience, `email` the configured service
//! account with `email_verified`, and `exp`/`iat` within the allowed clock skew. Then the
//! message's course is looked up among the stored registrations, the message is recorded once
//! per tenant (Pub/Sub delivers at least once), and an incremental roster re-sync of the
//! course is queued.
//!
//! Answers: 204 once handled (Pub/Sub acknowledges any 2xx); 401 for a token we refuse; 400
//! for a body that is not a Pub/Sub push (Pub/Sub would retry it forever otherwise, so a
//! message naming no known course is acknowledged too).

use crate::App;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lti::jwks::JwksCache;
use serde::Deserialize;
use url::Url;

/// The issuers Google's tokens carry (both spellings are in use).
const GOOGLE_ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];

/// What a push token must say.
#[derive(Debug, Clone, Copy)]
pub struct PushExpectations<'a> {
    pub audience: &'a str,
    pub service_account: &'a str,
    pub certs_url: &'a Url,
    pub leeway_secs: u64,
}

/// The claims of an accepted push token.
#[derive(Debug, Clone, Deserialize)]
pub struct PushClaims {
    pub email: String,
    #[serde(default)]
    pub email_verified: bool,
}

/// Why a push token was refused. Each check has its own variant.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PushRefusal {
    #[error("the token is not a JWT")]
    Malformed,
    /// Only RS256: Google signs ID tokens with it, and anything else would let a forger pick.
    #[error("the token's algorithm is not RS256")]
    Algorithm,
    #[error("the token names no key id")]
    NoKid,
    #[error("Google's keys could not be had: {0}")]
    Keys(String),
    #[error("the signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is for another audience")]
    Audience,
    #[error("the token was not issued by Google")]
    Issuer,
    #[error("the token is not from the push service account")]
    ServiceAccount,
    #[error("the token's claims are invalid: {0}")]
    Claims(String),
}

/// Checks a push token. The signature is verified first; the claims only after.
pub async fn verify_push_token(
    keys: &JwksCache,
    token: &str,
    expect: &PushExpectations<'_>,
) -> Result<PushClaims, PushRefusal> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| PushRefusal::Malformed)?;
    if header.alg != Algorithm::RS256 {
        return Err(PushRefusal::Algorithm);
    }
    let kid = header.kid.ok_or(PushRefusal::NoKid)?;
    let jwk = keys
        .key(expect.certs_url, &kid)
        .await
        .map_err(|e| match e {
            // A kid Google does not publish: a forged or foreign token.
            lti::jwks::JwksError::UnknownKid(_) => PushRefusal::Signature,
            other => PushRefusal::Keys(other.to_string()),
        })?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| PushRefusal::Signature)?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = expect.leeway_secs;
    validation.set_audience(&[expect.audience]);
    validation.set_issuer(&GOOGLE_ISSUERS);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
    let data = jsonwebtoken::decode::<PushClaims>(token, &key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidSignature | ErrorKind::InvalidRsaKey(_) => PushRefusal::Signature,
            ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => PushRefusal::Expired,
            ErrorKind::InvalidAudience => PushRefusal::Audience,
            ErrorKind::InvalidIssuer => PushRefusal::Issuer,
            ErrorKind::InvalidAlgorithm => PushRefusal::Algorithm,
            other => PushRefusal::Claims(format!("{other:?}")),
        }
    })?;
    let claims = data.claims;
    // Pub/Sub push: the subscription's service account, verified by Google.
    if !claims.email_verified || !claims.email.eq_ignore_ascii_case(expect.service_account) {
        return Err(PushRefusal::ServiceAccount);
    }
    Ok(claims)
}

/// A Pub/Sub push body.
#[derive(Debug, Deserialize)]
struct PushBody {
    message: PushMessage,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PushMessage {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
    /// Pub/Sub sends the id under both spellings.
    #[serde(default, rename = "message_id")]
    message_id_snake: Option<String>,
}

/// A Classroom notification (the message's `data`, base64 JSON).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    #[serde(default)]
    collection: Option<String>,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    resource_id: Option<ResourceId>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceId {
    #[serde(default)]
    course_id: Option<String>,
}

fn refuse(status: StatusCode, code: &'static str) -> Response {
    (status, axum::Json(serde_json::json!({"error": code}))).into_response()
}

/// `POST /google/push`.
pub async fn receive(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let settings = app.settings();
    let (Some(audience), Some(account)) = (
        settings.google_push_audience.as_deref(),
        settings.google_push_service_account.as_deref(),
    ) else {
        tracing::warn!("a Pub/Sub push arrived but push is not configured");
        return refuse(StatusCode::NOT_FOUND, "push_not_configured");
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return refuse(StatusCode::UNAUTHORIZED, "token_missing");
    };
    let expect = PushExpectations {
        audience,
        service_account: account,
        certs_url: &settings.google_push_certs_url,
        leeway_secs: u64::try_from(settings.clock_skew_secs).unwrap_or(60),
    };
    if let Err(e) = verify_push_token(&app.inner().google_push_keys, token, &expect).await {
        tracing::warn!(reason = %e, "Pub/Sub push refused");
        return match e {
            PushRefusal::Keys(_) => refuse(StatusCode::SERVICE_UNAVAILABLE, "keys_unavailable"),
            _ => refuse(StatusCode::UNAUTHORIZED, "token_refused"),
        };
    }
    let Ok(push) = serde_json::from_slice::<PushBody>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "not_a_pubsub_push");
    };
    let Some(message_id) = push
        .message
        .message_id
        .or(push.message.message_id_snake)
        .filter(|m| !m.is_empty() && m.len() <= 200)
    else {
        return refuse(StatusCode::BAD_REQUEST, "message_id_missing");
    };
    let notification: Option<Notification> = push
        .message
        .data
        .as_deref()
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let Some(notification) = notification else {
        return refuse(StatusCode::BAD_REQUEST, "data_unreadable");
    };
    let Some(course_id) = notification
        .resource_id
        .and_then(|r| r.course_id)
        .filter(|c| !c.is_empty() && c.len() <= 200)
    else {
        tracing::info!(message = %message_id, "a Classroom push named no course; acknowledged");
        return StatusCode::NO_CONTENT.into_response();
    };
    let registrations = match app.store().push_registrations_for_course(&course_id).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "reading push registrations failed");
            // Pub/Sub retries a 5xx with backoff.
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "internal");
        }
    };
    if registrations.is_empty() {
        tracing::info!(course = %course_id, "a Classroom push for a course without registration; acknowledged");
    }
    for (scope, reg) in registrations {
        let tenant = app.store().tenant(&scope);
        // Recorded first, so a redelivery of the same message queues nothing more.
        let first = tenant
            .record_push_event(
                reg.platform_id,
                &course_id,
                &message_id,
                notification.collection.as_deref(),
                notification.event_type.as_deref(),
                "received",
            )
            .await;
        match first {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                tracing::error!(error = %e, "recording a push failed");
                return refuse(StatusCode::SERVICE_UNAVAILABLE, "internal");
            }
        }
        match crate::google_push_renewal::resync_course(&app, &scope, reg.platform_id, &course_id)
            .await
        {
            Ok(outcome) => {
                if let Err(e) = tenant
                    .set_push_event_outcome(reg.platform_id, &message_id, outcome)
                    .await
                {
                    tracing::warn!(error = %e, "recording a push outcome failed");
                }
                tracing::info!(course = %course_id, outcome, "Classroom roster push handled");
            }
            Err(e) => {
                tracing::error!(course = %course_id, error = %e, "queuing a re-sync after a push failed");
                let _ = tenant
                    .set_push_event_outcome(reg.platform_id, &message_id, "resync_failed")
                    .await;
            }
        }
    }
    StatusCode::NO_CONTENT.into_response()
}
