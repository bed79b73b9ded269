//! Recording a validated launch and handing it to the product.

use crate::audit::NewAuditEntry;
use crate::db::BeginWrite;
use crate::error::StoreError;
use crate::{TenantStore, now_micros};
use domain::{Actor, ContextId, GradeTargetId, LaunchId, PersonId, PlatformId, ResourceId, Role};
use serde::Serialize;

/// The person as the launch describes them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LaunchPerson {
    pub platform_user_id: String,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email: Option<String>,
}

/// The context as the launch describes it, with its service URLs.
#[derive(Debug, Clone, Default)]
pub struct LaunchContext {
    pub platform_context_id: String,
    pub title: Option<String>,
    pub label: Option<String>,
    pub lineitems_url: Option<String>,
    pub memberships_url: Option<String>,
}

/// Everything a validated launch writes, in one transaction.
#[derive(Debug, Clone)]
pub struct NewLaunch {
    pub platform_id: PlatformId,
    pub deployment_id: String,
    pub nonce: String,
    /// Until when the nonce must stay recorded (the token's `exp` plus skew, at least).
    pub nonce_expires_at: i64,
    pub message_type: String,
    pub person: Option<LaunchPerson>,
    pub roles: Vec<Role>,
    pub context: Option<LaunchContext>,
    pub resource: Option<(String, Option<String>)>,
    /// The AGS line item for this resource link, with its label.
    pub line_item: Option<(String, Option<String>)>,
    /// Claims the product may want verbatim (custom, launch presentation, platform).
    pub extras: serde_json::Value,
    /// Hash of the one-time handoff code, and when it expires.
    pub handoff_code_hash: String,
    pub handoff_expires_at: i64,
}

/// The ids a launch produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedLaunch {
    pub launch_id: LaunchId,
    pub person_id: Option<PersonId>,
    pub context_id: Option<ContextId>,
    pub resource_id: Option<ResourceId>,
    pub grade_target_id: Option<GradeTargetId>,
    /// The normalised launch, as the product will redeem it.
    pub summary: serde_json::Value,
}

fn parse_id<T: std::str::FromStr>(s: String, what: &str) -> Result<T, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} id")))
}

