//! Line items (LTI AGS §3.2) the product manages, kept as grade targets.
//!
//! A launch already records a grade target from the `lineitem` claim; a line item created or
//! listed through the product API is the same kind of row, found by the same unique key
//! (platform, line item URL) and given the same id a launch would derive for it. So the
//! product sees one id per gradebook column whichever way lmsbridge learnt of it, and
//! `POST /api/v1/scores` takes it as its `grade_target_id` with no second table to keep in
//! step. A line item deleted through the API keeps its row (scores and launches refer to it)
//! with `deleted_at` set, and takes no new scores.

use crate::audit::NewAuditEntry;
use crate::db::BeginWrite;
use crate::error::StoreError;
use crate::launch_batch::grade_target_id;
use crate::{TenantStore, now_micros};
use domain::{
    Actor, ContextId, GradeTargetId, PersonId, Platform, PlatformId, PlatformLineItem, ResourceId,
};
use serde::Serialize;
use std::collections::HashMap;
use time::OffsetDateTime;
use url::Url;

/// How lmsbridge first learnt of a line item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineItemOrigin {
    /// The `lineitem` claim of a launch.
    Launch,
    /// Created by the product through the API.
    Api,
    /// Listed from the platform's line item container.
    Platform,
}

impl LineItemOrigin {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Launch => "launch",
            Self::Api => "api",
            Self::Platform => "platform",
        }
    }
}

/// A context of this tenant, the platform it lives on, and its line item container.
#[derive(Clone, Debug, PartialEq)]
pub struct LineItemContainer {
    pub context_id: ContextId,
    pub platform: Platform,
    /// The AGS `lineitems` URL from the context's launches; `None` when no launch offered
    /// line item management.
    pub lineitems_url: Option<Url>,
}

/// A line item as lmsbridge holds it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredLineItem {
    /// Also the grade target id scores are posted for.
    pub id: GradeTargetId,
    pub context_id: ContextId,
    pub platform_id: PlatformId,
    /// The line item URL, exactly as the platform gave it.
    pub line_item_url: Url,
    pub label: Option<String>,
    pub score_maximum: Option<f64>,
    /// Our resource, when the line item is bound to a resource link we have seen launched.
    pub resource_id: Option<ResourceId>,
    /// AGS `resourceId`.
    pub product_resource_id: Option<String>,
    /// AGS `resourceLinkId`.
    pub resource_link_id: Option<String>,
    pub tag: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub start_date_time: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub end_date_time: Option<OffsetDateTime>,
    pub grades_released: Option<bool>,
    pub origin: LineItemOrigin,
    pub created_at: i64,
    pub updated_at: Option<i64>,
    pub deleted_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    context_id: String,
    platform_id: String,
    location: String,
    label: Option<String>,
    score_maximum: Option<f64>,
    resource_id: Option<String>,
    product_resource_id: Option<String>,
    resource_link_id: Option<String>,
    tag: Option<String>,
    start_date_time: Option<i64>,
    end_date_time: Option<i64>,
    grades_released: Option<bool>,
    origin: String,
    created_at: i64,
    updated_at: Option<i64>,
    deleted_at: Option<i64>,
}

const COLUMNS: &str = "id, context_id, platform_id, location, label, score_maximum, resource_id, \
    product_resource_id, resource_link_id, tag, start_date_time, end_date_time, grades_released, \
    origin, created_at, updated_at, deleted_at";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("line item {what}"))
}

fn to_micros(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(|t| i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX))
}

fn from_micros(m: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    m.map(|m| {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1000).map_err(|_| corrupt("date"))
    })
    .transpose()
}

