//! Expiry of single-use records: used nonces and handoff codes.

use crate::error::StoreError;
use crate::{Store, now_micros};

impl Store {
    /// Deletes expired used nonces and handoff codes. Returns rows removed.
    pub async fn sweep_expired(&self) -> Result<u64, StoreError> {
        let now = now_micros();
        let mut removed = 0;
        for sql in [
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
