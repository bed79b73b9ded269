//! Tenants, their API keys, and the scope that proves access to one tenant.

use crate::audit::NewAuditEntry;
use crate::crypto::{constant_time_eq, random_token, sha256_hex};
use crate::db::BeginWrite;
use crate::error::StoreError;
use crate::{Store, TenantStore, now_micros};
use domain::{Actor, Tenant, TenantId};
use std::fmt;
use url::Url;

/// Proof that the holder may act for one tenant. Only the store creates these: from an API
/// key, from a platform registration found at launch, or for an operator by tenant id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantScope {
    tenant_id: TenantId,
}

impl TenantScope {
    pub(crate) const fn new(tenant_id: TenantId) -> Self {
        Self { tenant_id }
    }

    pub const fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }
}

/// A freshly issued API key. The full value exists only here; the store keeps its hash.
pub struct ApiKey {
    pub id: String,
    pub prefix: String,
    secret: String,
}

impl ApiKey {
    /// The key to hand to the product, once.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("prefix", &self.prefix)
            .field("secret", &"[redacted]")
            .finish()
    }
}

const KEY_PREFIX: &str = "lmsb";

fn new_api_key() -> ApiKey {
    // The prefix is visible in listings so an admin can tell keys apart; the secret is not.
    let prefix = random_token(6).replace(['-', '_'], "x");
    let secret = format!("{KEY_PREFIX}_{prefix}_{}", random_token(32));
    ApiKey {
        id: uuid::Uuid::now_v7().to_string(),
        prefix,
        secret,
    }
}

/// Inserts an API key row inside a transaction.
macro_rules! insert_key {
    ($tx:expr, $tenant:expr, $key:expr, $label:expr) => {{
        let key: &ApiKey = $key;
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, prefix, key_hash, label, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.id)
        .bind($tenant.to_string())
        .bind(&key.prefix)
        .bind(sha256_hex(key.secret.as_bytes()))
        .bind($label)
        .bind(now_micros())
        .execute(&mut *$tx)
        .await?;
    }};
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    id: String,
    name: String,
    launch_url: Option<String>,
    created_at: i64,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;
    fn try_from(r: TenantRow) -> Result<Self, StoreError> {
        Ok(Tenant {
            id: r
                .id
                .parse()
                .map_err(|_| StoreError::Corrupt("tenant id".into()))?,
            name: r.name,
            launch_url: r
                .launch_url
                .map(|u| Url::parse(&u))
                .transpose()
                .map_err(|_| StoreError::Corrupt("tenant launch_url".into()))?,
            created_at: r.created_at,
        })
    }
}

