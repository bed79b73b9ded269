//! The audit log: append-only, one SHA-256 hash chain per tenant (plus a `system` chain for
//! instance-wide changes such as tool keys).
//!
//! Every entry is written in the same transaction as the change it records, so a change
//! without its entry (or the reverse) cannot be committed. Each entry's hash covers its
//! fields and the previous entry's hash; `audit_heads` holds the newest hash per chain and
//! its row lock serialises writers of one chain. The database refuses UPDATE and DELETE on
//! `audit_log` (triggers); [`crate::Store::verify_audit`] detects edits made around them.

use crate::Store;
use crate::crypto::sha256_hex;
use crate::error::StoreError;
use domain::{Actor, TenantId};
use serde::Serialize;

/// The hash a chain starts from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chain for changes that belong to no tenant.
pub const SYSTEM_CHAIN: &str = "system";

/// An entry about to be appended.
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    pub chain: String,
    pub tenant_id: Option<TenantId>,
    pub at: i64,
    pub actor: Actor,
    /// What happened, dotted: `tenant.created`, `launch.accepted`, `score.queued`, ...
    pub action: &'static str,
    /// What it happened to, e.g. `score:0192…`.
    pub subject: String,
    pub detail: serde_json::Value,
}

impl NewAuditEntry {
    /// An entry on a tenant's chain.
    pub fn tenant(
        tenant: TenantId,
        actor: Actor,
        action: &'static str,
        subject: String,
        detail: serde_json::Value,
    ) -> Self {
        Self {
            chain: tenant.to_string(),
            tenant_id: Some(tenant),
            at: crate::now_micros(),
            actor,
            action,
            subject,
            detail,
        }
    }

