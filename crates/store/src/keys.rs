//! The tool's signing keys, encrypted at rest.
//!
//! A key's life is read from its timestamps, so every instance agrees on it without a
//! background job: *next* (published, not yet signing) until `activates_at`, then *current*
//! while it is the newest activated key, then *retiring* (still published, no longer signing)
//! until `retires_at`, then *retired* (gone from the JWKS).

use crate::audit::NewAuditEntry;
use crate::crypto::MasterKey;
use crate::db::BeginWrite;
use crate::error::StoreError;
use crate::{Store, now_micros};
use domain::Actor;
use serde::Serialize;
use std::fmt;

/// Where a key is in its life at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Next,
    Current,
    Retiring,
    Retired,
}

/// A decrypted tool key with its schedule.
#[derive(Clone)]
pub struct StoredToolKey {
    pub kid: String,
    pkcs8: Vec<u8>,
    pub created_at: i64,
    pub activates_at: i64,
    pub retires_at: Option<i64>,
}

impl fmt::Debug for StoredToolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredToolKey")
            .field("kid", &self.kid)
            .field("activates_at", &self.activates_at)
            .field("retires_at", &self.retires_at)
            .finish_non_exhaustive()
    }
}

impl StoredToolKey {
    /// The private key (PKCS#8 DER). Handle as a secret.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// True while the key belongs in the published JWKS.
    pub fn is_published(&self, now: i64) -> bool {
        self.retires_at.is_none_or(|r| r > now)
    }
}

/// Works out each key's status at `now`; input in any order, output newest first.
pub fn key_statuses<'a>(
    keys: impl IntoIterator<Item = &'a StoredToolKey>,
    now: i64,
) -> Vec<(&'a StoredToolKey, KeyStatus)> {
    let mut sorted: Vec<&StoredToolKey> = keys.into_iter().collect();
    sorted.sort_by(|a, b| b.activates_at.cmp(&a.activates_at).then(b.kid.cmp(&a.kid)));
    let current = sorted
        .iter()
        .find(|k| k.activates_at <= now && k.is_published(now))
        .map(|k| k.kid.clone());
    sorted
        .into_iter()
        .map(|k| {
            let status = if !k.is_published(now) {
                KeyStatus::Retired
            } else if k.activates_at > now {
                KeyStatus::Next
            } else if current.as_deref() == Some(k.kid.as_str()) {
                KeyStatus::Current
            } else {
                KeyStatus::Retiring
            };
            (k, status)
        })
        .collect()
}

/// A `tool_keys` row: kid, sealed key, created, activates, retires.
type KeyRow = (String, Vec<u8>, i64, i64, Option<i64>);

fn seal_context(kid: &str) -> String {
    format!("tool_key:{kid}")
}

impl Store {
    /// All stored tool keys, decrypted.
    pub async fn tool_keys(&self, master: &MasterKey) -> Result<Vec<StoredToolKey>, StoreError> {
        let rows: Vec<KeyRow> = on_db!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT kid, encrypted_pkcs8, created_at, activates_at, retires_at FROM tool_keys ORDER BY activates_at",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(kid, sealed, created_at, activates_at, retires_at)| {
                Ok(StoredToolKey {
                    pkcs8: master.open(&sealed, &seal_context(&kid))?,
                    kid,
                    created_at,
                    activates_at,
                    retires_at,
                })
            })
            .collect()
    }

    /// Stores a new key that starts signing at `activates_at`, and makes every other key
    /// retire at `retire_others_at` at the latest.
    pub async fn add_tool_key(
        &self,
        master: &MasterKey,
        kid: &str,
        pkcs8_der: &[u8],
        activates_at: i64,
        retire_others_at: Option<i64>,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let sealed = master.seal(pkcs8_der, &seal_context(kid))?;
        let audit = NewAuditEntry::system(
            actor.clone(),
            "tool_key.added",
            format!("tool_key:{kid}"),
            serde_json::json!({"activates_at": activates_at, "others_retire_at": retire_others_at}),
        );
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            if let Some(at) = retire_others_at {
                sqlx::query("UPDATE tool_keys SET retires_at = $1 WHERE retires_at IS NULL OR retires_at > $1")
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO tool_keys (kid, encrypted_pkcs8, created_at, activates_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(kid)
            .bind(&sealed)
            .bind(now_micros())
            .bind(activates_at)
            .execute(&mut *tx)
            .await?;
            audit_append!(tx, &audit);
            tx.commit().await?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, activates_at: i64, retires_at: Option<i64>) -> StoredToolKey {
        StoredToolKey {
            kid: kid.into(),
            pkcs8: vec![],
            created_at: 0,
            activates_at,
            retires_at,
        }
    }

    #[test]
    fn rotation_schedule() {
        // k1 active since 0, retiring at 300; k2 published at 100, signs from 200.
        let keys = [key("k1", 0, Some(300)), key("k2", 200, None)];
        let at = |now| {
            key_statuses(&keys, now)
                .into_iter()
                .map(|(k, s)| (k.kid.clone(), s))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            at(150),
            vec![
                ("k2".into(), KeyStatus::Next),
                ("k1".into(), KeyStatus::Current)
            ]
        );
        assert_eq!(
            at(250),
            vec![
                ("k2".into(), KeyStatus::Current),
                ("k1".into(), KeyStatus::Retiring)
            ]
        );
        assert_eq!(
            at(300),
            vec![
                ("k2".into(), KeyStatus::Current),
                ("k1".into(), KeyStatus::Retired)
            ]
        );
    }
}
