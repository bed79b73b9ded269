//! Recording many launches in one transaction.
//!
//! At exam peaks launches arrive by the hundred per second. One transaction per launch pays
//! a commit and a round trip per statement for each; here a batch shares them: every table is
//! written with one multi-row statement, whatever the batch size. Ids of people, contexts,
//! resources and grade targets are derived from what identifies them on the platform, so
//! upserts need no `RETURNING` to learn them, and the same person launching twice in one
//! batch is one row.

use crate::audit::{NewAuditEntry, builder_for};
use crate::crypto::sha256_hex;
use crate::db::BeginWrite;
use crate::error::StoreError;
use crate::launches::{NewLaunch, RecordedLaunch};
use crate::tenants::TenantScope;
use crate::{Store, now_micros};
use domain::{Actor, ContextId, GradeTargetId, LaunchId, PersonId, ResourceId, TenantId};
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// Why one launch of a batch was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LaunchRefusal {
    #[error("the nonce was already used")]
    NonceReplayed,
    #[error("the deployment is not registered (or not approved) for this platform")]
    UnknownDeployment,
}

/// A stable id from what identifies a row on the platform (a UUIDv8 over SHA-256).
fn derived(kind: &str, parts: &[&str]) -> Uuid {
    let mut material = String::from(kind);
    for p in parts {
        material.push('\u{1f}');
        material.push_str(p);
    }
    let digest = sha256_hex(material.as_bytes());
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&digest[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    Uuid::new_v8(bytes)
}

/// The ids a launch's rows get.
struct Ids {
    person: Option<PersonId>,
    context: Option<ContextId>,
    resource: Option<ResourceId>,
    grade_target: Option<GradeTargetId>,
}

fn ids(launch: &NewLaunch) -> Ids {
    let platform = launch.platform_id.to_string();
    let context = launch
        .context
        .as_ref()
        .map(|c| ContextId::from_uuid(derived("context", &[&platform, &c.platform_context_id])));
    let context_s = context.map(|c| c.to_string());
    Ids {
        person: launch
            .person
            .as_ref()
            .map(|p| PersonId::from_uuid(derived("person", &[&platform, &p.platform_user_id]))),
        resource: match (&launch.resource, &context_s) {
            (Some((rid, _)), Some(ctx)) => {
                Some(ResourceId::from_uuid(derived("resource", &[ctx, rid])))
            }
            _ => None,
        },
        grade_target: match (&launch.line_item, &context) {
            (Some((url, _)), Some(_)) => Some(GradeTargetId::from_uuid(derived(
                "grade_target",
                &[&platform, url],
            ))),
            _ => None,
        },
        context,
    }
}

/// Keeps the last item per key, in first-seen order: one row per key in an upsert (a
/// multi-row upsert may not touch a row twice).
fn last_per_key<K: std::hash::Hash + Eq + Clone, T>(items: Vec<(K, T)>) -> Vec<T> {
    let mut order = Vec::new();
    let mut latest: HashMap<K, T> = HashMap::new();
    for (k, v) in items {
        if !latest.contains_key(&k) {
            order.push(k.clone());
        }
        latest.insert(k, v);
    }
    order
        .into_iter()
        .filter_map(|k| latest.remove(&k))
        .collect()
}

impl Store {
    /// Records launches, each for the tenant whose registration admitted it, in one
    /// transaction. Each launch either is recorded whole or is refused with its reason; a
    /// database failure fails the batch.
    pub async fn record_launches(
        &self,
        batch: &[(TenantScope, NewLaunch)],
    ) -> Result<Vec<Result<RecordedLaunch, LaunchRefusal>>, StoreError> {
        let now = now_micros();
        let mut outcome: Vec<Option<Result<RecordedLaunch, LaunchRefusal>>> =
            vec![None; batch.len()];
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;

            // Deployments: active and the tenant's, touched as seen.
            let mut q = builder_for(&tx, "UPDATE deployments SET last_seen_at = ");
            q.push_bind(now);
            q.push(
                " WHERE status = 'active' AND (tenant_id, platform_id, deployment_id) IN (VALUES ",
            );
            let mut sep = q.separated(", ");
            for (scope, l) in batch {
                sep.push("(");
                sep.push_bind_unseparated(scope.tenant_id().to_string());
                sep.push_unseparated(", ");
                sep.push_bind_unseparated(l.platform_id.to_string());
                sep.push_unseparated(", ");
                sep.push_bind_unseparated(&l.deployment_id);
                sep.push_unseparated(")");
            }
            q.push(") RETURNING tenant_id, platform_id, deployment_id");
            // Keyed by tenant too: one launch's live deployment must not admit another
            // tenant's launch naming the same platform.
            let live: HashSet<(String, String, String)> = q
                .build_query_as::<(String, String, String)>()
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
            for (i, (scope, l)) in batch.iter().enumerate() {
                if !live.contains(&(
                    scope.tenant_id().to_string(),
                    l.platform_id.to_string(),
                    l.deployment_id.clone(),
                )) {
                    outcome[i] = Some(Err(LaunchRefusal::UnknownDeployment));
                }
            }

            // Nonces: single use per platform, also within the batch.
            let mut seen = HashSet::new();
            let mut fresh = Vec::new();
            for (i, (_, l)) in batch.iter().enumerate() {
                if outcome[i].is_none() {
                    if seen.insert((l.platform_id, l.nonce.as_str())) {
                        fresh.push(i);
                    } else {
                        outcome[i] = Some(Err(LaunchRefusal::NonceReplayed));
                    }
                }
            }
            if !fresh.is_empty() {
                let mut q = builder_for(
                    &tx,
                    "INSERT INTO used_nonces (platform_id, nonce, expires_at) ",
                );
                q.push_values(&fresh, |mut b, &i| {
                    let l = &batch[i].1;
                    b.push_bind(l.platform_id.to_string())
                        .push_bind(&l.nonce)
                        .push_bind(l.nonce_expires_at);
                });
                q.push(" ON CONFLICT (platform_id, nonce) DO NOTHING RETURNING platform_id, nonce");
                let inserted: HashSet<(String, String)> = q
                    .build_query_as::<(String, String)>()
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .collect();
                for &i in &fresh {
                    let l = &batch[i].1;
                    if !inserted.contains(&(l.platform_id.to_string(), l.nonce.clone())) {
                        outcome[i] = Some(Err(LaunchRefusal::NonceReplayed));
                    }
                }
            }

            let accepted: Vec<usize> = (0..batch.len()).filter(|&i| outcome[i].is_none()).collect();
            let all_ids: Vec<Ids> = batch.iter().map(|(_, l)| ids(l)).collect();

            // People.
            let people = last_per_key(
                accepted
                    .iter()
                    .filter_map(|&i| all_ids[i].person.map(|p| (p, i)))
                    .collect(),
            );
            if !people.is_empty() {
                let mut q = builder_for(
                    &tx,
                    "INSERT INTO people (id, tenant_id, platform_id, platform_user_id, name, given_name, family_name, email, created_at, updated_at) ",
                );
                q.push_values(&people, |mut b, &i| {
                    let (scope, l) = &batch[i];
                    let p = l
                        .person
                        .as_ref()
                        .expect("filtered to launches with a person");
                    b.push_bind(all_ids[i].person.map(|p| p.to_string()))
                        .push_bind(scope.tenant_id().to_string())
                        .push_bind(l.platform_id.to_string())
                        .push_bind(&p.platform_user_id)
                        .push_bind(&p.name)
                        .push_bind(&p.given_name)
                        .push_bind(&p.family_name)
                        .push_bind(&p.email)
                        .push_bind(now)
                        .push_bind(now);
                });
                q.push(" ON CONFLICT (platform_id, platform_user_id) DO UPDATE SET \
                    name = COALESCE(excluded.name, people.name), given_name = COALESCE(excluded.given_name, people.given_name), \
                    family_name = COALESCE(excluded.family_name, people.family_name), email = COALESCE(excluded.email, people.email), \
                    updated_at = excluded.updated_at WHERE people.tenant_id = excluded.tenant_id");
                q.build().execute(&mut *tx).await?;
            }

            // Contexts.
            let contexts = last_per_key(
                accepted
                    .iter()
                    .filter_map(|&i| all_ids[i].context.map(|c| (c, i)))
                    .collect(),
            );
            if !contexts.is_empty() {
                let mut q = builder_for(
                    &tx,
                    "INSERT INTO contexts (id, tenant_id, platform_id, platform_context_id, title, label, lineitems_url, memberships_url, created_at, updated_at) ",
                );
                q.push_values(&contexts, |mut b, &i| {
                    let (scope, l) = &batch[i];
                    let c = l
                        .context
                        .as_ref()
                        .expect("filtered to launches with a context");
                    b.push_bind(all_ids[i].context.map(|c| c.to_string()))
                        .push_bind(scope.tenant_id().to_string())
                        .push_bind(l.platform_id.to_string())
                        .push_bind(&c.platform_context_id)
                        .push_bind(&c.title)
                        .push_bind(&c.label)
                        .push_bind(&c.lineitems_url)
                        .push_bind(&c.memberships_url)
                        .push_bind(now)
                        .push_bind(now);
                });
                q.push(" ON CONFLICT (platform_id, platform_context_id) DO UPDATE SET \
                    title = COALESCE(excluded.title, contexts.title), label = COALESCE(excluded.label, contexts.label), \
                    lineitems_url = COALESCE(excluded.lineitems_url, contexts.lineitems_url), \
                    memberships_url = COALESCE(excluded.memberships_url, contexts.memberships_url), \
                    updated_at = excluded.updated_at WHERE contexts.tenant_id = excluded.tenant_id");
                q.build().execute(&mut *tx).await?;
            }

            // Resources.
            let resources = last_per_key(
                accepted
                    .iter()
                    .filter_map(|&i| all_ids[i].resource.map(|r| (r, i)))
                    .collect(),
            );
            if !resources.is_empty() {
                let mut q = builder_for(
                    &tx,
                    "INSERT INTO resources (id, tenant_id, context_id, platform_resource_id, title, created_at, updated_at) ",
                );
                q.push_values(&resources, |mut b, &i| {
                    let (scope, l) = &batch[i];
                    let (rid, title) = l
                        .resource
                        .as_ref()
                        .expect("filtered to launches with a resource");
                    b.push_bind(all_ids[i].resource.map(|r| r.to_string()))
                        .push_bind(scope.tenant_id().to_string())
                        .push_bind(all_ids[i].context.map(|c| c.to_string()))
                        .push_bind(rid)
                        .push_bind(title)
                        .push_bind(now)
                        .push_bind(now);
                });
                q.push(" ON CONFLICT (context_id, platform_resource_id) DO UPDATE SET \
                    title = COALESCE(excluded.title, resources.title), updated_at = excluded.updated_at \
                    WHERE resources.tenant_id = excluded.tenant_id");
                q.build().execute(&mut *tx).await?;
            }

            // Enrolments.
            let enrolled = last_per_key(
                accepted
                    .iter()
                    .filter_map(|&i| match (all_ids[i].context, all_ids[i].person) {
                        (Some(c), Some(p)) => Some(((c, p), i)),
                        _ => None,
                    })
                    .collect(),
            );
            if !enrolled.is_empty() {
                let roles: Vec<String> = enrolled
                    .iter()
                    .map(|&i| {
                        serde_json::to_string(&batch[i].1.roles).unwrap_or_else(|_| "[]".into())
                    })
                    .collect();
                let mut q = builder_for(
                    &tx,
                    "INSERT INTO enrollments (tenant_id, context_id, person_id, roles, status, source, updated_at) ",
                );
                q.push_values(enrolled.iter().zip(&roles), |mut b, (&i, roles)| {
                    b.push_bind(batch[i].0.tenant_id().to_string())
                        .push_bind(all_ids[i].context.map(|c| c.to_string()))
                        .push_bind(all_ids[i].person.map(|p| p.to_string()))
                        .push_bind(roles)
                        .push_bind("active")
                        .push_bind("launch")
                        .push_bind(now);
                });
                q.push(" ON CONFLICT (context_id, person_id) DO UPDATE SET roles = excluded.roles, status = 'active', \
                    updated_at = excluded.updated_at WHERE enrollments.tenant_id = excluded.tenant_id");
                q.build().execute(&mut *tx).await?;
            }

            // Grade targets.
            let targets = last_per_key(
                accepted
                    .iter()
                    .filter_map(|&i| all_ids[i].grade_target.map(|g| (g, i)))
                    .collect(),
            );
            if !targets.is_empty() {
                let mut q = builder_for(
                    &tx,
                    "INSERT INTO grade_targets (id, tenant_id, platform_id, context_id, resource_id, kind, location, label, created_at) ",
                );
                q.push_values(&targets, |mut b, &i| {
                    let (scope, l) = &batch[i];
                    let (url, label) = l
                        .line_item
                        .as_ref()
                        .expect("filtered to launches with a line item");
                    b.push_bind(all_ids[i].grade_target.map(|g| g.to_string()))
                        .push_bind(scope.tenant_id().to_string())
                        .push_bind(l.platform_id.to_string())
                        .push_bind(all_ids[i].context.map(|c| c.to_string()))
                        .push_bind(all_ids[i].resource.map(|r| r.to_string()))
                        .push_bind("lti_line_item")
                        .push_bind(url)
                        .push_bind(label)
                        .push_bind(now);
                });
                q.push(
                    " ON CONFLICT (platform_id, location) DO UPDATE SET \
                    label = COALESCE(excluded.label, grade_targets.label), \
                    resource_id = COALESCE(excluded.resource_id, grade_targets.resource_id) \
                    WHERE grade_targets.tenant_id = excluded.tenant_id",
                );
                q.build().execute(&mut *tx).await?;
            }

            // The launches themselves, their handoff codes and audit entries.
            let mut recorded = Vec::with_capacity(accepted.len());
            for &i in &accepted {
                let (_, l) = &batch[i];
                let id = LaunchId::generate();
                let ids = &all_ids[i];
                let summary = crate::launches::summary(
                    l,
                    id,
                    ids.person,
                    ids.context,
                    ids.resource,
                    ids.grade_target,
                    now,
                );
                recorded.push((
                    i,
                    RecordedLaunch {
                        launch_id: id,
                        person_id: ids.person,
                        context_id: ids.context,
                        resource_id: ids.resource,
                        grade_target_id: ids.grade_target,
                        summary,
                    },
                ));
            }
            if !recorded.is_empty() {
                let summaries: Vec<String> = recorded
                    .iter()
                    .map(|(_, r)| r.summary.to_string())
                    .collect();
                let mut q = builder_for(
                    &tx,
                    "INSERT INTO launches (id, tenant_id, platform_id, person_id, context_id, resource_id, grade_target_id, message_type, summary, created_at) ",
                );
                q.push_values(
                    recorded.iter().zip(&summaries),
                    |mut b, ((i, r), summary)| {
                        let (scope, l) = &batch[*i];
                        b.push_bind(r.launch_id.to_string())
                            .push_bind(scope.tenant_id().to_string())
                            .push_bind(l.platform_id.to_string())
                            .push_bind(r.person_id.map(|p| p.to_string()))
                            .push_bind(r.context_id.map(|c| c.to_string()))
                            .push_bind(r.resource_id.map(|c| c.to_string()))
                            .push_bind(r.grade_target_id.map(|c| c.to_string()))
                            .push_bind(&l.message_type)
                            .push_bind(summary)
                            .push_bind(now);
                    },
                );
                q.build().execute(&mut *tx).await?;

                let mut q = builder_for(
                    &tx,
                    "INSERT INTO handoff_codes (code_hash, tenant_id, launch_id, expires_at) ",
                );
                q.push_values(&recorded, |mut b, (i, r)| {
                    let (scope, l) = &batch[*i];
                    b.push_bind(&l.handoff_code_hash)
                        .push_bind(scope.tenant_id().to_string())
                        .push_bind(r.launch_id.to_string())
                        .push_bind(l.handoff_expires_at);
                });
                q.build().execute(&mut *tx).await?;

                let mut chains: BTreeMap<TenantId, Vec<NewAuditEntry>> = BTreeMap::new();
                for (i, r) in &recorded {
                    let (scope, l) = &batch[*i];
                    chains.entry(scope.tenant_id()).or_default().push(NewAuditEntry::tenant(
                        scope.tenant_id(),
                        Actor::system("lti-launch"),
                        "launch.accepted",
                        format!("launch:{}", r.launch_id),
                        serde_json::json!({
                            "platform_id": l.platform_id, "deployment_id": l.deployment_id,
                            "message_type": l.message_type, "person_id": r.person_id,
                            "context_id": r.context_id, "resource_id": r.resource_id, "roles": l.roles,
                        }),
                    ));
                }
                for entries in chains.values() {
                    audit_append_all!(tx, entries);
                }
            }
            tx.commit().await?;
            for (i, r) in recorded {
                outcome[i] = Some(Ok(r));
            }
        });
        Ok(outcome
            .into_iter()
            .map(|o| o.unwrap_or(Err(LaunchRefusal::UnknownDeployment)))
            .collect())
    }
}