impl TryFrom<Row> for StoredLineItem {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id.parse().map_err(|_| corrupt("id"))?,
            context_id: r.context_id.parse().map_err(|_| corrupt("context"))?,
            platform_id: r.platform_id.parse().map_err(|_| corrupt("platform"))?,
            line_item_url: Url::parse(&r.location).map_err(|_| corrupt("url"))?,
            label: r.label,
            score_maximum: r.score_maximum,
            resource_id: r
                .resource_id
                .map(|s| s.parse().map_err(|_| corrupt("resource")))
                .transpose()?,
            product_resource_id: r.product_resource_id,
            resource_link_id: r.resource_link_id,
            tag: r.tag,
            start_date_time: from_micros(r.start_date_time)?,
            end_date_time: from_micros(r.end_date_time)?,
            grades_released: r.grades_released,
            origin: match r.origin.as_str() {
                "launch" => LineItemOrigin::Launch,
                "api" => LineItemOrigin::Api,
                "platform" => LineItemOrigin::Platform,
                _ => return Err(corrupt("origin")),
            },
            created_at: r.created_at,
            updated_at: r.updated_at,
            deleted_at: r.deleted_at,
        })
    }
}

/// The audit detail of a line item's fields.
fn audit_fields(item: &PlatformLineItem) -> serde_json::Value {
    let f = &item.fields;
    serde_json::json!({
        "line_item_url": item.location.as_str(), "label": f.label, "score_maximum": f.score_maximum,
        "resource_id": f.resource_id, "resource_link_id": f.resource_link_id, "tag": f.tag,
        "start_date_time": to_micros(f.start_date_time), "end_date_time": to_micros(f.end_date_time),
        "grades_released": f.grades_released,
    })
}

