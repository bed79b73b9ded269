//! LTI Dynamic Registration: the invites that bind a registration URL to a tenant, the
//! registrations platforms make through them, and an admin enabling them.

use crate::audit::NewAuditEntry;
use crate::crypto::{random_token, sha256_hex};
use crate::db::BeginWrite;
use crate::error::StoreError;
use crate::tenants::TenantScope;
use crate::{Store, TenantStore, now_micros};
use domain::{Actor, DeploymentId, Platform, PlatformId, PlatformKind};
use std::fmt;
use url::Url;

/// A freshly issued registration invite. The token exists only here; the store keeps its hash.
pub struct RegistrationInvite {
    pub id: String,
    pub expires_at: i64,
    token: String,
}

impl RegistrationInvite {
    /// The secret path segment of the tenant's registration URL, shown once.
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for RegistrationInvite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrationInvite")
            .field("id", &self.id)
            .field("expires_at", &self.expires_at)
            .field("token", &"[redacted]")
            .finish()
    }
}

/// An invite as listed for an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteSummary {
    pub id: String,
    pub label: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub used_count: i64,
}

/// A registration a platform made through Dynamic Registration. Its id is chosen before the
/// platform is called, because the per-registration login and launch URLs sent to the
/// platform carry it.
#[derive(Debug, Clone)]
pub struct NewDynamicPlatform {
    pub id: PlatformId,
    pub kind: PlatformKind,
    pub issuer: String,
    pub client_id: String,
    pub auth_url: Url,
    pub token_url: Url,
    pub jwks_url: Url,
    pub token_audience: Option<String>,
    /// Moodle creates the deployment with the registration; Canvas only when it is installed.
    pub deployment_id: Option<String>,
    /// The platform's OpenID configuration and registration answer, for the admin to read.
    pub platform_configuration: serde_json::Value,
}

