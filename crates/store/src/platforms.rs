//! Platform registrations and their deployments.

use crate::audit::NewAuditEntry;
use crate::db::BeginWrite;
use crate::error::StoreError;
use crate::tenants::TenantScope;
use crate::{Store, TenantStore, now_micros};
use domain::{
    Actor, Deployment, DeploymentId, DeploymentStatus, Platform, PlatformId, PlatformKind,
};
use url::Url;

/// What an admin registers.
#[derive(Debug, Clone)]
pub struct NewPlatform {
    pub kind: PlatformKind,
    pub issuer: String,
    pub client_id: String,
    pub auth_url: Url,
    pub token_url: Url,
    pub jwks_url: Url,
    pub token_audience: Option<String>,
    pub accept_new_deployments: bool,
    pub deployment_ids: Vec<String>,
}

/// A platform found by a protocol lookup, with the scope of the tenant that owns it.
#[derive(Debug, Clone)]
pub struct PlatformRegistration {
    pub platform: Platform,
    pub scope: TenantScope,
}

/// Inserts a deployment row inside a transaction.
macro_rules! insert_deployment {
    ($tx:expr, $tenant:expr, $platform:expr, $deployment:expr) => {{
        let now = now_micros();
        sqlx::query(
            "INSERT INTO deployments (id, tenant_id, platform_id, deployment_id, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(DeploymentId::generate().to_string())
        .bind($tenant.to_string())
        .bind($platform.to_string())
        .bind($deployment)
        .bind(now)
        .execute(&mut *$tx)
        .await?;
    }};
}

#[derive(sqlx::FromRow)]
struct PlatformRow {
    id: String,
    tenant_id: String,
    kind: String,
    issuer: String,
    client_id: String,
    auth_url: String,
    token_url: String,
    jwks_url: String,
    token_audience: Option<String>,
    accept_new_deployments: bool,
    enabled: bool,
    created_at: i64,
}

const PLATFORM_COLUMNS: &str = "id, tenant_id, kind, issuer, client_id, auth_url, token_url, jwks_url, token_audience, accept_new_deployments, enabled, created_at";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("platform {what}"))
}

impl TryFrom<PlatformRow> for Platform {
    type Error = StoreError;
    fn try_from(r: PlatformRow) -> Result<Self, StoreError> {
        let url = |s: &str, what| Url::parse(s).map_err(|_| corrupt(what));
        Ok(Platform {
            id: r.id.parse().map_err(|_| corrupt("id"))?,
            tenant_id: r.tenant_id.parse().map_err(|_| corrupt("tenant id"))?,
            kind: r.kind.parse().map_err(|_| corrupt("kind"))?,
            auth_url: url(&r.auth_url, "auth_url")?,
            token_url: url(&r.token_url, "token_url")?,
            jwks_url: url(&r.jwks_url, "jwks_url")?,
            issuer: r.issuer,
            client_id: r.client_id,
            token_audience: r.token_audience,
            accept_new_deployments: r.accept_new_deployments,
            enabled: r.enabled,
            created_at: r.created_at,
        })
    }
}

fn registration(row: PlatformRow) -> Result<PlatformRegistration, StoreError> {
    let platform = Platform::try_from(row)?;
    Ok(PlatformRegistration {
        scope: TenantScope::new(platform.tenant_id),
        platform,
    })
}

impl Store {
    /// Registrations matching a login's issuer, narrowed by client_id when the platform sent
    /// one. Several results mean the login is ambiguous and must not be guessed at.
    pub async fn find_platforms(
        &self,
        issuer: &str,
        client_id: Option<&str>,
    ) -> Result<Vec<PlatformRegistration>, StoreError> {
        let rows: Vec<PlatformRow> = on_db!(&self.db, |pool| {
            match client_id {
                Some(c) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {PLATFORM_COLUMNS} FROM platforms WHERE issuer = $1 AND client_id = $2"
                )))
                .bind(issuer)
                .bind(c)
                .fetch_all(pool)
                .await?,
                None => {
                    sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "SELECT {PLATFORM_COLUMNS} FROM platforms WHERE issuer = $1 LIMIT 2"
                    )))
                    .bind(issuer)
                    .fetch_all(pool)
                    .await?
                }
            }
        });
        rows.into_iter().map(registration).collect()
    }

    /// A registration by id, as named in a per-registration login URL or a login state.
    pub async fn platform_registration(
        &self,
        id: PlatformId,
    ) -> Result<Option<PlatformRegistration>, StoreError> {
        let row: Option<PlatformRow> = on_db!(&self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {PLATFORM_COLUMNS} FROM platforms WHERE id = $1"
            )))
            .bind(id.to_string())
            .fetch_optional(pool)
            .await?
        });
        row.map(registration).transpose()
    }
}

