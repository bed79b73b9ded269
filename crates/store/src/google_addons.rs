//! Google Classroom Add-ons and roster push notifications: the attachments lmsbridge created
//! on Classroom posts (each a grade target the product scores like an AGS line item), the
//! students' submission ids Classroom gave on their opens, add-on opens recorded as launches
//! with a one-time handoff code, and the Classroom roster-change registrations with the push
//! messages they brought.
//!
//! People and contexts get the ids every other path derives for them
//! (`launch_batch::person_id`, `launch_batch::context_id`), so a student
//! who opens an add-on is the same person the Google roster sync writes.

use crate::audit::NewAuditEntry;
use crate::db::BeginWrite;
use crate::error::StoreError;
use crate::launch_batch::{context_id, grade_target_id, person_id, resource_id};
use crate::launches::{LaunchPerson, RecordedLaunch};
use crate::{Store, TenantScope, TenantStore, now_micros};
use domain::{Actor, ActorKind, GradeTargetId, LaunchId, PlatformId, Role};
use serde::Serialize;

/// The grade target kind of an add-on attachment.
pub const ADD_ON_TARGET_KIND: &str = "classroom_add_on_attachment";

/// The stored location of an attachment's grade target: `course/item/attachment`.
pub fn add_on_location(course_id: &str, item_id: &str, attachment_id: &str) -> String {
    format!("{course_id}/{item_id}/{attachment_id}")
}

/// An attachment Classroom just created for us.
#[derive(Debug, Clone)]
pub struct NewAddOnAttachment {
    pub platform_id: PlatformId,
    pub course_id: String,
    /// The course's name, when known, for the context row.
    pub course_title: Option<String>,
    pub item_id: String,
    /// `courseWork`, `courseWorkMaterials` or `announcements`.
    pub item_type: String,
    pub attachment_id: String,
    /// The catalog item the teacher picked.
    pub catalog_item_id: Option<String>,
    pub title: String,
    /// Positive for a graded attachment: it becomes a grade target.
    pub max_points: Option<u32>,
    /// The Google account (`sub`) of the teacher who created it; their offline grant passes
    /// its grades back.
    pub teacher_user_id: String,
}

/// An attachment as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddOnAttachmentRecord {
    pub id: String,
    pub platform_id: PlatformId,
    pub course_id: String,
    pub item_id: String,
    pub item_type: String,
    pub attachment_id: String,
    pub catalog_item_id: Option<String>,
    pub title: String,
    pub max_points: Option<u32>,
    pub grade_target_id: Option<GradeTargetId>,
    pub teacher_user_id: String,
    pub created_at: i64,
}

/// The role `getAddOnContext` confirmed for the person in the iframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddOnRole {
    Teacher,
    Student,
}

/// One add-on iframe open, confirmed by Classroom, to hand to the product.
#[derive(Debug, Clone)]
pub struct AddOnOpen {
    pub platform_id: PlatformId,
    /// Which iframe: `teacher_view`, `student_view`, `student_work_review`, ...
    pub view: String,
    pub person: LaunchPerson,
    pub role: AddOnRole,
    pub course_id: String,
    pub course_title: Option<String>,
    pub item_id: String,
    pub item_type: String,
    /// The attachment opened (absent in attachment discovery).
    pub attachment: Option<AddOnAttachmentRecord>,
    /// The student's submission, from `getAddOnContext`'s `studentContext`, or the one the
    /// teacher is reviewing.
    pub submission_id: Option<String>,
    /// When a teacher reviews a student's work: that student's Google id.
    pub reviewed_user_id: Option<String>,
    /// Whatever else the product may want verbatim.
    pub extras: serde_json::Value,
    pub handoff_code_hash: String,
    pub handoff_expires_at: i64,
}