impl TenantStore<'_> {
    /// One of this tenant's contexts with its platform and line item container.
    pub async fn line_item_container(
        &self,
        context: ContextId,
    ) -> Result<LineItemContainer, StoreError> {
        let row: Option<(String, Option<String>)> = on_db!(self.db, |pool| {
            sqlx::query_as(
                "SELECT platform_id, lineitems_url FROM contexts WHERE id = $1 AND tenant_id = $2",
            )
            .bind(context.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_optional(pool)
            .await?
        });
        let (platform_id, lineitems_url) = row.ok_or(StoreError::NotFound)?;
        let platform = self
            .platform(platform_id.parse().map_err(|_| corrupt("platform"))?)
            .await?;
        Ok(LineItemContainer {
            context_id: context,
            platform,
            lineitems_url: lineitems_url
                .map(|u| Url::parse(&u).map_err(|_| corrupt("container url")))
                .transpose()?,
        })
    }

    /// Records line items the platform reported for a context: new ones are added under the
    /// id a launch would give them, known ones take the platform's current fields (and come
    /// back if they were marked deleted). With an actor, each is audited as created by it;
    /// without, they are a listing mirrored from the platform and not audited.
    pub async fn record_line_items(
        &self,
        container: &LineItemContainer,
        items: &[PlatformLineItem],
        origin: LineItemOrigin,
        actor: Option<&Actor>,
    ) -> Result<Vec<StoredLineItem>, StoreError> {
        let tenant = self.scope.tenant_id();
        if container.platform.tenant_id != tenant {
            return Err(StoreError::NotFound);
        }
        let tenant_s = tenant.to_string();
        let platform_s = container.platform.id.to_string();
        let context_s = container.context_id.to_string();
        let now = now_micros();
        let audits: Vec<NewAuditEntry> = match actor {
            Some(actor) => items
                .iter()
                .map(|item| {
                    NewAuditEntry::tenant(
                        tenant,
                        actor.clone(),
                        "line_item.created",
                        format!(
                            "grade_target:{}",
                            grade_target_id(container.platform.id, item.location.as_str())
                        ),
                        audit_fields(item),
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        let rows: Vec<Row> = on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut rows = Vec::with_capacity(items.len());
            for item in items {
                let f = &item.fields;
                let location = item.location.as_str();
                sqlx::query(
                    "INSERT INTO grade_targets (id, tenant_id, platform_id, context_id, resource_id, kind, location, label, \
                       score_maximum, product_resource_id, resource_link_id, tag, start_date_time, end_date_time, \
                       grades_released, origin, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, \
                       (SELECT r.id FROM resources r WHERE r.tenant_id = $2 AND r.context_id = $4 AND r.platform_resource_id = $10), \
                       'lti_line_item', $5, $6, $7, $8, $10, $9, $11, $12, $13, $14, $15, $15) \
                     ON CONFLICT (platform_id, location) DO UPDATE SET label = excluded.label, \
                       score_maximum = excluded.score_maximum, \
                       resource_id = COALESCE(excluded.resource_id, grade_targets.resource_id), \
                       product_resource_id = excluded.product_resource_id, resource_link_id = excluded.resource_link_id, \
                       tag = excluded.tag, start_date_time = excluded.start_date_time, end_date_time = excluded.end_date_time, \
                       grades_released = excluded.grades_released, updated_at = excluded.updated_at, deleted_at = NULL \
                     WHERE grade_targets.tenant_id = excluded.tenant_id AND grade_targets.context_id = excluded.context_id",
                )
                .bind(grade_target_id(container.platform.id, location).to_string())
                .bind(&tenant_s)
                .bind(&platform_s)
                .bind(&context_s)
                .bind(location)
                .bind(&f.label)
                .bind(f.score_maximum)
                .bind(&f.resource_id)
                .bind(&f.tag)
                .bind(&f.resource_link_id)
                .bind(to_micros(f.start_date_time))
                .bind(to_micros(f.end_date_time))
                .bind(f.grades_released)
                .bind(origin.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM grade_targets WHERE platform_id = $1 AND location = $2 \
                     AND tenant_id = $3 AND context_id = $4"
                )))
                .bind(&platform_s)
                .bind(location)
                .bind(&tenant_s)
                .bind(&context_s)
                .fetch_optional(&mut *tx)
                .await?;
                // The upsert's guard left a row of another context untouched: the platform
                // listed a line item we know under another course. Nothing is written.
                let Some(row) = row else {
                    return Err(StoreError::Conflict(
                        "the platform reported a line item that belongs to another context",
                    ));
                };
                rows.push(row);
            }
            audit_append_all!(tx, &audits);
            tx.commit().await?;
            rows
        });
        rows.into_iter().map(StoredLineItem::try_from).collect()
    }

    /// One of this tenant's line items (deleted ones too; see `deleted_at`).
    pub async fn line_item(&self, id: GradeTargetId) -> Result<Option<StoredLineItem>, StoreError> {
        let row: Option<Row> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM grade_targets WHERE id = $1 AND tenant_id = $2 AND kind = 'lti_line_item'"
            )))
            .bind(id.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_optional(pool)
            .await?
        });
        row.map(StoredLineItem::try_from).transpose()
    }

    /// The line items of one of this tenant's contexts that are not deleted, oldest first.
    pub async fn line_items(&self, context: ContextId) -> Result<Vec<StoredLineItem>, StoreError> {
        let rows: Vec<Row> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM grade_targets WHERE tenant_id = $1 AND context_id = $2 \
                 AND kind = 'lti_line_item' AND deleted_at IS NULL ORDER BY created_at, location"
            )))
            .bind(self.scope.tenant_id().to_string())
            .bind(context.to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(StoredLineItem::try_from).collect()
    }

    /// Records the fields a line item has after the platform accepted a change, audited.
    pub async fn record_line_item_update(
        &self,
        id: GradeTargetId,
        item: &PlatformLineItem,
        actor: &Actor,
    ) -> Result<StoredLineItem, StoreError> {
        let tenant = self.scope.tenant_id();
        let f = &item.fields;
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "line_item.updated",
            format!("grade_target:{id}"),
            audit_fields(item),
        );
        let row: Option<Row> = on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            // The URL is the key: a platform that answers with another one is refused.
            let updated = sqlx::query(
                "UPDATE grade_targets SET label = $1, score_maximum = $2, product_resource_id = $3, \
                   resource_link_id = $4, tag = $5, start_date_time = $6, end_date_time = $7, grades_released = $8, \
                   resource_id = COALESCE((SELECT r.id FROM resources r WHERE r.tenant_id = $10 \
                     AND r.context_id = grade_targets.context_id AND r.platform_resource_id = $4), resource_id), \
                   updated_at = $9 \
                 WHERE id = $11 AND tenant_id = $10 AND location = $12 AND deleted_at IS NULL",
            )
            .bind(&f.label)
            .bind(f.score_maximum)
            .bind(&f.resource_id)
            .bind(&f.resource_link_id)
            .bind(&f.tag)
            .bind(to_micros(f.start_date_time))
            .bind(to_micros(f.end_date_time))
            .bind(f.grades_released)
            .bind(now_micros())
            .bind(tenant.to_string())
            .bind(id.to_string())
            .bind(item.location.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 1 {
                audit_append!(tx, &audit);
                let row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM grade_targets WHERE id = $1 AND tenant_id = $2"
                )))
                .bind(id.to_string())
                .bind(tenant.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                row
            } else {
                None
            }
        });
        row.ok_or(StoreError::NotFound)?.try_into()
    }

    /// Marks a line item deleted after the platform deleted it, audited. New scores for it
    /// are refused from now on.
    pub async fn record_line_item_deleted(
        &self,
        id: GradeTargetId,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let tenant = self.scope.tenant_id();
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "line_item.deleted",
            format!("grade_target:{id}"),
            serde_json::json!({}),
        );
        let now = now_micros();
        let updated = on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE grade_targets SET deleted_at = $1, updated_at = $1 \
                 WHERE id = $2 AND tenant_id = $3 AND kind = 'lti_line_item' AND deleted_at IS NULL",
            )
            .bind(now)
            .bind(id.to_string())
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 1 {
                audit_append!(tx, &audit);
                tx.commit().await?;
            }
            updated
        });
        if updated == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }
}

