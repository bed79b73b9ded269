//! Recording a validated launch and handing it to the product.

use crate::db::BeginWrite;
use crate::error::StoreError;
use crate::{TenantStore, now_micros};
use domain::{ContextId, GradeTargetId, LaunchId, PersonId, PlatformId, ResourceId, Role};
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

/// The normalised launch the product redeems.
pub(crate) fn summary(
    launch: &NewLaunch,
    launch_id: LaunchId,
    person_id: Option<PersonId>,
    context_id: Option<ContextId>,
    resource_id: Option<ResourceId>,
    grade_target_id: Option<GradeTargetId>,
    at: i64,
) -> serde_json::Value {
    serde_json::json!({
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
        "launched_at": at,
    })
}

impl TenantStore<'_> {
    /// Records a validated launch: checks and touches the deployment, consumes the nonce,
    /// upserts person, context, resource, enrolment and grade target, stores the normalised
    /// launch, issues the handoff code and audits it, all or nothing. (One launch through
    /// [`crate::Store::record_launches`].)
    pub async fn record_launch(&self, launch: &NewLaunch) -> Result<RecordedLaunch, StoreError> {
        let batch = [(self.scope.clone(), launch.clone())];
        let store = crate::Store {
            db: self.db.clone(),
        };
        match store.record_launches(&batch).await?.pop() {
            Some(Ok(r)) => Ok(r),
            Some(Err(crate::launch_batch::LaunchRefusal::NonceReplayed)) => {
                Err(StoreError::Conflict("nonce already used"))
            }
            Some(Err(crate::launch_batch::LaunchRefusal::UnknownDeployment)) | None => {
                Err(StoreError::UnknownDeployment)
            }
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
