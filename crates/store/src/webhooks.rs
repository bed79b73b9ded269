//! Product webhooks: a tenant's endpoint and signing secret, the outbox of deliveries owed
//! to it (queued in the same transaction as the change they report, so none is lost or
//! invented), leased claims for senders on any instance, and the log of every attempt.

use crate::audit::NewAuditEntry;
use crate::crypto::{MasterKey, random_token};
use crate::db::BeginWrite;
use crate::error::StoreError;
use crate::{Store, TenantStore, now_micros};
use domain::{Actor, TenantId};
use serde::Serialize;
use url::Url;

/// Queues an event for the tenant's webhook endpoint inside a transaction, if it has one.
macro_rules! queue_webhook_event {
    ($tx:expr, $tenant:expr, $event:expr, $payload:expr, $now:expr) => {{
        let id = uuid::Uuid::now_v7().to_string();
        let mut payload: serde_json::Value = $payload;
        payload["id"] = serde_json::Value::String(id.clone());
        payload["event"] = serde_json::Value::String($event.to_owned());
        payload["occurred_at_micros"] = serde_json::json!($now);
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, tenant_id, event, payload, state, attempts, next_attempt_at, created_at) \
             SELECT $1, tenant_id, $2, $3, 'queued', 0, $4, $4 FROM webhook_endpoints WHERE tenant_id = $5",
        )
        .bind(&id)
        .bind($event)
        .bind(payload.to_string())
        .bind($now)
        .bind($tenant)
        .execute(&mut *$tx)
        .await?;
    }};
}

fn seal_context(tenant: TenantId) -> String {
    format!("webhook-secret:{tenant}")
}

/// A delivery as the product API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookDelivery {
    pub id: String,
    pub event: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    pub attempt_log: Vec<WebhookAttempt>,
}

/// One attempt to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct WebhookAttempt {
    pub attempt: i64,
    pub started_at: i64,
    pub latency_ms: i64,
    pub status: Option<i64>,
    pub error: Option<String>,
}

/// A delivery a sender has claimed, with where and how to send it.
#[derive(Debug, Clone)]
pub struct ClaimedWebhook {
    pub id: String,
    pub tenant_id: TenantId,
    pub event: String,
    pub payload: String,
    pub attempts: i64,
    pub created_at: i64,
    /// `None` when the tenant removed its endpoint since the event was queued.
    pub url: Option<String>,
    secret_sealed: Option<Vec<u8>>,
}

