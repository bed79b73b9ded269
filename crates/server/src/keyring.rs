//! The tool's keys in memory: what the JWKS publishes and which key signs.
//!
//! Loaded from the store (decrypted with the master key) at start-up and reloaded
//! periodically, so a rotation made by the CLI or another instance is picked up. Which key
//! signs is decided from the timestamps at the moment of signing.

use adapters::SigningKeySource;
use domain::Actor;
use lti::ToolKey;
use std::sync::{Arc, RwLock};
use store::crypto::MasterKey;
use store::keys::{KeyStatus, key_statuses};
use store::{Store, StoredToolKey, now_micros};

#[derive(Clone)]
struct Loaded {
    stored: StoredToolKey,
    key: ToolKey,
}

/// In-memory view of the tool keys.
pub struct Keyring {
    store: Store,
    master: MasterKey,
    keys: RwLock<Arc<Vec<Loaded>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").finish_non_exhaustive()
    }
}

fn new_kid() -> String {
    format!("lmsb-{}", uuid::Uuid::now_v7().simple())
}

impl Keyring {
    /// Loads the keys, generating the first one if the store has none.
    pub async fn open(store: Store, master: MasterKey) -> anyhow::Result<Self> {
        let ring = Self {
            store,
            master,
            keys: RwLock::new(Arc::new(Vec::new())),
        };
        ring.reload().await?;
        if ring.snapshot().is_empty() {
            let kid = new_kid();
            let key = tokio::task::spawn_blocking(move || ToolKey::generate(kid)).await??;
            ring.store
                .add_tool_key(
                    &ring.master,
                    key.kid(),
                    key.pkcs8_der(),
                    now_micros(),
                    None,
                    &Actor::system("first-start"),
                )
                .await?;
            tracing::info!(kid = key.kid(), "generated the first tool key");
            ring.reload().await?;
        }
        Ok(ring)
    }

    /// Re-reads the keys from the store.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let stored = self.store.tool_keys(&self.master).await?;
        let current = self.snapshot();
        let mut loaded = Vec::with_capacity(stored.len());
        for s in stored {
            // Parsing an RSA key costs milliseconds: reuse what is already loaded.
            let key = match current.iter().find(|l| l.stored.kid == s.kid) {
                Some(l) => l.key.clone(),
                None => ToolKey::from_pkcs8_der(s.kid.clone(), s.pkcs8_der())?,
            };
            loaded.push(Loaded { stored: s, key });
        }
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    fn snapshot(&self) -> Arc<Vec<Loaded>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every key with its status now, newest first.
    pub fn statuses(&self) -> Vec<(String, KeyStatus, i64, Option<i64>)> {
        let snap = self.snapshot();
        key_statuses(snap.iter().map(|l| &l.stored), now_micros())
            .into_iter()
            .map(|(k, s)| (k.kid.clone(), s, k.activates_at, k.retires_at))
            .collect()
    }

    /// The key that signs now.
    pub fn current(&self) -> Option<ToolKey> {
        let snap = self.snapshot();
        let now = now_micros();
        // No copies of the private keys: statuses are read off the loaded keys in place.
        let kid = key_statuses(snap.iter().map(|l| &l.stored), now)
            .into_iter()
            .find(|(_, s)| *s == KeyStatus::Current)
            .map(|(k, _)| k.kid.clone())?;
        snap.iter()
            .find(|l| l.stored.kid == kid)
            .map(|l| l.key.clone())
    }

