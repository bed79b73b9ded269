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
        let stored: Vec<StoredToolKey> = snap.iter().map(|l| l.stored.clone()).collect();
        key_statuses(&stored, now_micros())
            .into_iter()
            .map(|(k, s)| (k.kid.clone(), s, k.activates_at, k.retires_at))
            .collect()
    }

    /// The key that signs now.
    pub fn current(&self) -> Option<ToolKey> {
        let snap = self.snapshot();
        let stored: Vec<StoredToolKey> = snap.iter().map(|l| l.stored.clone()).collect();
        let now = now_micros();
        let kid = key_statuses(&stored, now)
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

impl SigningKeySource for Keyring {
    fn signing_key(&self) -> Option<ToolKey> {
        self.current()
    }
}