impl TenantStore<'_> {
    /// The platform's user id of one of this tenant's people, if they are on `platform`.
    pub async fn platform_user_id(
        &self,
        person: PersonId,
        platform: PlatformId,
    ) -> Result<Option<String>, StoreError> {
        Ok(on_db!(self.db, |pool| {
            sqlx::query_scalar(
                "SELECT platform_user_id FROM people WHERE id = $1 AND platform_id = $2 AND tenant_id = $3",
            )
            .bind(person.to_string())
            .bind(platform.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_optional(pool)
            .await?
        }))
    }

    /// This tenant's people on `platform` among the given platform user ids.
    pub async fn people_by_platform_user_id(
        &self,
        platform: PlatformId,
        platform_user_ids: &[String],
    ) -> Result<HashMap<String, PersonId>, StoreError> {
        if platform_user_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(String, String)> = on_db!(self.db, |pool| {
            let mut q = sqlx::QueryBuilder::new(
                "SELECT platform_user_id, id FROM people WHERE tenant_id = ",
            );
            q.push_bind(self.scope.tenant_id().to_string())
                .push(" AND platform_id = ")
                .push_bind(platform.to_string())
                .push(" AND platform_user_id IN (");
            let mut ids = q.separated(", ");
            for id in platform_user_ids {
                ids.push_bind(id);
            }
            q.push(")");
            q.build_query_as().fetch_all(pool).await?
        });
        rows.into_iter()
            .map(|(user, id)| Ok((user, id.parse().map_err(|_| corrupt("person"))?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDatabase, seed_launch};
    use crate::{EnqueueOutcome, ScoreRequest, Store};
    use domain::{ActivityProgress, GradingProgress, LineItemFields, NewScore, PlatformKind};

    fn fields(label: &str) -> LineItemFields {
        LineItemFields {
            label: label.into(),
            score_maximum: 50.0,
            resource_id: Some("essay-7".into()),
            resource_link_id: Some("res-1".into()),
            tag: Some("final".into()),
            start_date_time: None,
            end_date_time: Some(OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()),
            grades_released: Some(true),
        }
    }

    async fn for_each_db<F, Fut>(test: F)
    where
        F: Fn(Store) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        for db in TestDatabase::all().await.unwrap() {
            eprintln!("line items on {}", db.label);
            test(db.store.clone()).await;
            db.cleanup().await;
        }
    }

    fn lms() -> Url {
        Url::parse("https://lms.example/").unwrap()
    }

    #[tokio::test]
    async fn created_line_items_are_grade_targets_that_take_scores() {
        for_each_db(|store| async move {
            let seeded = seed_launch(&store, "school", PlatformKind::Lti, &lms())
                .await
                .unwrap();
            let t = store.tenant(&seeded.scope);
            let context = seeded.launch.context_id.unwrap();
            let container = t.line_item_container(context).await.unwrap();
            assert_eq!(container.platform.id, seeded.platform.id);
            assert_eq!(container.lineitems_url, None, "the seeded launch had none");

            let url = lms().join("line_items/9?type_id=2").unwrap();
            let actor = Actor::system("test");
            let stored = t
                .record_line_items(
                    &container,
                    &[PlatformLineItem {
                        location: url.clone(),
                        fields: fields("Essay"),
                    }],
                    LineItemOrigin::Api,
                    Some(&actor),
                )
                .await
                .unwrap()
                .remove(0);
            assert_eq!(stored.line_item_url, url);
            assert_eq!(stored.context_id, context);
            assert_eq!(stored.label.as_deref(), Some("Essay"));
            assert_eq!(stored.score_maximum, Some(50.0));
            assert_eq!(stored.tag.as_deref(), Some("final"));
            assert_eq!(stored.product_resource_id.as_deref(), Some("essay-7"));
            assert_eq!(stored.resource_link_id.as_deref(), Some("res-1"));
            // Bound to the resource link the launch recorded.
            assert_eq!(stored.resource_id, seeded.launch.resource_id);
            assert_eq!(stored.end_date_time, fields("x").end_date_time);
            assert_eq!(stored.grades_released, Some(true));
            assert_eq!(stored.origin, LineItemOrigin::Api);
            assert_eq!(t.line_item(stored.id).await.unwrap().as_ref(), Some(&stored));
            let audit = t.audit_entries().await.unwrap();
            let last = audit.last().unwrap();
            assert_eq!(last.action, "line_item.created");
            assert_eq!(last.subject, format!("grade_target:{}", stored.id));

            // A score for the new line item is queued like one for a launch's target.
            let queued = t
                .enqueue_score(&ScoreRequest {
                    score: NewScore {
                        grade_target_id: stored.id,
                        person_id: seeded.launch.person_id.unwrap(),
                        score_given: Some(40.0),
                        score_maximum: Some(50.0),
                        comment: None,
                        activity_progress: ActivityProgress::Completed,
                        grading_progress: GradingProgress::FullyGraded,
                        actor: actor.clone(),
                    },
                    idempotency_key: None,
                    request_hash: "h".into(),
                })
                .await
                .unwrap();
            assert!(matches!(queued, EnqueueOutcome::Created(ref s) if s.grade_target_id == stored.id.to_string()));

            // Listed again by the platform with other fields: same row, fields replaced.
            let mut relisted = fields("Essay (final)");
            relisted.tag = None;
            relisted.score_maximum = 60.0;
            let again = t
                .record_line_items(
                    &container,
                    &[PlatformLineItem {
                        location: url.clone(),
                        fields: relisted,
                    }],
                    LineItemOrigin::Platform,
                    None,
                )
                .await
                .unwrap()
                .remove(0);
            assert_eq!(again.id, stored.id);
            assert_eq!(again.label.as_deref(), Some("Essay (final)"));
            assert_eq!(again.tag, None);
            assert_eq!(again.score_maximum, Some(60.0));
            assert_eq!(again.origin, LineItemOrigin::Api, "the first origin stays");
            assert_eq!(t.audit_entries().await.unwrap().len(), audit.len() + 1, "a listing writes no audit entry; the score did");

            // Results name platform users; the product knows our people.
            let person = seeded.launch.person_id.unwrap();
            assert_eq!(
                t.platform_user_id(person, seeded.platform.id).await.unwrap().as_deref(),
                Some("user-1")
            );
            let found = t
                .people_by_platform_user_id(seeded.platform.id, &["user-1".into(), "nobody".into()])
                .await
                .unwrap();
            assert_eq!(found.len(), 1);
            assert_eq!(found["user-1"], person);

            let listed = t.line_items(context).await.unwrap();
            let urls: Vec<&str> = listed.iter().map(|l| l.line_item_url.as_str()).collect();
            assert_eq!(urls, [lms().join("line_items/1").unwrap().as_str(), url.as_str()]);
        })
        .await;
    }

    #[tokio::test]
    async fn a_launchs_line_item_and_the_same_one_from_the_api_share_one_id() {
        for_each_db(|store| async move {
            let seeded = seed_launch(&store, "school", PlatformKind::Canvas, &lms())
                .await
                .unwrap();
            let t = store.tenant(&seeded.scope);
            let container = t
                .line_item_container(seeded.launch.context_id.unwrap())
                .await
                .unwrap();
            let launched = seeded.launch.grade_target_id.unwrap();
            let listed = t
                .record_line_items(
                    &container,
                    &[PlatformLineItem {
                        location: lms().join("line_items/1").unwrap(),
                        fields: fields("Quiz"),
                    }],
                    LineItemOrigin::Platform,
                    None,
                )
                .await
                .unwrap()
                .remove(0);
            assert_eq!(listed.id, launched);
            assert_eq!(listed.origin, LineItemOrigin::Launch);
            assert_eq!(listed.score_maximum, Some(50.0));
        })
        .await;
    }

    #[tokio::test]
    async fn updates_and_deletes_are_audited_and_a_deleted_item_takes_no_scores() {
        for_each_db(|store| async move {
            let seeded = seed_launch(&store, "school", PlatformKind::Moodle, &lms())
                .await
                .unwrap();
            let t = store.tenant(&seeded.scope);
            let container = t
                .line_item_container(seeded.launch.context_id.unwrap())
                .await
                .unwrap();
            let url = lms().join("line_items/5").unwrap();
            let actor = Actor::system("test");
            let item = t
                .record_line_items(
                    &container,
                    &[PlatformLineItem {
                        location: url.clone(),
                        fields: fields("Lab"),
                    }],
                    LineItemOrigin::Api,
                    Some(&actor),
                )
                .await
                .unwrap()
                .remove(0);
            let mut changed = fields("Lab (v2)");
            changed.resource_link_id = None;
            let updated = t
                .record_line_item_update(
                    item.id,
                    &PlatformLineItem {
                        location: url.clone(),
                        fields: changed.clone(),
                    },
                    &actor,
                )
                .await
                .unwrap();
            assert_eq!(updated.label.as_deref(), Some("Lab (v2)"));
            assert_eq!(updated.resource_link_id, None);
            assert!(updated.updated_at.is_some());
            // An answer naming another line item is not applied.
            assert!(matches!(
                t.record_line_item_update(
                    item.id,
                    &PlatformLineItem {
                        location: lms().join("line_items/6").unwrap(),
                        fields: changed.clone(),
                    },
                    &actor,
                )
                .await,
                Err(StoreError::NotFound)
            ));

            t.record_line_item_deleted(item.id, &actor).await.unwrap();
            let gone = t.line_item(item.id).await.unwrap().unwrap();
            assert!(gone.deleted_at.is_some());
            assert!(
                t.line_items(item.context_id)
                    .await
                    .unwrap()
                    .iter()
                    .all(|l| l.id != item.id)
            );
            assert!(matches!(
                t.record_line_item_deleted(item.id, &actor).await,
                Err(StoreError::NotFound)
            ));
            let entries = t.audit_entries().await.unwrap();
            let actions: Vec<&str> = entries
                .iter()
                .rev()
                .take(3)
                .map(|e| e.action.as_str())
                .collect();
            assert_eq!(
                actions,
                [
                    "line_item.deleted",
                    "line_item.updated",
                    "line_item.created"
                ]
            );
            let refused = t
                .enqueue_score(&ScoreRequest {
                    score: NewScore {
                        grade_target_id: item.id,
                        person_id: seeded.launch.person_id.unwrap(),
                        score_given: Some(1.0),
                        score_maximum: Some(50.0),
                        comment: None,
                        activity_progress: ActivityProgress::Completed,
                        grading_progress: GradingProgress::FullyGraded,
                        actor,
                    },
                    idempotency_key: None,
                    request_hash: "h".into(),
                })
                .await;
            assert!(matches!(refused, Err(StoreError::NotFound)), "{refused:?}");
        })
        .await;
    }

    #[tokio::test]
    async fn another_tenant_reaches_none_of_it() {
        for_each_db(|store| async move {
            let a = seed_launch(&store, "a", PlatformKind::Lti, &lms())
                .await
                .unwrap();
            let b = seed_launch(
                &store,
                "b",
                PlatformKind::Lti,
                &Url::parse("https://other.example/").unwrap(),
            )
            .await
            .unwrap();
            let ta = store.tenant(&a.scope);
            let tb = store.tenant(&b.scope);
            let b_context = b.launch.context_id.unwrap();
            assert!(matches!(
                ta.line_item_container(b_context).await,
                Err(StoreError::NotFound)
            ));
            let b_container = tb.line_item_container(b_context).await.unwrap();
            let b_item = tb
                .record_line_items(
                    &b_container,
                    &[PlatformLineItem {
                        location: Url::parse("https://other.example/line_items/2").unwrap(),
                        fields: fields("B's"),
                    }],
                    LineItemOrigin::Api,
                    Some(&Actor::system("b")),
                )
                .await
                .unwrap()
                .remove(0);
            // A's scope with B's container (as if a handler mixed them up) writes nothing.
            assert!(matches!(
                ta.record_line_items(&b_container, &[], LineItemOrigin::Api, None)
                    .await,
                Err(StoreError::NotFound)
            ));
            assert_eq!(ta.line_item(b_item.id).await.unwrap(), None);
            assert!(ta.line_items(b_context).await.unwrap().is_empty());
            assert!(matches!(
                ta.record_line_item_update(
                    b_item.id,
                    &PlatformLineItem {
                        location: b_item.line_item_url.clone(),
                        fields: fields("A was here"),
                    },
                    &Actor::system("a"),
                )
                .await,
                Err(StoreError::NotFound)
            ));
            assert!(matches!(
                ta.record_line_item_deleted(b_item.id, &Actor::system("a"))
                    .await,
                Err(StoreError::NotFound)
            ));
            let b_person = b.launch.person_id.unwrap();
            assert_eq!(
                ta.platform_user_id(b_person, b.platform.id).await.unwrap(),
                None
            );
            assert!(
                ta.people_by_platform_user_id(b.platform.id, &["user-1".into()])
                    .await
                    .unwrap()
                    .is_empty()
            );
            let still = tb.line_item(b_item.id).await.unwrap().unwrap();
            assert_eq!(still.label.as_deref(), Some("B's"));
            assert_eq!(still.deleted_at, None);
        })
        .await;
    }
}