impl ClaimedWebhook {
    /// The endpoint's signing secret.
    pub fn secret(&self, master: &MasterKey) -> Result<Option<String>, StoreError> {
        self.secret_sealed
            .as_ref()
            .map(|s| {
                let plain = master.open(s, &seal_context(self.tenant_id))?;
                String::from_utf8(plain).map_err(|_| StoreError::Corrupt("webhook secret".into()))
            })
            .transpose()
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookOutcome {
    Delivered {
        status: u16,
    },
    Retry {
        at: i64,
        status: Option<u16>,
        error: String,
    },
    Dead {
        status: Option<u16>,
        error: String,
    },
}

impl TenantStore<'_> {
    /// Points the tenant's webhooks at `url` with a new signing secret, returned once.
    pub async fn set_webhook(
        &self,
        url: &Url,
        master: &MasterKey,
        actor: &Actor,
    ) -> Result<String, StoreError> {
        let tenant = self.scope.tenant_id();
        let secret = format!("whsec_{}", random_token(32));
        let sealed = master.seal(secret.as_bytes(), &seal_context(tenant))?;
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "webhook.configured",
            format!("tenant:{tenant}"),
            serde_json::json!({"url": url.as_str()}),
        );
        on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO webhook_endpoints (tenant_id, url, secret_sealed, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id) DO UPDATE SET url = excluded.url, secret_sealed = excluded.secret_sealed, created_at = excluded.created_at",
            )
            .bind(tenant.to_string())
            .bind(url.as_str())
            .bind(&sealed)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
            audit_append!(tx, &audit);
            tx.commit().await?;
        });
        Ok(secret)
    }

    /// Stops the tenant's webhooks. Deliveries still queued go dead as undeliverable.
    pub async fn remove_webhook(&self, actor: &Actor) -> Result<(), StoreError> {
        let tenant = self.scope.tenant_id();
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "webhook.removed",
            format!("tenant:{tenant}"),
            serde_json::json!({}),
        );
        on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query("DELETE FROM webhook_endpoints WHERE tenant_id = $1")
                .bind(tenant.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            audit_append!(tx, &audit);
            tx.commit().await?;
        });
        Ok(())
    }

    /// The tenant's webhook URL, if set.
    pub async fn webhook_url(&self) -> Result<Option<String>, StoreError> {
        Ok(on_db!(self.db, |pool| {
            sqlx::query_scalar("SELECT url FROM webhook_endpoints WHERE tenant_id = $1")
                .bind(self.scope.tenant_id().to_string())
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The tenant's deliveries, newest first, with their attempts.
    pub async fn webhook_deliveries(&self, limit: i64) -> Result<Vec<WebhookDelivery>, StoreError> {
        type Row = (
            String,
            String,
            String,
            i64,
            i64,
            Option<i64>,
            Option<String>,
            i64,
            Option<i64>,
        );
        let tenant_s = self.scope.tenant_id().to_string();
        let rows: Vec<Row> = on_db!(self.db, |pool| {
            sqlx::query_as(
                "SELECT id, event, state, attempts, next_attempt_at, last_status, last_error, created_at, delivered_at \
                 FROM webhook_deliveries WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
            )
            .bind(&tenant_s)
            .bind(limit.clamp(1, 500))
            .fetch_all(pool)
            .await?
        });
        let mut out = Vec::with_capacity(rows.len());
        for (
            id,
            event,
            state,
            attempts,
            next_attempt_at,
            last_status,
            last_error,
            created_at,
            delivered_at,
        ) in rows
        {
            let attempt_log: Vec<WebhookAttempt> = on_db!(self.db, |pool| {
                sqlx::query_as(
                    "SELECT attempt, started_at, latency_ms, status, error FROM webhook_attempts \
                     WHERE delivery_id = $1 AND tenant_id = $2 ORDER BY attempt",
                )
                .bind(&id)
                .bind(&tenant_s)
                .fetch_all(pool)
                .await?
            });
            out.push(WebhookDelivery {
                id,
                event,
                state,
                attempts,
                next_attempt_at,
                last_status,
                last_error,
                created_at,
                delivered_at,
                attempt_log,
            });
        }
        Ok(out)
    }
}

type ClaimRow = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<Vec<u8>>,
);

impl Store {
    /// Claims up to `limit` due deliveries for `worker` until `lease_until`.
    pub async fn claim_webhooks(
        &self,
        worker: &str,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedWebhook>, StoreError> {
        const DUE: &str = "(state IN ('queued', 'retrying') AND next_attempt_at <= $3) OR (state = 'sending' AND lease_until < $3)";
        let now = now_micros();
        let ids: Vec<String> = match &self.db {
            crate::db::Db::Postgres(pool) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "UPDATE webhook_deliveries SET state = 'sending', lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
                     WHERE id IN (SELECT id FROM webhook_deliveries WHERE {DUE} ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
                     RETURNING id"
                )))
                .bind(worker)
                .bind(lease_until)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            crate::db::Db::Sqlite(pool) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "UPDATE webhook_deliveries SET state = 'sending', lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
                     WHERE id IN (SELECT id FROM webhook_deliveries WHERE {DUE} ORDER BY next_attempt_at LIMIT $4) \
                     RETURNING id"
                )))
                .bind(worker)
                .bind(lease_until)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
        };
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let row: Option<ClaimRow> = on_db!(&self.db, |pool| {
                sqlx::query_as(
                    "SELECT d.id, d.tenant_id, d.event, d.payload, d.attempts, d.created_at, e.url, e.secret_sealed \
                     FROM webhook_deliveries d LEFT JOIN webhook_endpoints e ON e.tenant_id = d.tenant_id \
                     WHERE d.id = $1 AND d.lease_owner = $2",
                )
                .bind(&id)
                .bind(worker)
                .fetch_optional(pool)
                .await?
            });
            if let Some((id, tenant, event, payload, attempts, created_at, url, secret_sealed)) =
                row
            {
                claimed.push(ClaimedWebhook {
                    id,
                    tenant_id: tenant
                        .parse()
                        .map_err(|_| StoreError::Corrupt("webhook tenant".into()))?,
                    event,
                    payload,
                    attempts,
                    created_at,
                    url,
                    secret_sealed,
                });
            }
        }
        Ok(claimed)
    }

    /// Records an attempt and its outcome, if `worker` still holds the lease.
    pub async fn finish_webhook(
        &self,
        claimed: &ClaimedWebhook,
        worker: &str,
        started_at: i64,
        latency_ms: i64,
        outcome: &WebhookOutcome,
    ) -> Result<bool, StoreError> {
        let now = now_micros();
        let (state, next_at, status, error) = match outcome {
            WebhookOutcome::Delivered { status } => {
                ("delivered", now, Some(i64::from(*status)), None)
            }
            WebhookOutcome::Retry { at, status, error } => {
                ("retrying", *at, status.map(i64::from), Some(error.as_str()))
            }
            WebhookOutcome::Dead { status, error } => {
                ("dead", now, status.map(i64::from), Some(error.as_str()))
            }
        };
        Ok(on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query(
                "UPDATE webhook_deliveries SET state = $1, next_attempt_at = $2, last_status = $3, last_error = $4, \
                   delivered_at = CASE WHEN $1 = 'delivered' THEN $5 ELSE delivered_at END, lease_owner = NULL, lease_until = NULL \
                 WHERE id = $6 AND lease_owner = $7 AND attempts = $8 AND state = 'sending'",
            )
            .bind(state)
            .bind(next_at)
            .bind(status)
            .bind(error)
            .bind(now)
            .bind(&claimed.id)
            .bind(worker)
            .bind(claimed.attempts)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                sqlx::query(
                    "INSERT INTO webhook_attempts (id, delivery_id, tenant_id, attempt, started_at, latency_ms, status, error) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(&claimed.id)
                .bind(claimed.tenant_id.to_string())
                .bind(claimed.attempts)
                .bind(started_at)
                .bind(latency_ms)
                .bind(status)
                .bind(error)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            n == 1
        }))
    }
}