impl Store {
    /// Creates a tenant and its first API key, audited on the new tenant's chain.
    pub async fn create_tenant(
        &self,
        name: &str,
        launch_url: Option<&Url>,
        actor: &Actor,
    ) -> Result<(Tenant, ApiKey), StoreError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(StoreError::Invalid(
                "tenant name must be 1 to 200 characters".into(),
            ));
        }
        let tenant = Tenant {
            id: TenantId::generate(),
            name: name.to_owned(),
            launch_url: launch_url.cloned(),
            created_at: now_micros(),
        };
        let key = new_api_key();
        let audit = NewAuditEntry::tenant(
            tenant.id,
            actor.clone(),
            "tenant.created",
            format!("tenant:{}", tenant.id),
            serde_json::json!({"name": tenant.name, "launch_url": tenant.launch_url, "api_key_prefix": key.prefix}),
        );
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO tenants (id, name, launch_url, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(tenant.id.to_string())
            .bind(&tenant.name)
            .bind(tenant.launch_url.as_ref().map(Url::as_str))
            .bind(tenant.created_at)
            .execute(&mut *tx)
            .await?;
            insert_key!(tx, tenant.id, &key, Some("initial"));
            audit_append!(tx, &audit);
            tx.commit().await?;
        });
        Ok((tenant, key))
    }

    /// Issues another API key for a tenant (key rotation, a second product environment).
    pub async fn issue_api_key(
        &self,
        scope: &TenantScope,
        label: Option<&str>,
        actor: &Actor,
    ) -> Result<ApiKey, StoreError> {
        let key = new_api_key();
        let audit = NewAuditEntry::tenant(
            scope.tenant_id,
            actor.clone(),
            "api_key.issued",
            format!("api_key:{}", key.prefix),
            serde_json::json!({"label": label}),
        );
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            insert_key!(tx, scope.tenant_id, &key, label);
            audit_append!(tx, &audit);
            tx.commit().await?;
        });
        Ok(key)
    }

    /// Resolves a presented API key to its tenant. Unknown, malformed and revoked keys all
    /// answer `None`; the comparison is constant-time.
    pub async fn authenticate_api_key(
        &self,
        presented: &str,
    ) -> Result<Option<TenantScope>, StoreError> {
        let mut parts = presented.splitn(3, '_');
        let (Some(KEY_PREFIX), Some(prefix), Some(_)) = (parts.next(), parts.next(), parts.next())
        else {
            return Ok(None);
        };
        let row: Option<(String, String)> = on_db!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT tenant_id, key_hash FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL",
            )
            .bind(prefix)
            .fetch_optional(pool)
            .await?
        });
        let presented_hash = sha256_hex(presented.as_bytes());
        match row {
            Some((tenant, hash))
                if constant_time_eq(hash.as_bytes(), presented_hash.as_bytes()) =>
            {
                let id = tenant
                    .parse()
                    .map_err(|_| StoreError::Corrupt("api key tenant id".into()))?;
                Ok(Some(TenantScope::new(id)))
            }
            _ => Ok(None),
        }
    }

    /// Operator access to a tenant by id (CLI, admin tooling). Fails if it does not exist.
    pub async fn tenant_scope(&self, id: TenantId) -> Result<TenantScope, StoreError> {
        let found: Option<(String,)> = on_db!(&self.db, |pool| {
            sqlx::query_as("SELECT id FROM tenants WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        found
            .map(|_| TenantScope::new(id))
            .ok_or(StoreError::NotFound)
    }

    /// Every tenant, for operators.
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows: Vec<TenantRow> = on_db!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT id, name, launch_url, created_at FROM tenants ORDER BY created_at",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(Tenant::try_from).collect()
    }

    /// Finds a tenant by its exact name (the demo reuses its tenant across restarts).
    pub async fn find_tenant_by_name(&self, name: &str) -> Result<Option<TenantScope>, StoreError> {
        let row: Option<(String,)> = on_db!(&self.db, |pool| {
            sqlx::query_as("SELECT id FROM tenants WHERE name = $1 ORDER BY created_at LIMIT 1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        row.map(|(id,)| {
            id.parse()
                .map(TenantScope::new)
                .map_err(|_| StoreError::Corrupt("tenant id".into()))
        })
        .transpose()
    }
}

impl TenantStore<'_> {
    /// The tenant itself.
    pub async fn tenant(&self) -> Result<Tenant, StoreError> {
        let row: Option<TenantRow> = on_db!(self.db, |pool| {
            sqlx::query_as("SELECT id, name, launch_url, created_at FROM tenants WHERE id = $1")
                .bind(self.scope.tenant_id.to_string())
                .fetch_optional(pool)
                .await?
        });
        row.ok_or(StoreError::NotFound)?.try_into()
    }
}

impl TenantStore<'_> {
    /// Changes where launches are handed off (`None`: lmsbridge's summary page).
    pub async fn set_launch_url(&self, url: Option<&Url>, actor: &Actor) -> Result<(), StoreError> {
        let tenant = self.scope.tenant_id;
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "tenant.launch_url_changed",
            format!("tenant:{tenant}"),
            serde_json::json!({"launch_url": url}),
        );
        on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query("UPDATE tenants SET launch_url = $1 WHERE id = $2")
                .bind(url.map(Url::as_str))
                .bind(tenant.to_string())
                .execute(&mut *tx)
                .await?;
            audit_append!(tx, &audit);
            tx.commit().await?;
        });
        Ok(())
    }
}