/// A Classroom roster-change registration of one course.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushRegistration {
    pub id: String,
    pub platform_id: PlatformId,
    pub course_id: String,
    /// Whose grant created it (and renews it).
    pub teacher_user_id: String,
    pub topic: String,
    /// Classroom's id of the current registration; `None` until one was created.
    pub registration_id: Option<String>,
    /// When Classroom stops delivering unless it is created again, microseconds.
    pub expires_at: i64,
    pub created_at: i64,
    pub renewed_at: Option<i64>,
    pub last_error: Option<String>,
}

/// A push message as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushEvent {
    pub id: String,
    pub platform_id: PlatformId,
    pub course_id: String,
    pub message_id: String,
    pub collection: Option<String>,
    pub event_type: Option<String>,
    pub received_at: i64,
    /// What was done about it: `resync_queued`, `recorded`, ...
    pub outcome: String,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("google add-on {what}"))
}

const ATTACHMENT_COLUMNS: &str = "id, platform_id, course_id, item_id, item_type, attachment_id, catalog_item_id, title, max_points, grade_target_id, teacher_user_id, created_at";

#[derive(sqlx::FromRow)]
struct AttachmentRow {
    id: String,
    platform_id: String,
    course_id: String,
    item_id: String,
    item_type: String,
    attachment_id: String,
    catalog_item_id: Option<String>,
    title: String,
    max_points: Option<i64>,
    grade_target_id: Option<String>,
    teacher_user_id: String,
    created_at: i64,
}

impl TryFrom<AttachmentRow> for AddOnAttachmentRecord {
    type Error = StoreError;
    fn try_from(r: AttachmentRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id,
            platform_id: r.platform_id.parse().map_err(|_| corrupt("platform"))?,
            course_id: r.course_id,
            item_id: r.item_id,
            item_type: r.item_type,
            attachment_id: r.attachment_id,
            catalog_item_id: r.catalog_item_id,
            title: r.title,
            max_points: r
                .max_points
                .map(u32::try_from)
                .transpose()
                .map_err(|_| corrupt("max points"))?,
            grade_target_id: r
                .grade_target_id
                .map(|g| g.parse())
                .transpose()
                .map_err(|_| corrupt("grade target"))?,
            teacher_user_id: r.teacher_user_id,
            created_at: r.created_at,
        })
    }
}

const REGISTRATION_COLUMNS: &str = "id, tenant_id, platform_id, course_id, teacher_user_id, topic, registration_id, expires_at, created_at, renewed_at, last_error";

#[derive(sqlx::FromRow)]
struct RegistrationRow {
    id: String,
    tenant_id: String,
    platform_id: String,
    course_id: String,
    teacher_user_id: String,
    topic: String,
    registration_id: Option<String>,
    expires_at: i64,
    created_at: i64,
    renewed_at: Option<i64>,
    last_error: Option<String>,
}