impl TenantStore<'_> {
    /// Registers a platform with its first deployments.
    pub async fn add_platform(
        &self,
        new: &NewPlatform,
        actor: &Actor,
    ) -> Result<Platform, StoreError> {
        if new.issuer.trim().is_empty() || new.client_id.trim().is_empty() {
            return Err(StoreError::Invalid(
                "issuer and client_id are required".into(),
            ));
        }
        let tenant = self.scope.tenant_id();
        let platform = Platform {
            id: PlatformId::generate(),
            tenant_id: tenant,
            kind: new.kind,
            issuer: new.issuer.clone(),
            client_id: new.client_id.clone(),
            auth_url: new.auth_url.clone(),
            token_url: new.token_url.clone(),
            jwks_url: new.jwks_url.clone(),
            token_audience: new.token_audience.clone(),
            accept_new_deployments: new.accept_new_deployments,
            enabled: true,
            created_at: now_micros(),
        };
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "platform.registered",
            format!("platform:{}", platform.id),
            serde_json::json!({
                "kind": platform.kind, "issuer": platform.issuer, "client_id": platform.client_id,
                "deployments": new.deployment_ids,
            }),
        );
        let result: Result<(), StoreError> = async {
            on_db!(self.db, |pool| {
                let mut tx = pool.begin_write().await?;
                sqlx::query(
                    "INSERT INTO platforms (id, tenant_id, kind, issuer, client_id, auth_url, token_url, jwks_url, token_audience, accept_new_deployments, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(platform.id.to_string())
                .bind(tenant.to_string())
                .bind(platform.kind.as_str())
                .bind(&platform.issuer)
                .bind(&platform.client_id)
                .bind(platform.auth_url.as_str())
                .bind(platform.token_url.as_str())
                .bind(platform.jwks_url.as_str())
                .bind(&platform.token_audience)
                .bind(platform.accept_new_deployments)
                .bind(platform.created_at)
                .execute(&mut *tx)
                .await?;
                for d in &new.deployment_ids {
                    insert_deployment!(tx, tenant, platform.id, d);
                }
                audit_append!(tx, &audit);
                tx.commit().await?;
            });
            Ok(())
        }
        .await;
        match result {
            Err(e) if e.is_unique_violation() => Err(StoreError::Conflict(
                "a platform with this issuer and client_id is already registered",
            )),
            other => other.map(|()| platform),
        }
    }

    /// This tenant's platforms.
    pub async fn list_platforms(&self) -> Result<Vec<Platform>, StoreError> {
        let rows: Vec<PlatformRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {PLATFORM_COLUMNS} FROM platforms WHERE tenant_id = $1 ORDER BY created_at"
            )))
            .bind(self.scope.tenant_id().to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(Platform::try_from).collect()
    }

    /// One of this tenant's platforms.
    pub async fn platform(&self, id: PlatformId) -> Result<Platform, StoreError> {
        let row: Option<PlatformRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {PLATFORM_COLUMNS} FROM platforms WHERE id = $1 AND tenant_id = $2"
            )))
            .bind(id.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_optional(pool)
            .await?
        });
        row.ok_or(StoreError::NotFound)?.try_into()
    }

    /// Adds a deployment to one of this tenant's platforms.
    pub async fn add_deployment(
        &self,
        platform: PlatformId,
        deployment_id: &str,
        actor: &Actor,
    ) -> Result<Deployment, StoreError> {
        if deployment_id.trim().is_empty() {
            return Err(StoreError::Invalid("deployment id is required".into()));
        }
        // Refuses platforms of other tenants before anything is written.
        self.platform(platform).await?;
        let tenant = self.scope.tenant_id();
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "deployment.added",
            format!("platform:{platform}"),
            serde_json::json!({"deployment_id": deployment_id}),
        );
        let result: Result<(), StoreError> = async {
            on_db!(self.db, |pool| {
                let mut tx = pool.begin_write().await?;
                insert_deployment!(tx, tenant, platform, deployment_id);
                audit_append!(tx, &audit);
                tx.commit().await?;
            });
            Ok(())
        }
        .await;
        match result {
            Err(e) if e.is_unique_violation() => Err(StoreError::Conflict(
                "this deployment is already registered",
            )),
            Err(e) => Err(e),
            Ok(()) => self
                .deployments(platform)
                .await?
                .into_iter()
                .find(|d| d.deployment_id == deployment_id)
                .ok_or(StoreError::NotFound),
        }
    }

    /// The deployments of one of this tenant's platforms.
    pub async fn deployments(&self, platform: PlatformId) -> Result<Vec<Deployment>, StoreError> {
        let rows: Vec<(String, String, String, Option<i64>)> = on_db!(self.db, |pool| {
            sqlx::query_as(
                "SELECT id, deployment_id, status, last_seen_at FROM deployments WHERE platform_id = $1 AND tenant_id = $2 ORDER BY created_at",
            )
            .bind(platform.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(id, deployment_id, status, last_seen_at)| {
                Ok(Deployment {
                    id: id
                        .parse::<DeploymentId>()
                        .map_err(|_| corrupt("deployment id"))?,
                    tenant_id: self.scope.tenant_id(),
                    platform_id: platform,
                    deployment_id,
                    status: match status.as_str() {
                        "pending" => DeploymentStatus::Pending,
                        _ => DeploymentStatus::Active,
                    },
                    last_seen_at,
                })
            })
            .collect()
    }

    /// Records a deployment first seen in a launch as pending, when the platform allows new
    /// deployments. Returns true when it was newly recorded.
    pub async fn note_pending_deployment(
        &self,
        platform: &Platform,
        deployment_id: &str,
    ) -> Result<bool, StoreError> {
        if platform.tenant_id != self.scope.tenant_id() || !platform.accept_new_deployments {
            return Ok(false);
        }
        let tenant = self.scope.tenant_id();
        let audit = NewAuditEntry::tenant(
            tenant,
            Actor::system("lti-launch"),
            "deployment.pending",
            format!("platform:{}", platform.id),
            serde_json::json!({"deployment_id": deployment_id}),
        );
        let inserted = on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query(
                "INSERT INTO deployments (id, tenant_id, platform_id, deployment_id, status, created_at) \
                 VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (platform_id, deployment_id) DO NOTHING",
            )
            .bind(DeploymentId::generate().to_string())
            .bind(tenant.to_string())
            .bind(platform.id.to_string())
            .bind(deployment_id)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                audit_append!(tx, &audit);
            }
            tx.commit().await?;
            n == 1
        });
        Ok(inserted)
    }

    /// Approves a pending deployment so its launches are accepted.
    pub async fn approve_deployment(
        &self,
        platform: PlatformId,
        deployment_id: &str,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let tenant = self.scope.tenant_id();
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "deployment.approved",
            format!("platform:{platform}"),
            serde_json::json!({"deployment_id": deployment_id}),
        );
        let result: Result<(), StoreError> = async {
            on_db!(self.db, |pool| {
                let mut tx = pool.begin_write().await?;
                let n = sqlx::query(
                    "UPDATE deployments SET status = 'active' WHERE platform_id = $1 AND deployment_id = $2 AND tenant_id = $3 AND status = 'pending'",
                )
                .bind(platform.to_string())
                .bind(deployment_id)
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
        .await;
        result
    }
}

impl TenantStore<'_> {
    /// Stores the LTI 1.1 consumer key and secret this platform's old install used, sealed
    /// with the master key.
    pub async fn set_lti11_credentials(
        &self,
        platform: PlatformId,
        consumer_key: &str,
        secret: &str,
        master: &crate::crypto::MasterKey,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        if consumer_key.is_empty() || secret.is_empty() {
            return Err(StoreError::Invalid(
                "consumer key and secret are required".into(),
            ));
        }
        self.platform(platform).await?;
        let sealed = master.seal(secret.as_bytes(), &format!("lti11:{platform}"))?;
        let tenant = self.scope.tenant_id();
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "platform.lti11_credentials_set",
            format!("platform:{platform}"),
            serde_json::json!({"consumer_key": consumer_key}),
        );
        on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "UPDATE platforms SET lti11_consumer_key = $1, lti11_secret_sealed = $2 WHERE id = $3 AND tenant_id = $4",
            )
            .bind(consumer_key)
            .bind(&sealed)
            .bind(platform.to_string())
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await?;
            audit_append!(tx, &audit);
            tx.commit().await?;
        });
        Ok(())
    }

    /// The LTI 1.1 consumer key and secret of one of this tenant's platforms, if set.
    pub async fn lti11_credentials(
        &self,
        platform: PlatformId,
        master: &crate::crypto::MasterKey,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row: Option<(Option<String>, Option<Vec<u8>>)> = on_db!(self.db, |pool| {
            sqlx::query_as(
                "SELECT lti11_consumer_key, lti11_secret_sealed FROM platforms WHERE id = $1 AND tenant_id = $2",
            )
            .bind(platform.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_optional(pool)
            .await?
        });
        match row {
            Some((Some(key), Some(sealed))) => {
                let secret = master.open(&sealed, &format!("lti11:{platform}"))?;
                let secret = String::from_utf8(secret)
                    .map_err(|_| StoreError::Corrupt("lti11 secret".into()))?;
                Ok(Some((key, secret)))
            }
            _ => Ok(None),
        }
    }
}
