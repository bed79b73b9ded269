//! The platform key cache (Security Framework §6.3).
//!
//! Keys are cached for as long as the platform's `Cache-Control: max-age` allows (bounded),
//! refetched when a launch names a `kid` we do not hold, with one fetch in flight per JWKS URL
//! however many launches wait on it, and at most one refetch per `min_refetch` interval so a
//! flood of forged kids cannot hammer the platform. When a refetch fails, keys we already hold
//! keep serving (stale-if-error).

use jsonwebtoken::jwk::{Jwk, JwkSet};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::Url;

/// Why no key could be produced for a `kid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("the platform's key set has no key with kid {0:?}")]
    UnknownKid(String),
    #[error("the platform's key set could not be fetched: {0}")]
    Fetch(String),
}

/// Tuning for [`JwksCache`].
#[derive(Debug, Clone, Copy)]
pub struct JwksCachePolicy {
    pub default_ttl: Duration,
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    pub min_refetch: Duration,
}

impl Default for JwksCachePolicy {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(600),
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            min_refetch: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    cached: Mutex<Option<Cached>>,
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone)]
struct Cached {
    keys: Arc<JwkSet>,
    fetched_at: Instant,
    expires_at: Instant,
}

/// A shared, concurrent cache of platform key sets keyed by JWKS URL.
#[derive(Debug, Clone)]
pub struct JwksCache {
    http: reqwest::Client,
    policy: JwksCachePolicy,
    slots: Arc<Mutex<HashMap<String, Arc<Slot>>>>,
    fetches: Arc<std::sync::atomic::AtomicU64>,
}

impl JwksCache {
    pub fn new(http: reqwest::Client, policy: JwksCachePolicy) -> Self {
        Self {
            http,
            policy,
            slots: Arc::default(),
            fetches: Arc::default(),
        }
    }

    /// How many times a key set was fetched over HTTP (for tests and metrics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn slot(&self, url: &Url) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(url.as_str().to_owned()).or_default().clone()
    }

    /// The key with `kid` from the set at `url`.
    pub async fn key(&self, url: &Url, kid: &str) -> Result<Jwk, JwksError> {
        let slot = self.slot(url);
        let seen = snapshot(&slot);
        if let Some(c) = &seen {
            let fresh = Instant::now() < c.expires_at;
            if let Some(k) = c.keys.find(kid) {
                if fresh {
                    return Ok(k.clone());
                }
            } else if c.fetched_at.elapsed() < self.policy.min_refetch {
                return Err(JwksError::UnknownKid(kid.to_owned()));
            }
        }
        let _guard = slot.fetching.lock().await;
        // Another launch may have refreshed the set while we waited for the lock.
        let current = snapshot(&slot);
        if let Some(c) = &current {
            let newer = seen.as_ref().is_none_or(|s| c.fetched_at > s.fetched_at);
            if newer || c.fetched_at.elapsed() < self.policy.min_refetch {
                return c
                    .keys
                    .find(kid)
                    .cloned()
                    .ok_or_else(|| JwksError::UnknownKid(kid.to_owned()));
            }
        }
        match self.fetch(url).await {
            Ok(fetched) => {
                let found = fetched.keys.find(kid).cloned();
                *slot.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(fetched);
                found.ok_or_else(|| JwksError::UnknownKid(kid.to_owned()))
            }
            Err(e) => current.and_then(|c| c.keys.find(kid).cloned()).ok_or(e),
        }
    }

    async fn fetch(&self, url: &Url) -> Result<Cached, JwksError> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let resp = self
            .http
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| JwksError::Fetch(crate::http_error::ServiceError::transport(&e).detail))?;
        if !resp.status().is_success() {
            return Err(JwksError::Fetch(format!("HTTP {}", resp.status().as_u16())));
        }
        let ttl = resp
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .unwrap_or(self.policy.default_ttl)
            .clamp(self.policy.min_ttl, self.policy.max_ttl);
        let body = resp
            .bytes()
            .await
            .map_err(|_| JwksError::Fetch("body could not be read".into()))?;
        let keys: JwkSet = serde_json::from_slice(&body)
            .map_err(|_| JwksError::Fetch("not a JSON Web Key Set".into()))?;
        let now = Instant::now();
        Ok(Cached {
            keys: Arc::new(keys),
            fetched_at: now,
            expires_at: now + ttl,
        })
    }
}

fn snapshot(slot: &Slot) -> Option<Cached> {
    slot.cached
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|d| {
        let d = d.trim();
        if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        // Directive names are case-insensitive (RFC 9111 §5.2).
        let (name, value) = d.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| value.trim().trim_matches('"').parse().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("Public, Max-Age=60"), Some(Duration::from_secs(60)));
    }
}