    /// An entry on the system chain.
    pub fn system(
        actor: Actor,
        action: &'static str,
        subject: String,
        detail: serde_json::Value,
    ) -> Self {
        Self {
            chain: SYSTEM_CHAIN.to_owned(),
            tenant_id: None,
            at: crate::now_micros(),
            actor,
            action,
            subject,
            detail,
        }
    }
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub chain: String,
    pub seq: i64,
    pub tenant_id: Option<String>,
    pub at: i64,
    pub actor_kind: String,
    pub actor_id: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of an entry: SHA-256 over a JSON array of its fields, which is unambiguous
/// whatever the fields contain.
#[allow(clippy::too_many_arguments)]
pub fn entry_hash(
    chain: &str,
    seq: i64,
    tenant_id: Option<&str>,
    at: i64,
    actor_kind: &str,
    actor_id: &str,
    action: &str,
    subject: &str,
    detail: &str,
    prev_hash: &str,
) -> String {
    let canonical = serde_json::json!([
        chain, seq, tenant_id, at, actor_kind, actor_id, action, subject, detail, prev_hash
    ]);
    sha256_hex(canonical.to_string().as_bytes())
}

/// Appends an entry inside an open transaction (`$tx`). Expands per dialect.
macro_rules! audit_append {
    ($tx:expr, $entry:expr) => {{
        let entry: &$crate::audit::NewAuditEntry = $entry;
        // Creating or advancing the chain head takes its row lock until commit: one writer
        // per chain. `hash` still holds the previous entry's hash here.
        let (seq, prev): (i64, String) = sqlx::query_as(
            "INSERT INTO audit_heads (chain, seq, hash) VALUES ($1, 1, $2) \
             ON CONFLICT (chain) DO UPDATE SET seq = audit_heads.seq + 1 RETURNING seq, hash",
        )
        .bind(&entry.chain)
        .bind($crate::audit::GENESIS)
        .fetch_one(&mut *$tx)
        .await?;
        let tenant = entry.tenant_id.map(|t| t.to_string());
        let detail = entry.detail.to_string();
        let hash = $crate::audit::entry_hash(
            &entry.chain,
            seq,
            tenant.as_deref(),
            entry.at,
            entry.actor.kind.as_str(),
            &entry.actor.id,
            entry.action,
            &entry.subject,
            &detail,
            &prev,
        );
        sqlx::query(
            "INSERT INTO audit_log (chain, seq, tenant_id, at, actor_kind, actor_id, action, subject, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&entry.chain)
        .bind(seq)
        .bind(&tenant)
        .bind(entry.at)
        .bind(entry.actor.kind.as_str())
        .bind(&entry.actor.id)
        .bind(entry.action)
        .bind(&entry.subject)
        .bind(&detail)
        .bind(&prev)
        .bind(&hash)
        .execute(&mut *$tx)
        .await?;
        sqlx::query("UPDATE audit_heads SET hash = $2 WHERE chain = $1")
            .bind(&entry.chain)
            .bind(&hash)
            .execute(&mut *$tx)
            .await?;
    }};
}

/// The outcome of checking one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub chain: String,
    pub entries: i64,
    /// `None` when the chain is intact; otherwise the first sequence number at fault and why.
    pub broken_at: Option<(i64, String)>,
}

impl ChainReport {
    pub fn is_intact(&self) -> bool {
        self.broken_at.is_none()
    }
}

fn check_chain(chain: &str, rows: &[AuditEntry], head: Option<(i64, String)>) -> ChainReport {
    let mut prev = GENESIS.to_owned();
    let mut broken = None;
    for (i, row) in rows.iter().enumerate() {
        let expected_seq = i64::try_from(i).unwrap_or(i64::MAX) + 1;
        let recomputed = entry_hash(
            &row.chain,
            row.seq,
            row.tenant_id.as_deref(),
            row.at,
            &row.actor_kind,
            &row.actor_id,
            &row.action,
            &row.subject,
            &row.detail,
            &row.prev_hash,
        );
        let fault = if row.seq != expected_seq {
            Some("entry missing before this one")
        } else if row.prev_hash != prev {
            Some("previous-hash link broken")
        } else if recomputed != row.hash {
            Some("entry content does not match its hash")
        } else {
            None
        };
        if let Some(why) = fault {
            broken = Some((row.seq, why.to_owned()));
            break;
        }
        prev = row.hash.clone();
    }
    let count = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    if broken.is_none()
        && let Some((seq, hash)) = head
        && (seq != count || (count > 0 && hash != prev))
    {
        broken = Some((
            count + 1,
            "entries missing at the end of the chain".to_owned(),
        ));
    }
    ChainReport {
        chain: chain.to_owned(),
        entries: count,
        broken_at: broken,
    }
}

impl Store {
    /// Checks every chain (or one) from its first entry to its head.
    pub async fn verify_audit(&self, only: Option<&str>) -> Result<Vec<ChainReport>, StoreError> {
        let heads: Vec<(String, i64, String)> = on_db!(&self.db, |pool| {
            sqlx::query_as("SELECT chain, seq, hash FROM audit_heads ORDER BY chain")
                .fetch_all(pool)
                .await?
        });
        let mut reports = Vec::new();
        for (chain, seq, hash) in heads {
            if only.is_some_and(|o| o != chain) {
                continue;
            }
            let rows = self.audit_entries(&chain).await?;
            reports.push(check_chain(&chain, &rows, Some((seq, hash))));
        }
        Ok(reports)
    }

    /// All entries of one chain in order.
    pub async fn audit_entries(&self, chain: &str) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(on_db!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT chain, seq, tenant_id, at, actor_kind, actor_id, action, subject, detail, prev_hash, hash \
                 FROM audit_log WHERE chain = $1 ORDER BY seq",
            )
            .bind(chain)
            .fetch_all(pool)
            .await?
        }))
    }
}

impl crate::TenantStore<'_> {
    /// This tenant's audit entries, oldest first.
    pub async fn audit_entries(&self) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(on_db!(self.db, |pool| {
            sqlx::query_as(
                "SELECT chain, seq, tenant_id, at, actor_kind, actor_id, action, subject, detail, prev_hash, hash \
                 FROM audit_log WHERE chain = $1 AND tenant_id = $1 ORDER BY seq",
            )
            .bind(self.scope.tenant_id().to_string())
            .fetch_all(pool)
            .await?
        }))
    }
}
