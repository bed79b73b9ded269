//! OAuth 2.0 client credentials with a JWT client assertion (Security Framework §4.1,
//! RFC 7523), and the access-token cache every service call goes through.
//!
//! Tokens are cached per (issuer, client_id, token URL, scope set) until shortly before they
//! expire, with one request in flight per key however many callers wait.

use crate::http_error::{ServiceError, ServiceErrorKind};
use crate::keys::ToolKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::Url;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Who we are at one platform's token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenEndpoint {
    pub issuer: String,
    pub client_id: String,
    pub token_url: Url,
    /// The assertion's `aud`; the token URL when the platform does not say otherwise.
    pub audience: Option<String>,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

/// A bearer token for platform services. Never printed.
#[derive(Clone)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    /// The scopes granted, when the platform says (Moodle grants only those enabled for the
    /// tool, RFC 6749 §5.1).
    #[serde(default)]
    scope: Option<String>,
}

type CacheKey = (String, String, String, Vec<String>);

#[derive(Default)]
struct Slot {
    token: Mutex<Option<(AccessToken, Instant)>>,
    fetching: tokio::sync::Mutex<()>,
}

/// The process-wide access-token cache.
#[derive(Clone)]
pub struct TokenClient {
    http: reqwest::Client,
    slots: Arc<Mutex<HashMap<CacheKey, Arc<Slot>>>>,
    requests: Arc<std::sync::atomic::AtomicU64>,
}

impl fmt::Debug for TokenClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenClient").finish_non_exhaustive()
    }
}

/// Refresh this long before the platform's `expires_in` runs out.
const EARLY_REFRESH: Duration = Duration::from_secs(60);

impl TokenClient {
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            slots: Arc::default(),
            requests: Arc::default(),
        }
    }

    /// How many token requests were sent (for tests and metrics).
    pub fn request_count(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn slot(&self, endpoint: &TokenEndpoint, scopes: &[&str]) -> Arc<Slot> {
        let scopes: BTreeSet<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        let key = (
            endpoint.issuer.clone(),
            endpoint.client_id.clone(),
            endpoint.token_url.to_string(),
            scopes.into_iter().collect(),
        );
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(key).or_default().clone()
    }

    /// A valid token for these scopes, from the cache or freshly requested.
    pub async fn token(
        &self,
        endpoint: &TokenEndpoint,
        scopes: &[&str],
        key: &ToolKey,
    ) -> Result<AccessToken, ServiceError> {
        let slot = self.slot(endpoint, scopes);
        if let Some(t) = cached(&slot) {
            return Ok(t);
        }
        let _guard = slot.fetching.lock().await;
        if let Some(t) = cached(&slot) {
            return Ok(t);
        }
        let (token, lifetime) = self.request(endpoint, scopes, key).await?;
        let valid_until = Instant::now() + lifetime.saturating_sub(EARLY_REFRESH.min(lifetime / 2));
        *slot.token.lock().unwrap_or_else(|e| e.into_inner()) = Some((token.clone(), valid_until));
        Ok(token)
    }

    /// Forgets a token the platform refused (401), so the next call requests a new one.
    pub fn invalidate(&self, endpoint: &TokenEndpoint, scopes: &[&str], refused: &AccessToken) {
        let slot = self.slot(endpoint, scopes);
        let mut t = slot.token.lock().unwrap_or_else(|e| e.into_inner());
        if t.as_ref().is_some_and(|(cur, _)| cur.0 == refused.0) {
            *t = None;
        }
    }

    async fn request(
        &self,
        endpoint: &TokenEndpoint,
        scopes: &[&str],
        key: &ToolKey,
    ) -> Result<(AccessToken, Duration), ServiceError> {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let aud = endpoint
            .audience
            .clone()
            .unwrap_or_else(|| endpoint.token_url.to_string());
        let assertion = key
            .sign(&AssertionClaims {
                iss: &endpoint.client_id,
                sub: &endpoint.client_id,
                aud: &aud,
                iat: now,
                exp: now + 300,
                jti: uuid::Uuid::new_v4().to_string(),
            })
            .map_err(|e| ServiceError {
                kind: ServiceErrorKind::Rejected,
                status: None,
                retry_after: None,
                detail: e.to_string(),
            })?;
        let scope = scopes.join(" ");
        // Moodle insists on exactly application/x-www-form-urlencoded, which `form` sends.
        let resp = self
            .http
            .post(endpoint.token_url.clone())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion.as_str()),
                ("scope", scope.as_str()),
            ])
            .send()
            .await
            .map_err(|e| ServiceError::transport(&e))?;
        if !resp.status().is_success() {
            let mut err = ServiceError::from_response(resp).await;
            if err.kind == ServiceErrorKind::InvalidScope {
                err.detail = format!(
                    "the platform granted none of the scopes asked for ({scope}); enable them in the tool registration"
                );
            }
            // A refused assertion is our configuration, not an expired token.
            if err.kind == ServiceErrorKind::Unauthorized {
                err.kind = ServiceErrorKind::Rejected;
            }
            return Err(err);
        }
        let body: TokenResponse = resp.json().await.map_err(|_| ServiceError {
            kind: ServiceErrorKind::Transient,
            status: None,
            retry_after: None,
            detail: "token endpoint answered with something that is not a token response".into(),
        })?;
        // A partial grant would fail later as a puzzling 401 or 403 on the service call; name
        // the scopes the registration lacks now instead.
        if let Some(granted) = &body.scope {
            let granted: BTreeSet<&str> = granted.split_whitespace().collect();
            let missing: Vec<&str> = scopes
                .iter()
                .copied()
                .filter(|s| !granted.contains(s))
                .collect();
            if !missing.is_empty() {
                return Err(ServiceError {
                    kind: ServiceErrorKind::InvalidScope,
                    status: None,
                    retry_after: None,
                    detail: format!(
                        "the platform did not grant {}; enable it in the tool registration",
                        missing.join(" ")
                    ),
                });
            }
        }
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(3600).max(1));
        Ok((AccessToken(body.access_token.into()), lifetime))
    }
}

fn cached(slot: &Slot) -> Option<AccessToken> {
    let t = slot.token.lock().unwrap_or_else(|e| e.into_inner());
    t.as_ref()
        .filter(|(_, until)| Instant::now() < *until)
        .map(|(tok, _)| tok.clone())
}