impl RegistrationRow {
    fn split(self) -> Result<(TenantScope, PushRegistration), StoreError> {
        let tenant = self.tenant_id.parse().map_err(|_| corrupt("tenant"))?;
        Ok((
            TenantScope::new(tenant),
            PushRegistration {
                id: self.id,
                platform_id: self.platform_id.parse().map_err(|_| corrupt("platform"))?,
                course_id: self.course_id,
                teacher_user_id: self.teacher_user_id,
                topic: self.topic,
                registration_id: self.registration_id,
                expires_at: self.expires_at,
                created_at: self.created_at,
                renewed_at: self.renewed_at,
                last_error: self.last_error,
            },
        ))
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: String,
    platform_id: String,
    course_id: String,
    message_id: String,
    collection: Option<String>,
    event_type: Option<String>,
    received_at: i64,
    outcome: String,
}

fn roles_json(role: AddOnRole) -> String {
    let roles = match role {
        AddOnRole::Teacher => vec![Role::Instructor],
        AddOnRole::Student => vec![Role::Learner],
    };
    serde_json::to_string(&roles).unwrap_or_else(|_| "[]".into())
}

/// Upserts the course's context row (the same id the roster sync gives it); the title only
/// fills a gap, never overwrites.
macro_rules! upsert_context {
    ($tx:expr, $tenant:expr, $platform:expr, $course:expr, $title:expr, $now:expr) => {{
        let ctx = context_id($platform, $course);
        sqlx::query(
            "INSERT INTO contexts (id, tenant_id, platform_id, platform_context_id, title, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (platform_id, platform_context_id) DO UPDATE SET \
               title = COALESCE(contexts.title, excluded.title), updated_at = excluded.updated_at \
             WHERE contexts.tenant_id = excluded.tenant_id",
        )
        .bind(ctx.to_string())
        .bind($tenant)
        .bind($platform.to_string())
        .bind($course)
        .bind($title)
        .bind($now)
        .execute(&mut *$tx)
        .await?;
        ctx
    }};
}

impl TenantStore<'_> {
    /// Records an attachment Classroom created: its context, a resource for it, and, when it
    /// is graded, its grade target (kind `classroom_add_on_attachment`, scored like any
    /// other), audited. Recording the same attachment again returns the stored row.
    pub async fn record_add_on_attachment(
        &self,
        new: &NewAddOnAttachment,
    ) -> Result<AddOnAttachmentRecord, StoreError> {
        if let Some(existing) = self
            .add_on_attachment(new.platform_id, &new.attachment_id)
            .await?
        {
            return Ok(existing);
        }
        // Only this tenant's platform: rows are never written under another's.
        self.platform(new.platform_id).await?;
        let now = now_micros();
        let tenant = self.scope.tenant_id();
        let tenant_s = tenant.to_string();
        let platform_s = new.platform_id.to_string();
        let ctx = context_id(new.platform_id, &new.course_id);
        let resource = resource_id(ctx, &new.attachment_id);
        let graded = new.max_points.filter(|m| *m > 0);
        let location = add_on_location(&new.course_id, &new.item_id, &new.attachment_id);
        let target = graded.map(|_| grade_target_id(new.platform_id, &location));
        let record = AddOnAttachmentRecord {
            id: uuid::Uuid::now_v7().to_string(),
            platform_id: new.platform_id,
            course_id: new.course_id.clone(),
            item_id: new.item_id.clone(),
            item_type: new.item_type.clone(),
            attachment_id: new.attachment_id.clone(),
            catalog_item_id: new.catalog_item_id.clone(),
            title: new.title.clone(),
            max_points: graded,
            grade_target_id: target,
            teacher_user_id: new.teacher_user_id.clone(),
            created_at: now,
        };
        let audit = NewAuditEntry::tenant(
            tenant,
            Actor {
                kind: ActorKind::Instructor,
                id: format!("google:{}", new.teacher_user_id),
            },
            "google_addon.attachment_created",
            format!("google_addon_attachment:{}", record.id),
            serde_json::json!({
                "platform_id": new.platform_id, "course_id": new.course_id, "item_id": new.item_id,
                "item_type": new.item_type, "attachment_id": new.attachment_id,
                "catalog_item_id": new.catalog_item_id, "max_points": graded,
                "grade_target_id": target,
            }),
        );
        on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            upsert_context!(
                tx,
                &tenant_s,
                new.platform_id,
                &new.course_id,
                new.course_title.as_deref(),
                now
            );
            sqlx::query(
                "INSERT INTO resources (id, tenant_id, context_id, platform_resource_id, title, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) \
                 ON CONFLICT (context_id, platform_resource_id) DO UPDATE SET title = excluded.title, updated_at = excluded.updated_at \
                 WHERE resources.tenant_id = excluded.tenant_id",
            )
            .bind(resource.to_string())
            .bind(&tenant_s)
            .bind(ctx.to_string())
            .bind(&new.attachment_id)
            .bind(&new.title)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if let (Some(target), Some(max)) = (target, graded) {
                sqlx::query(
                    "INSERT INTO grade_targets (id, tenant_id, platform_id, context_id, resource_id, kind, location, label, score_maximum, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (platform_id, location) DO NOTHING",
                )
                .bind(target.to_string())
                .bind(&tenant_s)
                .bind(&platform_s)
                .bind(ctx.to_string())
                .bind(resource.to_string())
                .bind(ADD_ON_TARGET_KIND)
                .bind(&location)
                .bind(&new.title)
                .bind(f64::from(max))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO google_addon_attachments (id, tenant_id, platform_id, course_id, item_id, item_type, attachment_id, catalog_item_id, title, max_points, grade_target_id, teacher_user_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&record.id)
            .bind(&tenant_s)
            .bind(&platform_s)
            .bind(&record.course_id)
            .bind(&record.item_id)
            .bind(&record.item_type)
            .bind(&record.attachment_id)
            .bind(&record.catalog_item_id)
            .bind(&record.title)
            .bind(graded.map(i64::from))
            .bind(target.map(|t| t.to_string()))
            .bind(&record.teacher_user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            audit_append!(tx, &audit);
            tx.commit().await?;
        });
        Ok(record)
    }