impl Store {
    /// The tenant a registration invite token belongs to, while it is valid. Counts the use.
    pub async fn redeem_registration_invite(
        &self,
        token: &str,
    ) -> Result<Option<TenantScope>, StoreError> {
        let now = now_micros();
        let tenant: Option<(String,)> = on_db!(&self.db, |pool| {
            sqlx::query_as(
                "UPDATE registration_invites SET used_count = used_count + 1 \
                 WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2 RETURNING tenant_id",
            )
            .bind(sha256_hex(token.as_bytes()))
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        tenant
            .map(|(t,)| {
                t.parse()
                    .map(TenantScope::new)
                    .map_err(|_| StoreError::Corrupt("invite tenant".into()))
            })
            .transpose()
    }
}

impl TenantStore<'_> {
    /// Issues a registration invite valid for `ttl_secs`.
    pub async fn issue_registration_invite(
        &self,
        label: Option<&str>,
        ttl_secs: i64,
        actor: &Actor,
    ) -> Result<RegistrationInvite, StoreError> {
        if ttl_secs <= 0 {
            return Err(StoreError::Invalid(
                "the invite lifetime must be positive".into(),
            ));
        }
        let tenant = self.scope.tenant_id();
        let now = now_micros();
        let invite = RegistrationInvite {
            id: uuid::Uuid::now_v7().to_string(),
            expires_at: now + ttl_secs * 1_000_000,
            token: random_token(32),
        };
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "registration_invite.issued",
            format!("registration_invite:{}", invite.id),
            serde_json::json!({"label": label, "expires_at": invite.expires_at}),
        );
        on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO registration_invites (id, tenant_id, token_hash, label, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&invite.id)
            .bind(tenant.to_string())
            .bind(sha256_hex(invite.token.as_bytes()))
            .bind(label)
            .bind(now)
            .bind(invite.expires_at)
            .execute(&mut *tx)
            .await?;
            audit_append!(tx, &audit);
            tx.commit().await?;
        });
        Ok(invite)
    }

    /// This tenant's registration invites, newest first.
    pub async fn registration_invites(&self) -> Result<Vec<InviteSummary>, StoreError> {
        type Row = (String, Option<String>, i64, i64, Option<i64>, i64);
        let rows: Vec<Row> = on_db!(self.db, |pool| {
            sqlx::query_as(
                "SELECT id, label, created_at, expires_at, revoked_at, used_count FROM registration_invites WHERE tenant_id = $1 ORDER BY created_at DESC",
            )
            .bind(self.scope.tenant_id().to_string())
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, label, created_at, expires_at, revoked_at, used_count)| InviteSummary {
                    id,
                    label,
                    created_at,
                    expires_at,
                    revoked_at,
                    used_count,
                },
            )
            .collect())
    }

    /// Revokes one of this tenant's invites.
    pub async fn revoke_registration_invite(
        &self,
        id: &str,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let tenant = self.scope.tenant_id();
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "registration_invite.revoked",
            format!("registration_invite:{id}"),
            serde_json::json!({}),
        );
        on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query(
                "UPDATE registration_invites SET revoked_at = $1 WHERE id = $2 AND tenant_id = $3 AND revoked_at IS NULL",
            )
            .bind(now_micros())
            .bind(id)
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

    /// Stores a registration made through Dynamic Registration, disabled until an admin
    /// enables it.
    pub async fn add_dynamic_platform(
        &self,
        new: &NewDynamicPlatform,
        actor: &Actor,
    ) -> Result<Platform, StoreError> {
        if new.issuer.trim().is_empty() || new.client_id.trim().is_empty() {
            return Err(StoreError::Invalid(
                "issuer and client_id are required".into(),
            ));
        }
        let tenant = self.scope.tenant_id();
        let platform = Platform {
            id: new.id,
            tenant_id: tenant,
            kind: new.kind,
            issuer: new.issuer.clone(),
            client_id: new.client_id.clone(),
            auth_url: new.auth_url.clone(),
            token_url: new.token_url.clone(),
            jwks_url: new.jwks_url.clone(),
            token_audience: new.token_audience.clone(),
            // Without a deployment from the registration, the first launch brings one.
            accept_new_deployments: new.deployment_id.is_none(),
            enabled: false,
            created_at: now_micros(),
        };
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "platform.registered_dynamically",
            format!("platform:{}", platform.id),
            serde_json::json!({
                "kind": platform.kind, "issuer": platform.issuer, "client_id": platform.client_id,
                "deployment_id": new.deployment_id,
            }),
        );
        let configuration = new.platform_configuration.to_string();
        let result: Result<(), StoreError> = async {
            on_db!(self.db, |pool| {
                let mut tx = pool.begin_write().await?;
                sqlx::query(
                    "INSERT INTO platforms (id, tenant_id, kind, issuer, client_id, auth_url, token_url, jwks_url, token_audience, accept_new_deployments, enabled, registered_via, platform_configuration, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'dynamic', $12, $13)",
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
                .bind(platform.enabled)
                .bind(&configuration)
                .bind(platform.created_at)
                .execute(&mut *tx)
                .await?;
                if let Some(d) = &new.deployment_id {
                    sqlx::query(
                        "INSERT INTO deployments (id, tenant_id, platform_id, deployment_id, created_at) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(DeploymentId::generate().to_string())
                    .bind(tenant.to_string())
                    .bind(platform.id.to_string())
                    .bind(d)
                    .bind(platform.created_at)
                    .execute(&mut *tx)
                    .await?;
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

    /// Enables or disables one of this tenant's registrations.
    pub async fn set_platform_enabled(
        &self,
        id: PlatformId,
        enabled: bool,
        actor: &Actor,
    ) -> Result<Platform, StoreError> {
        let tenant = self.scope.tenant_id();
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            if enabled {
                "platform.enabled"
            } else {
                "platform.disabled"
            },
            format!("platform:{id}"),
            serde_json::json!({}),
        );
        on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let n =
                sqlx::query("UPDATE platforms SET enabled = $1 WHERE id = $2 AND tenant_id = $3")
                    .bind(enabled)
                    .bind(id.to_string())
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
        self.platform(id).await
    }

    /// How a registration was made (`manual` or `dynamic`) and, for dynamic ones, what the
    /// platform said about itself.
    pub async fn platform_origin(
        &self,
        id: PlatformId,
    ) -> Result<(String, Option<serde_json::Value>), StoreError> {
        let row: Option<(String, Option<String>)> = on_db!(self.db, |pool| {
            sqlx::query_as(
                "SELECT registered_via, platform_configuration FROM platforms WHERE id = $1 AND tenant_id = $2",
            )
            .bind(id.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_optional(pool)
            .await?
        });
        let (via, config) = row.ok_or(StoreError::NotFound)?;
        let config = config
            .map(|c| serde_json::from_str(&c))
            .transpose()
            .map_err(|_| StoreError::Corrupt("platform configuration".into()))?;
        Ok((via, config))
    }
}