impl TenantStore<'_> {
    /// Records a validated launch: consumes the nonce, checks and touches the deployment,
    /// upserts person, context, resource, enrolment and grade target, stores the normalised
    /// launch, issues the handoff code and audits it, all or nothing.
    pub async fn record_launch(&self, launch: &NewLaunch) -> Result<RecordedLaunch, StoreError> {
        let tenant = self.scope.tenant_id();
        let tenant_s = tenant.to_string();
        let platform_s = launch.platform_id.to_string();
        let now = now_micros();
        let launch_id = LaunchId::generate();
        let roles_json = serde_json::to_string(&launch.roles)
            .map_err(|_| StoreError::Invalid("roles".into()))?;
        let result: Result<RecordedLaunch, StoreError> = async {
            on_db!(self.db, |pool| {
                let mut tx = pool.begin_write().await?;
                // Single use: the platform's nonce can be recorded once per platform.
                sqlx::query("INSERT INTO used_nonces (platform_id, nonce, expires_at) VALUES ($1, $2, $3)")
                    .bind(&platform_s)
                    .bind(&launch.nonce)
                    .bind(launch.nonce_expires_at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| match e {
                        sqlx::Error::Database(d) if d.is_unique_violation() => {
                            StoreError::Conflict("nonce already used")
                        }
                        other => StoreError::Database(other),
                    })?;
                let touched = sqlx::query(
                    "UPDATE deployments SET last_seen_at = $1 WHERE platform_id = $2 AND deployment_id = $3 AND tenant_id = $4 AND status = 'active'",
                )
                .bind(now)
                .bind(&platform_s)
                .bind(&launch.deployment_id)
                .bind(&tenant_s)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if touched == 0 {
                    return Err(StoreError::UnknownDeployment);
                }
                let person_id: Option<String> = match &launch.person {
                    None => None,
                    Some(p) => Some(
                        sqlx::query_scalar(
                            "INSERT INTO people (id, tenant_id, platform_id, platform_user_id, name, given_name, family_name, email, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
                             ON CONFLICT (platform_id, platform_user_id) DO UPDATE SET \
                               name = COALESCE(excluded.name, people.name), \
                               given_name = COALESCE(excluded.given_name, people.given_name), \
                               family_name = COALESCE(excluded.family_name, people.family_name), \
                               email = COALESCE(excluded.email, people.email), \
                               updated_at = excluded.updated_at \
                             WHERE people.tenant_id = excluded.tenant_id \
                             RETURNING id",
                        )
                        .bind(PersonId::generate().to_string())
                        .bind(&tenant_s)
                        .bind(&platform_s)
                        .bind(&p.platform_user_id)
                        .bind(&p.name)
                        .bind(&p.given_name)
                        .bind(&p.family_name)
                        .bind(&p.email)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?,
                    ),
                };
                let context_id: Option<String> = match &launch.context {
                    None => None,
                    Some(c) => Some(
                        sqlx::query_scalar(
                            "INSERT INTO contexts (id, tenant_id, platform_id, platform_context_id, title, label, lineitems_url, memberships_url, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
                             ON CONFLICT (platform_id, platform_context_id) DO UPDATE SET \
                               title = COALESCE(excluded.title, contexts.title), \
                               label = COALESCE(excluded.label, contexts.label), \
                               lineitems_url = COALESCE(excluded.lineitems_url, contexts.lineitems_url), \
                               memberships_url = COALESCE(excluded.memberships_url, contexts.memberships_url), \
                               updated_at = excluded.updated_at \
                             WHERE contexts.tenant_id = excluded.tenant_id \
                             RETURNING id",
                        )
                        .bind(ContextId::generate().to_string())
                        .bind(&tenant_s)
                        .bind(&platform_s)
                        .bind(&c.platform_context_id)
                        .bind(&c.title)
                        .bind(&c.label)
                        .bind(&c.lineitems_url)
                        .bind(&c.memberships_url)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?,
                    ),
                };
                let resource_id: Option<String> = match (&launch.resource, &context_id) {
                    (Some((rid, title)), Some(ctx)) => Some(
                        sqlx::query_scalar(
                            "INSERT INTO resources (id, tenant_id, context_id, platform_resource_id, title, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $6) \
                             ON CONFLICT (context_id, platform_resource_id) DO UPDATE SET \
                               title = COALESCE(excluded.title, resources.title), updated_at = excluded.updated_at \
                             WHERE resources.tenant_id = excluded.tenant_id \
                             RETURNING id",
                        )
                        .bind(ResourceId::generate().to_string())
                        .bind(&tenant_s)
                        .bind(ctx)
                        .bind(rid)
                        .bind(title)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?,
                    ),
                    _ => None,
                };
                if let (Some(person), Some(ctx)) = (&person_id, &context_id) {
                    sqlx::query(
                        "INSERT INTO enrollments (tenant_id, context_id, person_id, roles, status, source, updated_at) \
                         VALUES ($1, $2, $3, $4, 'active', 'launch', $5) \
                         ON CONFLICT (context_id, person_id) DO UPDATE SET \
                           roles = excluded.roles, status = 'active', updated_at = excluded.updated_at \
                         WHERE enrollments.tenant_id = excluded.tenant_id",
                    )
                    .bind(&tenant_s)
                    .bind(ctx)
                    .bind(person)
                    .bind(&roles_json)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                let grade_target_id: Option<String> = match (&launch.line_item, &context_id) {
                    (Some((url, label)), Some(ctx)) => Some(
                        sqlx::query_scalar(
                            "INSERT INTO grade_targets (id, tenant_id, platform_id, context_id, resource_id, kind, location, label, created_at) \
                             VALUES ($1, $2, $3, $4, $5, 'lti_line_item', $6, $7, $8) \
                             ON CONFLICT (platform_id, location) DO UPDATE SET \
                               label = COALESCE(excluded.label, grade_targets.label), \
                               resource_id = COALESCE(excluded.resource_id, grade_targets.resource_id) \
                             WHERE grade_targets.tenant_id = excluded.tenant_id \
                             RETURNING id",
                        )
                        .bind(GradeTargetId::generate().to_string())
                        .bind(&tenant_s)
                        .bind(&platform_s)
                        .bind(ctx)
                        .bind(&resource_id)
                        .bind(url)
                        .bind(label)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?,
                    ),
                    _ => None,
                };
                let summary = serde_json::json!({
                    "launch_id": launch_id,
                    "message_type": launch.message_type,
                    "platform_id": launch.platform_id,
                    "deployment_id": launch.deployment_id,
                    "person": launch.person.as_ref().map(|p| serde_json::json!({
                        "id": person_id, "platform_user_id": p.platform_user_id, "name": p.name,
                        "given_name": p.given_name, "family_name": p.family_name, "email": p.email,
                    })),
                    "roles": launch.roles,
                    "context": launch.context.as_ref().map(|c| serde_json::json!({
                        "id": context_id, "platform_context_id": c.platform_context_id,
                        "title": c.title, "label": c.label,
                    })),
                    "resource": launch.resource.as_ref().map(|(rid, title)| serde_json::json!({
                        "id": resource_id, "platform_resource_id": rid, "title": title,
                    })),
                    "grade_target_id": grade_target_id,
                    "extras": launch.extras,
                    "launched_at": now,
                });
                sqlx::query(
                    "INSERT INTO launches (id, tenant_id, platform_id, person_id, context_id, resource_id, grade_target_id, message_type, summary, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(launch_id.to_string())
                .bind(&tenant_s)
                .bind(&platform_s)
                .bind(&person_id)
                .bind(&context_id)
                .bind(&resource_id)
                .bind(&grade_target_id)
                .bind(&launch.message_type)
                .bind(summary.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO handoff_codes (code_hash, tenant_id, launch_id, expires_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&launch.handoff_code_hash)
                .bind(&tenant_s)
                .bind(launch_id.to_string())
                .bind(launch.handoff_expires_at)
                .execute(&mut *tx)
                .await?;
                let audit = NewAuditEntry::tenant(
                    tenant,
                    Actor::system("lti-launch"),
                    "launch.accepted",
                    format!("launch:{launch_id}"),
                    serde_json::json!({
                        "platform_id": launch.platform_id,
                        "deployment_id": launch.deployment_id,
                        "message_type": launch.message_type,
                        "person_id": person_id,
                        "context_id": context_id,
                        "resource_id": resource_id,
                        "roles": launch.roles,
                    }),
                );
                audit_append!(tx, &audit);
                tx.commit().await?;
                Ok(RecordedLaunch {
                    launch_id,
                    person_id: person_id.map(|s| parse_id(s, "person")).transpose()?,
                    context_id: context_id.map(|s| parse_id(s, "context")).transpose()?,
                    resource_id: resource_id.map(|s| parse_id(s, "resource")).transpose()?,
                    grade_target_id: grade_target_id
                        .map(|s| parse_id(s, "grade target"))
                        .transpose()?,
                    summary,
                })
            })
        }
        .await;
        match result {
            // A conflicting row of another tenant makes `RETURNING` come back empty.
            Err(StoreError::Database(sqlx::Error::RowNotFound)) => Err(StoreError::Conflict(
                "launch data belongs to another tenant",
            )),
            other => other,
        }
    }

    /// Redeems a one-time handoff code for the normalised launch. A code works once, before
    /// it expires, and only for the tenant it was issued to.
    pub async fn redeem_handoff(
        &self,
        code_hash: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let now = now_micros();
        let tenant_s = self.scope.tenant_id().to_string();
        let summary: Option<String> = on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let launch: Option<String> = sqlx::query_scalar(
                "UPDATE handoff_codes SET used_at = $1 WHERE code_hash = $2 AND tenant_id = $3 AND used_at IS NULL AND expires_at > $1 RETURNING launch_id",
            )
            .bind(now)
            .bind(code_hash)
            .bind(&tenant_s)
            .fetch_optional(&mut *tx)
            .await?;
            let summary = match launch {
                Some(id) => Some(
                    sqlx::query_scalar(
                        "SELECT summary FROM launches WHERE id = $1 AND tenant_id = $2",
                    )
                    .bind(id)
                    .bind(&tenant_s)
                    .fetch_one(&mut *tx)
                    .await?,
                ),
                None => None,
            };
            tx.commit().await?;
            summary
        });
        summary
            .map(|s| {
                serde_json::from_str(&s).map_err(|_| StoreError::Corrupt("launch summary".into()))
            })
            .transpose()
    }
}
