//! Login states between OIDC login initiation and the launch, readable by any instance.

use crate::error::StoreError;
use crate::{Store, now_micros};
use domain::PlatformId;

/// What the login step remembered for the launch step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginState {
    pub platform_id: PlatformId,
    pub nonce: String,
    pub target_link_uri: String,
    pub expires_at: i64,
    /// The platform storage frame the login used (`lti_storage_target`), if any.
    pub storage_target: Option<String>,
    /// The secret put into platform storage at login; it unlocks the launch's handoff in a
    /// browser that holds it. Lives only as long as the login state.
    pub storage_secret: Option<String>,
}

/// A `login_states` row as read back.
type StateRow = (String, String, String, i64, Option<String>, Option<String>);

impl Store {
    /// Remembers a login under the hash of its `state`.
    pub async fn save_login_state(
        &self,
        state_hash: &str,
        state: &LoginState,
    ) -> Result<(), StoreError> {
        on_db!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO login_states (state_hash, platform_id, nonce, target_link_uri, created_at, expires_at, storage_target, storage_secret) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(state_hash)
            .bind(state.platform_id.to_string())
            .bind(&state.nonce)
            .bind(&state.target_link_uri)
            .bind(now_micros())
            .bind(state.expires_at)
            .bind(&state.storage_target)
            .bind(&state.storage_secret)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Takes a login state: it is deleted as it is read, so a state works once.
    /// Expired states are refused here too.
    pub async fn take_login_state(
        &self,
        state_hash: &str,
    ) -> Result<Option<LoginState>, StoreError> {
        let row: Option<StateRow> = on_db!(&self.db, |pool| {
            sqlx::query_as(
                "DELETE FROM login_states WHERE state_hash = $1 RETURNING platform_id, nonce, target_link_uri, expires_at, storage_target, storage_secret",
            )
            .bind(state_hash)
            .fetch_optional(pool)
            .await?
        });
        let Some((platform, nonce, target_link_uri, expires_at, storage_target, storage_secret)) =
            row
        else {
            return Ok(None);
        };
        if expires_at <= now_micros() {
            return Ok(None);
        }
        Ok(Some(LoginState {
            platform_id: platform
                .parse()
                .map_err(|_| StoreError::Corrupt("login state platform".into()))?,
            nonce,
            target_link_uri,
            expires_at,
            storage_target,
            storage_secret,
        }))
    }

    /// Deletes expired login states, used nonces and handoff codes. Returns rows removed.
    pub async fn sweep_expired(&self) -> Result<u64, StoreError> {
        let now = now_micros();
        let mut removed = 0;
        for sql in [
            "DELETE FROM login_states WHERE expires_at < $1",
            "DELETE FROM used_nonces WHERE expires_at < $1",
            "DELETE FROM handoff_codes WHERE expires_at < $1",
        ] {
            removed += on_db!(&self.db, |pool| {
                sqlx::query(sql)
                    .bind(now)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
        }
        Ok(removed)
    }
}
