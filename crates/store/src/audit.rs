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

/// A query builder for the database of an open transaction (pins the dialect for
/// multi-row statements built at run time).
pub(crate) fn builder_for<DB: sqlx::Database>(
    _tx: &sqlx::Transaction<'_, DB>,
    sql: &'static str,
) -> sqlx::QueryBuilder<DB> {
    sqlx::QueryBuilder::new(sql)
}

/// Appends entries of one chain, in order, inside an open transaction (`$tx`). Expands per
/// dialect.
macro_rules! audit_append_all {
    ($tx:expr, $entries:expr) => {{
        let entries: &[$crate::audit::NewAuditEntry] = $entries;
        if let Some(first) = entries.first() {
            let count = i64::try_from(entries.len()).unwrap_or(i64::MAX);
            // Creating or advancing the chain head takes its row lock until commit: one
            // writer per chain. `hash` still holds the previous entry's hash here.
            let (last_seq, mut prev): (i64, String) = sqlx::query_as(
                "INSERT INTO audit_heads (chain, seq, hash) VALUES ($1, $2, $3) \
                 ON CONFLICT (chain) DO UPDATE SET seq = audit_heads.seq + $2 RETURNING seq, hash",
            )
            .bind(&first.chain)
            .bind(count)
            .bind($crate::audit::GENESIS)
            .fetch_one(&mut *$tx)
            .await?;
            let mut rows = Vec::with_capacity(entries.len());
            for (offset, entry) in (1..).zip(entries) {
                let seq = last_seq - count + offset;
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
                rows.push((entry, seq, tenant, detail, std::mem::replace(&mut prev, hash.clone()), hash));
            }
            let mut insert = $crate::audit::builder_for(
                &$tx,
                "INSERT INTO audit_log (chain, seq, tenant_id, at, actor_kind, actor_id, action, subject, detail, prev_hash, hash) ",
            );
            insert.push_values(&rows, |mut b, (entry, seq, tenant, detail, prev_hash, hash)| {
                b.push_bind(&entry.chain)
                    .push_bind(*seq)
                    .push_bind(tenant)
                    .push_bind(entry.at)
                    .push_bind(entry.actor.kind.as_str())
                    .push_bind(&entry.actor.id)
                    .push_bind(entry.action)
                    .push_bind(&entry.subject)
                    .push_bind(detail)
                    .push_bind(prev_hash)
                    .push_bind(hash);
            });
            insert.build().execute(&mut *$tx).await?;
            sqlx::query("UPDATE audit_heads SET hash = $2 WHERE chain = $1")
                .bind(&first.chain)
                .bind(&prev)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

/// Appends one entry inside an open transaction (`$tx`).
macro_rules! audit_append {
    ($tx:expr, $entry:expr) => {{
        let entry: &$crate::audit::NewAuditEntry = $entry;
        audit_append_all!($tx, std::slice::from_ref(entry));
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
