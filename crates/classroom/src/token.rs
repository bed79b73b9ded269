//! The access-token cache every Classroom call goes through (RFC 6749 §6 refresh).
//!
//! Tokens are cached per (client id, token URL, refresh token) until shortly before they
//! expire, with one refresh in flight per refresh token however many callers wait. A refresh
//! token Google called revoked is remembered as such, so the callers queued behind the
//! failed refresh hear `Revoked` without asking Google again.

use crate::oauth::{GrantedScopes, OAuthClient, OAuthError};
use crate::secret::{AccessToken, RefreshToken};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Refresh this long before Google's `expires_in` runs out.
const EARLY_REFRESH: Duration = Duration::from_secs(60);

/// How a call authenticates.
#[derive(Clone)]
pub enum Credentials {
    /// A teacher's stored refresh token: offline access, refreshed as needed.
    Offline(RefreshToken),
    /// An access token obtained elsewhere (a signed-in teacher in an add-on iframe); it
    /// cannot be refreshed, so a 401 ends the call.
    Bearer(AccessToken),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Offline(_) => f.write_str("Credentials::Offline([redacted])"),
            Self::Bearer(_) => f.write_str("Credentials::Bearer([redacted])"),
        }
    }
}

/// An access token from the cache, with the scopes Google said it carries.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub token: AccessToken,
    pub scopes: GrantedScopes,
}

type Key = Vec<u8>;

#[derive(Default)]
struct Slot {
    token: Mutex<Option<(CachedToken, Instant)>>,
    /// Set once Google answered `invalid_grant`: this refresh token will never work again.
    revoked: Mutex<Option<OAuthError>>,
    fetching: tokio::sync::Mutex<()>,
}

/// The process-wide access-token cache. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct TokenCache {
    oauth: OAuthClient,
    slots: Arc<Mutex<HashMap<Key, Arc<Slot>>>>,
    refreshes: Arc<AtomicU64>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TokenCache {
    pub fn new(oauth: OAuthClient) -> Self {
        Self {
            oauth,
            slots: Arc::default(),
            refreshes: Arc::default(),
        }
    }

    pub fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    /// How many refresh requests were sent (for tests and metrics).
    pub fn refresh_count(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// The slot is keyed by a hash so the map holds no usable refresh token.
    fn key(&self, refresh: &RefreshToken) -> Key {
        let config = self.oauth.config();
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(config.client_id.as_str().as_bytes());
        ctx.update(b"\0");
        ctx.update(config.endpoints.token.as_str().as_bytes());
        ctx.update(b"\0");
        ctx.update(refresh.secret().as_bytes());
        ctx.finish().as_ref().to_vec()
    }

    fn slot(&self, refresh: &RefreshToken) -> Arc<Slot> {
        let key = self.key(refresh);
        lock(&self.slots).entry(key).or_default().clone()
    }

    /// A valid access token for this refresh token, from the cache or freshly refreshed.
    pub async fn access_token(&self, refresh: &RefreshToken) -> Result<CachedToken, OAuthError> {
        let slot = self.slot(refresh);
        if let Some(t) = cached(&slot)? {
            return Ok(t);
        }
        let _guard = slot.fetching.lock().await;
        if let Some(t) = cached(&slot)? {
            return Ok(t);
        }
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let grant = match self.oauth.refresh(refresh).await {
            Ok(g) => g,
            Err(e) => {
                if matches!(e, OAuthError::Revoked { .. }) {
                    *lock(&slot.revoked) = Some(e.clone());
                }
                return Err(e);
            }
        };
        let lifetime = grant.expires_in;
        let valid_until = Instant::now() + lifetime.saturating_sub(EARLY_REFRESH.min(lifetime / 2));
        let token = CachedToken {
            token: grant.access_token,
            scopes: grant.scopes,
        };
        *lock(&slot.token) = Some((token.clone(), valid_until));
        Ok(token)
    }

    /// Forgets an access token Google refused (401), so the next call refreshes.
    pub fn invalidate(&self, refresh: &RefreshToken, refused: &AccessToken) {
        let slot = self.slot(refresh);
        let mut t = lock(&slot.token);
        if t.as_ref().is_some_and(|(cur, _)| cur.token == *refused) {
            *t = None;
        }
    }

    /// Drops everything known about a refresh token (after revoking it, or after the
    /// teacher connected again and the caller stored a new one).
    pub fn forget(&self, refresh: &RefreshToken) {
        let key = self.key(refresh);
        lock(&self.slots).remove(&key);
    }
}

fn cached(slot: &Slot) -> Result<Option<CachedToken>, OAuthError> {
    if let Some(e) = lock(&slot.revoked).as_ref() {
        return Err(e.clone());
    }
    let t = lock(&slot.token);
    Ok(t.as_ref()
        .filter(|(_, until)| Instant::now() < *until)
        .map(|(tok, _)| tok.clone()))
}