    /// An attachment of this tenant by Classroom's id.
    pub async fn add_on_attachment(
        &self,
        platform: PlatformId,
        attachment_id: &str,
    ) -> Result<Option<AddOnAttachmentRecord>, StoreError> {
        let row: Option<AttachmentRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ATTACHMENT_COLUMNS} FROM google_addon_attachments WHERE tenant_id = $1 AND platform_id = $2 AND attachment_id = $3"
            )))
            .bind(self.scope.tenant_id().to_string())
            .bind(platform.to_string())
            .bind(attachment_id)
            .fetch_optional(pool)
            .await?
        });
        row.map(TryInto::try_into).transpose()
    }

    /// The attachment behind a grade target, for passback.
    pub async fn add_on_attachment_for_target(
        &self,
        target: GradeTargetId,
    ) -> Result<Option<AddOnAttachmentRecord>, StoreError> {
        let row: Option<AttachmentRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ATTACHMENT_COLUMNS} FROM google_addon_attachments WHERE tenant_id = $1 AND grade_target_id = $2"
            )))
            .bind(self.scope.tenant_id().to_string())
            .bind(target.to_string())
            .fetch_optional(pool)
            .await?
        });
        row.map(TryInto::try_into).transpose()
    }

    /// The submission id Classroom gave for a student on an attachment.
    pub async fn add_on_submission(
        &self,
        platform: PlatformId,
        attachment_id: &str,
        google_user_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(on_db!(self.db, |pool| {
            sqlx::query_scalar(
                "SELECT submission_id FROM google_addon_submissions WHERE tenant_id = $1 AND platform_id = $2 AND attachment_id = $3 AND google_user_id = $4",
            )
            .bind(self.scope.tenant_id().to_string())
            .bind(platform.to_string())
            .bind(attachment_id)
            .bind(google_user_id)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Records a confirmed add-on open as a launch: the person, the course context, their
    /// enrolment, the student's submission id, the normalised launch (platform
    /// `google_classroom`) and its one-time handoff code, audited, all or nothing. The
    /// product redeems the code exactly as it redeems an LTI launch's.
    pub async fn record_add_on_open(&self, open: &AddOnOpen) -> Result<RecordedLaunch, StoreError> {
        self.platform(open.platform_id).await?;
        let now = now_micros();
        let tenant = self.scope.tenant_id();
        let tenant_s = tenant.to_string();
        let platform_s = open.platform_id.to_string();
        let person = person_id(open.platform_id, &open.person.platform_user_id);
        let ctx = context_id(open.platform_id, &open.course_id);
        let resource = open
            .attachment
            .as_ref()
            .map(|a| resource_id(ctx, &a.attachment_id));
        let target = open.attachment.as_ref().and_then(|a| a.grade_target_id);
        let reviewed = open
            .reviewed_user_id
            .as_deref()
            .map(|u| person_id(open.platform_id, u));
        let launch_id = LaunchId::generate();
        let role_name = match open.role {
            AddOnRole::Teacher => Role::Instructor,
            AddOnRole::Student => Role::Learner,
        };
        let mut summary = serde_json::json!({
            "launch_id": launch_id,
            "message_type": "GoogleClassroomAddOnLaunch",
            "platform": "google_classroom",
            "platform_id": open.platform_id,
            "deployment_id": null,
            "person": {
                "id": person, "platform_user_id": open.person.platform_user_id,
                "name": open.person.name, "given_name": open.person.given_name,
                "family_name": open.person.family_name, "email": open.person.email,
            },
            "roles": [role_name],
            "context": {
                "id": ctx, "platform_context_id": open.course_id,
                "title": open.course_title, "label": null,
            },
            "resource": open.attachment.as_ref().map(|a| serde_json::json!({
                "id": resource, "platform_resource_id": a.attachment_id, "title": a.title,
            })),
            "grade_target_id": target,
            "google_classroom": {
                "view": open.view,
                "role": open.role,
                "course_id": open.course_id,
                "item_id": open.item_id,
                "item_type": open.item_type,
                "attachment_id": open.attachment.as_ref().map(|a| &a.attachment_id),
                "catalog_item_id": open.attachment.as_ref().and_then(|a| a.catalog_item_id.as_ref()),
                "submission_id": open.submission_id,
                "reviewed_person_id": reviewed,
            },
            "extras": open.extras,
            "launched_at": now,
        });
        let audit = NewAuditEntry::tenant(
            tenant,
            Actor::system("google-addon"),
            "launch.accepted",
            format!("launch:{launch_id}"),
            serde_json::json!({
                "platform_id": open.platform_id, "message_type": "GoogleClassroomAddOnLaunch",
                "view": open.view, "person_id": person, "context_id": ctx,
                "resource_id": resource, "roles": [role_name],
            }),
        );
        on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let stored: Option<String> = sqlx::query_scalar(
                "INSERT INTO people (id, tenant_id, platform_id, platform_user_id, name, given_name, family_name, email, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
                 ON CONFLICT (platform_id, platform_user_id) DO UPDATE SET \
                   name = COALESCE(excluded.name, people.name), given_name = COALESCE(excluded.given_name, people.given_name), \
                   family_name = COALESCE(excluded.family_name, people.family_name), email = COALESCE(excluded.email, people.email), \
                   updated_at = excluded.updated_at \
                 WHERE people.tenant_id = excluded.tenant_id RETURNING id",
            )
            .bind(person.to_string())
            .bind(&tenant_s)
            .bind(&platform_s)
            .bind(&open.person.platform_user_id)
            .bind(&open.person.name)
            .bind(&open.person.given_name)
            .bind(&open.person.family_name)
            .bind(&open.person.email)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if stored.is_none() {
                // The platform row belongs to another tenant: never write across.
                return Err(StoreError::NotFound);
            }
            upsert_context!(
                tx,
                &tenant_s,
                open.platform_id,
                &open.course_id,
                open.course_title.as_deref(),
                now
            );
            // The course's name as a roster sync or an earlier open stored it.
            let title: Option<String> =
                sqlx::query_scalar("SELECT title FROM contexts WHERE id = $1 AND tenant_id = $2")
                    .bind(ctx.to_string())
                    .bind(&tenant_s)
                    .fetch_optional(&mut *tx)
                    .await?
                    .flatten();
            if let Some(t) = title {
                summary["context"]["title"] = serde_json::Value::String(t);
            }
            let summary_s = summary.to_string();
            sqlx::query(
                "INSERT INTO enrollments (tenant_id, context_id, person_id, roles, status, source, updated_at) \
                 VALUES ($1, $2, $3, $4, 'active', 'google_addon', $5) \
                 ON CONFLICT (context_id, person_id) DO UPDATE SET roles = excluded.roles, status = 'active', \
                   updated_at = excluded.updated_at \
                 WHERE enrollments.tenant_id = excluded.tenant_id",
            )
            .bind(&tenant_s)
            .bind(ctx.to_string())
            .bind(person.to_string())
            .bind(roles_json(open.role))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if let (AddOnRole::Student, Some(attachment), Some(submission)) =
                (open.role, &open.attachment, &open.submission_id)
            {
                sqlx::query(
                    "INSERT INTO google_addon_submissions (tenant_id, platform_id, attachment_id, google_user_id, submission_id, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (platform_id, attachment_id, google_user_id) DO UPDATE SET \
                       submission_id = excluded.submission_id, updated_at = excluded.updated_at \
                     WHERE google_addon_submissions.tenant_id = excluded.tenant_id",
                )
                .bind(&tenant_s)
                .bind(&platform_s)
                .bind(&attachment.attachment_id)
                .bind(&open.person.platform_user_id)
                .bind(submission)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO launches (id, tenant_id, platform_id, person_id, context_id, resource_id, grade_target_id, message_type, summary, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(launch_id.to_string())
            .bind(&tenant_s)
            .bind(&platform_s)
            .bind(person.to_string())
            .bind(ctx.to_string())
            .bind(resource.map(|r| r.to_string()))
            .bind(target.map(|t| t.to_string()))
            .bind("GoogleClassroomAddOnLaunch")
            .bind(&summary_s)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO handoff_codes (code_hash, tenant_id, launch_id, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&open.handoff_code_hash)
            .bind(&tenant_s)
            .bind(launch_id.to_string())
            .bind(open.handoff_expires_at)
            .execute(&mut *tx)
            .await?;
            audit_append!(tx, &audit);
            tx.commit().await?;
        });
        Ok(RecordedLaunch {
            launch_id,
            person_id: Some(person),
            context_id: Some(ctx),
            resource_id: resource,
            grade_target_id: target,
            summary,
        })
    }

    // ----- push registrations -----

    /// Stores the course's registration as Classroom just created (or renewed) it.
    pub async fn save_push_registration(
        &self,
        platform: PlatformId,
        course_id: &str,
        teacher_user_id: &str,
        topic: &str,
        registration_id: &str,
        expires_at: i64,
    ) -> Result<PushRegistration, StoreError> {
        self.platform(platform).await?;
        let now = now_micros();
        let tenant_s = self.scope.tenant_id().to_string();
        let row: Option<RegistrationRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "INSERT INTO google_push_registrations (id, tenant_id, platform_id, course_id, teacher_user_id, topic, registration_id, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (platform_id, course_id) DO UPDATE SET teacher_user_id = excluded.teacher_user_id, \
                   topic = excluded.topic, registration_id = excluded.registration_id, expires_at = excluded.expires_at, \
                   renewed_at = excluded.created_at, renew_lease_until = NULL, last_error = NULL \
                 WHERE google_push_registrations.tenant_id = excluded.tenant_id \
                 RETURNING {REGISTRATION_COLUMNS}"
            )))
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(&tenant_s)
            .bind(platform.to_string())
            .bind(course_id)
            .bind(teacher_user_id)
            .bind(topic)
            .bind(registration_id)
            .bind(expires_at)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        row.ok_or(StoreError::NotFound)?.split().map(|(_, r)| r)
    }

    /// Notes that renewing a registration failed; it is tried again once its lease passes.
    pub async fn note_push_registration_failure(
        &self,
        platform: PlatformId,
        course_id: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        let error: String = error.chars().take(500).collect();
        on_db!(self.db, |pool| {
            sqlx::query(
                "UPDATE google_push_registrations SET last_error = $1 WHERE tenant_id = $2 AND platform_id = $3 AND course_id = $4",
            )
            .bind(&error)
            .bind(self.scope.tenant_id().to_string())
            .bind(platform.to_string())
            .bind(course_id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The registration of a course, if any.
    pub async fn push_registration(
        &self,
        platform: PlatformId,
        course_id: &str,
    ) -> Result<Option<PushRegistration>, StoreError> {
        let row: Option<RegistrationRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {REGISTRATION_COLUMNS} FROM google_push_registrations WHERE tenant_id = $1 AND platform_id = $2 AND course_id = $3"
            )))
            .bind(self.scope.tenant_id().to_string())
            .bind(platform.to_string())
            .bind(course_id)
            .fetch_optional(pool)
            .await?
        });
        row.map(|r| r.split().map(|(_, r)| r)).transpose()
    }

    /// Records a push message once: `false` when this message id was seen before (Pub/Sub
    /// delivers at least once).
    pub async fn record_push_event(
        &self,
        platform: PlatformId,
        course_id: &str,
        message_id: &str,
        collection: Option<&str>,
        event_type: Option<&str>,
        outcome: &str,
    ) -> Result<bool, StoreError> {
        let n = on_db!(self.db, |pool| {
            sqlx::query(
                "INSERT INTO google_push_events (id, tenant_id, platform_id, course_id, message_id, collection, event_type, received_at, outcome) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (platform_id, message_id) DO NOTHING",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(self.scope.tenant_id().to_string())
            .bind(platform.to_string())
            .bind(course_id)
            .bind(message_id)
            .bind(collection)
            .bind(event_type)
            .bind(now_micros())
            .bind(outcome)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Sets what was done about a recorded push message.
    pub async fn set_push_event_outcome(
        &self,
        platform: PlatformId,
        message_id: &str,
        outcome: &str,
    ) -> Result<(), StoreError> {
        on_db!(self.db, |pool| {
            sqlx::query(
                "UPDATE google_push_events SET outcome = $1 WHERE tenant_id = $2 AND platform_id = $3 AND message_id = $4",
            )
            .bind(outcome)
            .bind(self.scope.tenant_id().to_string())
            .bind(platform.to_string())
            .bind(message_id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// This tenant's push messages, newest first.
    pub async fn push_events(&self, limit: u32) -> Result<Vec<PushEvent>, StoreError> {
        let rows: Vec<EventRow> = on_db!(self.db, |pool| {
            sqlx::query_as(
                "SELECT id, platform_id, course_id, message_id, collection, event_type, received_at, outcome \
                 FROM google_push_events WHERE tenant_id = $1 ORDER BY received_at DESC, id DESC LIMIT $2",
            )
            .bind(self.scope.tenant_id().to_string())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(PushEvent {
                    id: r.id,
                    platform_id: r.platform_id.parse().map_err(|_| corrupt("platform"))?,
                    course_id: r.course_id,
                    message_id: r.message_id,
                    collection: r.collection,
                    event_type: r.event_type,
                    received_at: r.received_at,
                    outcome: r.outcome,
                })
            })
            .collect()
    }
}

impl Store {
    /// Claims registrations that lapse before `renew_before` (microseconds) for renewal,
    /// each for `lease_micros`, so that of several instances one renews each.
    pub async fn claim_push_renewals(
        &self,
        renew_before: i64,
        now: i64,
        lease_micros: i64,
        limit: u32,
    ) -> Result<Vec<(TenantScope, PushRegistration)>, StoreError> {
        let rows: Vec<RegistrationRow> = on_db!(&self.db, |pool| {
            // The lease test is repeated outside the subquery: PostgreSQL re-checks the outer
            // condition on a row another instance claimed meanwhile, so it is claimed once.
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE google_push_registrations SET renew_lease_until = $1 \
                 WHERE id IN (SELECT id FROM google_push_registrations WHERE expires_at <= $2 \
                     AND (renew_lease_until IS NULL OR renew_lease_until <= $3) ORDER BY expires_at LIMIT $4) \
                   AND (renew_lease_until IS NULL OR renew_lease_until <= $3) \
                 RETURNING {REGISTRATION_COLUMNS}"
            )))
            .bind(now + lease_micros)
            .bind(renew_before)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(RegistrationRow::split).collect()
    }

    /// The registrations of a course, whichever tenant holds them: a push message names only
    /// the course. Each comes with the scope of its tenant.
    pub async fn push_registrations_for_course(
        &self,
        course_id: &str,
    ) -> Result<Vec<(TenantScope, PushRegistration)>, StoreError> {
        let rows: Vec<RegistrationRow> = on_db!(&self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {REGISTRATION_COLUMNS} FROM google_push_registrations WHERE course_id = $1 ORDER BY created_at"
            )))
            .bind(course_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(RegistrationRow::split).collect()
    }
}