    /// The public JWKS: every key that is next, current or retiring.
    pub fn jwks(&self) -> serde_json::Value {
        let now = now_micros();
        let keys: Vec<_> = self
            .snapshot()
            .iter()
            .filter(|l| l.stored.is_published(now))
            .map(|l| l.key.public_jwk().clone())
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Adds a key that is published now and signs after `publish_lead_secs`; every older key
    /// retires `grace_secs` after that. Returns the new kid.
    pub async fn rotate(
        &self,
        publish_lead_secs: i64,
        grace_secs: i64,
        actor: &Actor,
    ) -> anyhow::Result<String> {
        let kid = new_kid();
        let key = tokio::task::spawn_blocking(move || ToolKey::generate(kid)).await??;
        let activates = now_micros() + publish_lead_secs.max(0) * 1_000_000;
        let retire = activates + grace_secs.max(0) * 1_000_000;
        self.store
            .add_tool_key(
                &self.master,
                key.kid(),
                key.pkcs8_der(),
                activates,
                Some(retire),
                actor,
            )
            .await?;
        self.reload().await?;
        Ok(key.kid().to_owned())
    }
}

/// Whether the current key has signed for `period_days` with no successor scheduled.
pub fn rotation_due(
    statuses: &[(String, KeyStatus, i64, Option<i64>)],
    now: i64,
    period_days: i64,
) -> bool {
    if period_days <= 0 || statuses.iter().any(|(_, s, _, _)| *s == KeyStatus::Next) {
        return false;
    }
    statuses
        .iter()
        .find(|(_, s, _, _)| *s == KeyStatus::Current)
        .is_some_and(|(_, _, activated, _)| now - activated >= period_days * 86_400 * 1_000_000)
}

/// Why a token we supposedly signed was refused.
#[derive(Debug, thiserror::Error)]
pub enum OwnTokenError {
    #[error("the token is not an RS256 JWT with a kid")]
    Shape,
    #[error("no published key has this kid (unknown or retired)")]
    UnknownKey,
    #[error("the token does not verify: {0}")]
    Invalid(String),
}

impl Keyring {
    /// Rotates when the current key is older than the rotation period (checked by every
    /// instance each minute; the schedule lives in the keys' timestamps).
    pub async fn rotate_if_due(
        &self,
        settings: &crate::Settings,
    ) -> anyhow::Result<Option<String>> {
        self.reload().await?;
        if !rotation_due(&self.statuses(), now_micros(), settings.key_rotation_days) {
            return Ok(None);
        }
        let kid = self
            .rotate(
                settings.key_publish_lead_secs,
                settings.key_grace_secs,
                &Actor::system("scheduled-rotation"),
            )
            .await?;
        tracing::info!(kid, "rotated the tool key on schedule");
        Ok(Some(kid))
    }

    /// Verifies a JWT this tool signed, with any key still published (current, next, or
    /// retiring within its grace period); `exp` is required.
    pub fn verify_own<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<T, OwnTokenError> {
        let header = lti::jwt::inspect_header(token).map_err(|_| OwnTokenError::Shape)?;
        let kid = match (header.alg.as_str(), header.kid) {
            ("RS256", Some(kid)) => kid,
            _ => return Err(OwnTokenError::Shape),
        };
        let now = now_micros();
        let snap = self.snapshot();
        let loaded = snap
            .iter()
            .find(|l| l.stored.kid == kid && l.stored.is_published(now))
            .ok_or(OwnTokenError::UnknownKey)?;
        let key = jsonwebtoken::DecodingKey::from_jwk(loaded.key.public_jwk())
            .map_err(|e| OwnTokenError::Invalid(e.to_string()))?;
        let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        jsonwebtoken::decode::<T>(token, &key, &validation)
            .map(|d| d.claims)
            .map_err(|e| OwnTokenError::Invalid(e.to_string()))
    }
}

impl SigningKeySource for Keyring {
    fn signing_key(&self) -> Option<ToolKey> {
        self.current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(kid: &str, s: KeyStatus, activated: i64) -> (String, KeyStatus, i64, Option<i64>) {
        (kid.into(), s, activated, None)
    }

    #[test]
    fn rotation_is_due_only_for_an_old_current_key_without_a_successor() {
        let day = 86_400 * 1_000_000;
        let now = 1_000 * day;
        assert!(rotation_due(
            &[status("a", KeyStatus::Current, now - 91 * day)],
            now,
            90
        ));
        assert!(!rotation_due(
            &[status("a", KeyStatus::Current, now - 89 * day)],
            now,
            90
        ));
        assert!(!rotation_due(
            &[
                status("b", KeyStatus::Next, now),
                status("a", KeyStatus::Current, now - 91 * day)
            ],
            now,
            90
        ));
        assert!(
            !rotation_due(&[status("a", KeyStatus::Current, 0)], now, 0),
            "0 turns it off"
        );
    }
}
