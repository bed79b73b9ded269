//! What the Moodle plugin (`local_lmsbridge`) tells lmsbridge that LTI cannot: enrolments
//! before anyone launches, course and activity completion, grades a teacher overrode inside
//! Moodle, users deleted.
//!
//! A site is paired with one Moodle platform registration of a tenant; its signing secret
//! (and the optional web service token reconciliation uses) are sealed with the master key.
//! Events are stored once per (site, event id) under a unique key, so a batch sent again, by
//! the plugin or by another instance receiving the same retry, stores nothing twice; each new
//! event is applied to the domain model and its product webhooks queued in the same
//! transaction. People and contexts get the ids a launch derives for them (Moodle's LTI `sub`
//! is the user id, the LTI context id is the course id), so an enrolment seen first here and a
//! launch seen later meet on one row. State rows keep the time (and outbox sequence) of the
//! event that set them: an older event arriving late is stored but changes nothing.

use crate::audit::NewAuditEntry;
use crate::crypto::{MasterKey, random_token};
use crate::db::BeginWrite;
use crate::error::StoreError;
use crate::launch_batch::{context_id, person_id, resource_id};
use crate::tenants::TenantScope;
use crate::{Store, TenantStore, now_micros};
use domain::{
    Actor, ActorKind, ContextId, EnrollmentStatus, PersonId, PlatformId, PlatformKind, Role,
};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt;
use url::Url;

/// Most characters an event id may have (the plugin sends UUIDs; reconciliation ids are
/// longer but bounded).
const MAX_EVENT_ID: usize = 200;

/// The earliest event time accepted (2000-01-01): anything older is a broken clock or field.
const EARLIEST_EVENT_SECS: i64 = 946_684_800;

/// How far in the future an event time may be, seconds (Moodle's clock against ours).
const FUTURE_EVENT_SLACK_SECS: i64 = 86_400;

/// The enrolment method of enrolments learnt from reconciliation, which cannot see methods.
pub const RECONCILED_ENROL: &str = "reconciled";

/// A paired Moodle site's id: `ms_` and 22 URL-safe characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct MoodleSiteId(String);

impl MoodleSiteId {
    fn generate() -> Self {
        Self(format!("ms_{}", random_token(16)))
    }

    /// Accepts only the shape lmsbridge issues, so arbitrary header text never reaches a query.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("ms_")?;
        (rest.len() == 22
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MoodleSiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A site's signing secret (or web service token). Never printed by `Debug`.
#[derive(Clone)]
pub struct MoodleSecret(String);

impl MoodleSecret {
    /// The value, for signing or showing the admin once.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MoodleSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MoodleSecret([redacted])")
    }
}

fn secret_context(site: &MoodleSiteId) -> String {
    format!("moodle-site-secret:{site}")
}

fn ws_token_context(site: &MoodleSiteId) -> String {
    format!("moodle-ws-token:{site}")
}

/// A paired site as operators see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MoodleSite {
    pub id: MoodleSiteId,
    pub platform_id: PlatformId,
    pub site_url: String,
    pub has_ws_token: bool,
    pub created_at: i64,
    pub last_seen_at: Option<i64>,
    /// The highest outbox sequence received from the plugin.
    pub last_seq: i64,
    pub last_reconciled_at: Option<i64>,
}

/// A new pairing, with the secret to paste into the plugin (shown once).
#[derive(Debug)]
pub struct PairedMoodleSite {
    pub site: MoodleSite,
    pub secret: MoodleSecret,
}

/// A live site found by the id a request names, with what is needed to check its signature.
#[derive(Clone)]
pub struct MoodleSiteKey {
    pub scope: TenantScope,
    pub site_id: MoodleSiteId,
    pub platform_id: PlatformId,
    pub site_url: String,
    secret_sealed: Vec<u8>,
}

impl fmt::Debug for MoodleSiteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MoodleSiteKey")
            .field("site_id", &self.site_id)
            .field("platform_id", &self.platform_id)
            .finish_non_exhaustive()
    }
}

impl MoodleSiteKey {
    /// The signing secret.
    pub fn secret(&self, master: &MasterKey) -> Result<MoodleSecret, StoreError> {
        let plain = master.open(&self.secret_sealed, &secret_context(&self.site_id))?;
        String::from_utf8(plain)
            .map(MoodleSecret)
            .map_err(|_| StoreError::Corrupt("moodle site secret".into()))
    }
}

/// The events the plugin sends, by Moodle's class name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MoodleEventName {
    CourseCompleted,
    ModuleCompletionUpdated,
    UserEnrolmentCreated,
    UserEnrolmentUpdated,
    UserEnrolmentDeleted,
    UserGraded,
    CourseModuleCreated,
    UserDeleted,
}

impl MoodleEventName {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "\\core\\event\\course_completed" => Self::CourseCompleted,
            "\\core\\event\\course_module_completion_updated" => Self::ModuleCompletionUpdated,
            "\\core\\event\\user_enrolment_created" => Self::UserEnrolmentCreated,
            "\\core\\event\\user_enrolment_updated" => Self::UserEnrolmentUpdated,
            "\\core\\event\\user_enrolment_deleted" => Self::UserEnrolmentDeleted,
            "\\core\\event\\user_graded" => Self::UserGraded,
            "\\core\\event\\course_module_created" => Self::CourseModuleCreated,
            "\\core\\event\\user_deleted" => Self::UserDeleted,
            _ => return None,
        })
    }

    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::CourseCompleted => "\\core\\event\\course_completed",
            Self::ModuleCompletionUpdated => "\\core\\event\\course_module_completion_updated",
            Self::UserEnrolmentCreated => "\\core\\event\\user_enrolment_created",
            Self::UserEnrolmentUpdated => "\\core\\event\\user_enrolment_updated",
            Self::UserEnrolmentDeleted => "\\core\\event\\user_enrolment_deleted",
            Self::UserGraded => "\\core\\event\\user_graded",
            Self::CourseModuleCreated => "\\core\\event\\course_module_created",
            Self::UserDeleted => "\\core\\event\\user_deleted",
        }
    }

    /// The short name webhook payloads use (`user_enrolment_created`, ...).
    pub fn short(&self) -> &'static str {
        self.as_str().rsplit('\\').next().unwrap_or_default()
    }
}

/// An enrolment's state as Moodle gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoodleEnrolStatus {
    Active,
    Suspended,
    Deleted,
}

impl MoodleEnrolStatus {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }
}

/// What an event says, checked and typed.
#[derive(Clone, Debug, PartialEq)]
pub enum MoodleEventData {
    CourseCompleted {
        time_completed: i64,
    },
    ActivityCompletion {
        /// 0 incomplete, 1 complete, 2 complete and passed, 3 complete and failed.
        completion_state: i64,
        modname: String,
        instance_id: Option<i64>,
        time_modified: Option<i64>,
    },
    Enrolment {
        enrol: String,
        status: MoodleEnrolStatus,
        time_start: Option<i64>,
        time_end: Option<i64>,
        roles: Vec<String>,
    },
    Graded {
        item_id: i64,
        item_type: Option<String>,
        item_module: Option<String>,
        item_instance: Option<i64>,
        item_name: Option<String>,
        final_grade: Option<f64>,
        grade_max: Option<f64>,
        overridden: bool,
        grader_id: Option<i64>,
        feedback: Option<String>,
    },
    ModuleCreated {
        modname: String,
        instance_id: i64,
        name: Option<String>,
    },
    UserDeleted,
}

/// Where an event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoodleEventSource {
    /// Sent by the plugin.
    Plugin,
    /// Made up by reconciliation from the plugin's web service functions (deterministic id).
    Reconcile,
}

impl MoodleEventSource {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Plugin => "plugin",
            Self::Reconcile => "reconcile",
        }
    }
}

/// One event, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct MoodleEvent {
    pub id: String,
    /// The plugin's outbox row id; 0 for reconciliation's events, so a real event of the same
    /// second wins over one made up.
    pub seq: i64,
    pub name: MoodleEventName,
    /// Unix seconds, Moodle's clock.
    pub occurred_at: i64,
    pub course_id: Option<i64>,
    pub user_id: Option<i64>,
    pub cm_id: Option<i64>,
    pub data: MoodleEventData,
    /// The payload as received, kept with the event.
    pub payload: Value,
    pub source: MoodleEventSource,
}

/// An event refused on its own (the rest of its batch is still taken).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RejectedEvent {
    pub id: String,
    pub reason: String,
}

/// An id field: Moodle writes 0 where there is none.
fn positive(v: &Value, field: &str) -> Result<Option<i64>, String> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => match x.as_i64() {
            Some(0) => Ok(None),
            Some(n) if n > 0 => Ok(Some(n)),
            _ => Err(format!("{field} must be a positive integer or null")),
        },
    }
}

fn int_or_null(v: &Value, field: &str) -> Result<Option<i64>, String> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("payload.{field} must be an integer")),
    }
}

fn string_or_null(v: &Value, field: &str, max: usize) -> Result<Option<String>, String> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(_) => Err(format!(
            "payload.{field} must be a string of at most {max} characters"
        )),
    }
}

fn number_or_null(v: &Value, field: &str) -> Result<Option<f64>, String> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        // PHP may send a decimal as a string ("85.00000").
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| format!("payload.{field} must be a number")),
        Some(x) => x
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| format!("payload.{field} must be a number")),
    }
}

fn flag(v: &Value, field: &str) -> Result<bool, String> {
    match v.get(field) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(x) if x.as_i64() == Some(0) => Ok(false),
        Some(x) if x.as_i64() == Some(1) => Ok(true),
        _ => Err(format!("payload.{field} must be a boolean")),
    }
}

fn required<T>(value: Result<Option<T>, String>, field: &str) -> Result<T, String> {
    value?.ok_or_else(|| format!("{field} is required"))
}

impl MoodleEvent {
    /// Checks one event of a batch as the wire contract describes it. `now_secs` bounds how
    /// far in the future its time may be.
    pub fn from_json(v: &Value, now_secs: i64) -> Result<Self, RejectedEvent> {
        let id = match v.get("id") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(RejectedEvent {
                    id: String::new(),
                    reason: "id must be a string".into(),
                });
            }
        };
        let reject = |reason: String| RejectedEvent {
            id: id.clone(),
            reason,
        };
        if id.is_empty() || id.len() > MAX_EVENT_ID || id.chars().any(char::is_control) {
            return Err(reject(format!(
                "id must be 1 to {MAX_EVENT_ID} printable characters"
            )));
        }
        Self::check(v, id.clone(), now_secs).map_err(reject)
    }

    fn check(v: &Value, id: String, now_secs: i64) -> Result<Self, String> {
        if !v.is_object() {
            return Err("an event must be an object".into());
        }
        let seq = match v.get("seq").and_then(Value::as_i64) {
            Some(n) if n >= 0 => n,
            _ => return Err("seq must be a non-negative integer".into()),
        };
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .and_then(MoodleEventName::parse)
            .ok_or("name is not an event lmsbridge accepts")?;
        let occurred_at = match v.get("occurred_at").and_then(Value::as_i64) {
            Some(t) if (EARLIEST_EVENT_SECS..=now_secs + FUTURE_EVENT_SLACK_SECS).contains(&t) => t,
            _ => return Err("occurred_at must be a plausible unix time in seconds".into()),
        };
        let course_id = positive(v, "course_id")?;
        let user_id = positive(v, "user_id")?;
        let cm_id = positive(v, "cm_id")?;
        let payload = match v.get("payload") {
            Some(p @ Value::Object(_)) => p.clone(),
            // PHP encodes an empty array as [] where an empty object was meant.
            Some(Value::Array(a)) if a.is_empty() => json!({}),
            None | Some(Value::Null) if name == MoodleEventName::UserDeleted => json!({}),
            _ => return Err("payload must be an object".into()),
        };
        let p = &payload;
        let needs_course = name != MoodleEventName::UserDeleted;
        let needs_user = name != MoodleEventName::CourseModuleCreated;
        if needs_course && course_id.is_none() {
            return Err("course_id is required for this event".into());
        }
        if needs_user && user_id.is_none() {
            return Err("user_id is required for this event".into());
        }
        let data = match name {
            MoodleEventName::CourseCompleted => MoodleEventData::CourseCompleted {
                time_completed: int_or_null(p, "timecompleted")?
                    .filter(|t| *t > 0)
                    .unwrap_or(occurred_at),
            },
            MoodleEventName::ModuleCompletionUpdated => {
                if cm_id.is_none() {
                    return Err("cm_id is required for this event".into());
                }
                let state = required(int_or_null(p, "completionstate"), "payload.completionstate")?;
                if !(0..=3).contains(&state) {
                    return Err("payload.completionstate must be 0, 1, 2 or 3".into());
                }
                MoodleEventData::ActivityCompletion {
                    completion_state: state,
                    modname: required(string_or_null(p, "modname", 100), "payload.modname")?,
                    instance_id: int_or_null(p, "instance_id")?,
                    time_modified: int_or_null(p, "timemodified")?,
                }
            }
            MoodleEventName::UserEnrolmentCreated
            | MoodleEventName::UserEnrolmentUpdated
            | MoodleEventName::UserEnrolmentDeleted => {
                // Moodle always names the method; an empty one is still an enrolment, of a
                // method lmsbridge cannot tell apart.
                let enrol = match string_or_null(p, "enrol", 100)? {
                    Some(e) if e == RECONCILED_ENROL => {
                        return Err("payload.enrol must name the enrolment method".into());
                    }
                    Some(e) if !e.is_empty() => e,
                    _ => "unknown".to_owned(),
                };
                let status = if name == MoodleEventName::UserEnrolmentDeleted {
                    MoodleEnrolStatus::Deleted
                } else {
                    match int_or_null(p, "status")? {
                        Some(0) => MoodleEnrolStatus::Active,
                        Some(1) => MoodleEnrolStatus::Suspended,
                        _ => {
                            return Err("payload.status must be 0 (active) or 1 (suspended)".into());
                        }
                    }
                };
                let roles = match p.get("roles") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(a)) if a.len() <= 50 => a
                        .iter()
                        .map(|r| {
                            r.as_str()
                                .filter(|s| !s.is_empty() && s.len() <= 100)
                                .map(str::to_owned)
                        })
                        .collect::<Option<Vec<_>>>()
                        .ok_or("payload.roles must be role short names")?,
                    Some(_) => return Err("payload.roles must be an array".into()),
                };
                MoodleEventData::Enrolment {
                    enrol,
                    status,
                    time_start: int_or_null(p, "timestart")?,
                    time_end: int_or_null(p, "timeend")?,
                    roles,
                }
            }
            MoodleEventName::UserGraded => MoodleEventData::Graded {
                item_id: match int_or_null(p, "itemid")? {
                    Some(i) if i > 0 => i,
                    _ => return Err("payload.itemid must be a positive integer".into()),
                },
                item_type: string_or_null(p, "itemtype", 100)?,
                item_module: string_or_null(p, "itemmodule", 100)?,
                item_instance: int_or_null(p, "iteminstance")?,
                item_name: string_or_null(p, "itemname", 1000)?,
                final_grade: number_or_null(p, "finalgrade")?,
                grade_max: number_or_null(p, "rawgrademax")?,
                overridden: flag(p, "overridden")?,
                grader_id: positive(p, "grader_id")
                    .map_err(|_| "payload.grader_id must be a positive integer or null")?,
                feedback: string_or_null(p, "feedback", 65_536)?,
            },
            MoodleEventName::CourseModuleCreated => {
                if cm_id.is_none() {
                    return Err("cm_id is required for this event".into());
                }
                MoodleEventData::ModuleCreated {
                    modname: required(string_or_null(p, "modname", 100), "payload.modname")?,
                    instance_id: required(int_or_null(p, "instance_id"), "payload.instance_id")?,
                    name: string_or_null(p, "name", 1333)?,
                }
            }
            MoodleEventName::UserDeleted => MoodleEventData::UserDeleted,
        };
        Ok(Self {
            id,
            seq,
            name,
            occurred_at,
            course_id,
            user_id,
            cm_id,
            data,
            payload,
            source: MoodleEventSource::Plugin,
        })
    }
}

/// What happened to a batch: `accepted` were stored now, `duplicates` had been stored before.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MoodleBatchOutcome {
    pub accepted: Vec<String>,
    pub duplicates: Vec<String>,
}

/// Moodle's standard role short names in lmsbridge's roles; others are kept as they are.
pub fn moodle_role(shortname: &str) -> Role {
    match shortname {
        "student" | "guest" => Role::Learner,
        "editingteacher" => Role::Instructor,
        "teacher" => Role::TeachingAssistant,
        "manager" => Role::Administrator,
        "coursecreator" => Role::ContentDeveloper,
        other => Role::Other(other.to_owned()),
    }
}

/// The person id of a Moodle user on a Moodle platform: the one a launch derives from `sub`.
pub fn moodle_person_id(platform: PlatformId, user_id: i64) -> PersonId {
    person_id(platform, &user_id.to_string())
}

/// The context id of a Moodle course: the one a launch derives from the LTI context id.
pub fn moodle_context_id(platform: PlatformId, course_id: i64) -> ContextId {
    context_id(platform, &course_id.to_string())
}

const fn completion_name(state: i64) -> &'static str {
    match state {
        1 => "complete",
        2 => "complete_pass",
        3 => "complete_fail",
        _ => "incomplete",
    }
}

/// The part of every webhook payload that names the event behind it.
fn moodle_ref(site: &MoodleSiteId, ev: &MoodleEvent) -> Value {
    json!({
        "site_id": site.as_str(), "event_id": ev.id, "event": ev.name.short(),
        "source": ev.source.as_str(), "occurred_at": ev.occurred_at,
    })
}

/// The enrolment status lmsbridge derives from a person's enrolment methods in a course:
/// active through any active method, inactive when only suspended ones remain.
fn aggregate_status(rows: &[(String, String)]) -> EnrollmentStatus {
    if rows.iter().any(|(s, _)| s == "active") {
        EnrollmentStatus::Active
    } else if rows.iter().any(|(s, _)| s == "suspended") {
        EnrollmentStatus::Inactive
    } else {
        EnrollmentStatus::Deleted
    }
}

/// A person's enrolment (status, roles), course completion, activities and grades.
type ProgressRows = (
    Option<(String, String)>,
    Option<(i64,)>,
    Vec<(String, i64)>,
    Vec<(String, Option<f64>, bool, Option<String>)>,
);

/// A site, its sealed token, and its course ids from events and from launches.
type TargetRows = (SiteRow, Option<Vec<u8>>, Vec<i64>, Vec<String>);

#[derive(sqlx::FromRow)]
struct SiteRow {
    id: String,
    platform_id: String,
    site_url: String,
    has_ws_token: bool,
    created_at: i64,
    last_seen_at: Option<i64>,
    last_seq: i64,
    last_reconciled_at: Option<i64>,
}

const SITE_COLUMNS: &str = "id, platform_id, site_url, ws_token_sealed IS NOT NULL AS has_ws_token, created_at, last_seen_at, last_seq, last_reconciled_at";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("moodle {what}"))
}

impl TryFrom<SiteRow> for MoodleSite {
    type Error = StoreError;
    fn try_from(r: SiteRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: MoodleSiteId::parse(&r.id).ok_or_else(|| corrupt("site id"))?,
            platform_id: r.platform_id.parse().map_err(|_| corrupt("platform id"))?,
            site_url: r.site_url,
            has_ws_token: r.has_ws_token,
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            last_seq: r.last_seq,
            last_reconciled_at: r.last_reconciled_at,
        })
    }
}

/// Inserts the row a Moodle id names (a person by user id, a context by course id) under its
/// derived id unless the platform already has one, and returns the row's id, read back: a
/// row may predate derived ids. An id of another tenant's row is corruption, named `$what`.
macro_rules! ensure_platform_row {
    ($tx:expr, $table:literal, $column:literal, $what:literal, $id:expr, $tenant:expr, $platform:expr, $key:expr, $now:expr) => {{
        sqlx::query(concat!(
            "INSERT INTO ",
            $table,
            " (id, tenant_id, platform_id, ",
            $column,
            ", created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (platform_id, ",
            $column,
            ") DO NOTHING",
        ))
        .bind($id.to_string())
        .bind($tenant)
        .bind($platform.to_string())
        .bind($key)
        .bind($now)
        .execute(&mut *$tx)
        .await?;
        let (id,): (String,) = sqlx::query_as(concat!(
            "SELECT id FROM ",
            $table,
            " WHERE tenant_id = $1 AND platform_id = $2 AND ",
            $column,
            " = $3",
        ))
        .bind($tenant)
        .bind($platform.to_string())
        .bind($key)
        .fetch_optional(&mut *$tx)
        .await?
        .ok_or_else(|| corrupt(concat!($what, " of another tenant")))?;
        id
    }};
}

/// Upserts the person a Moodle user id names and returns its id.
macro_rules! ensure_person {
    ($tx:expr, $tenant:expr, $platform:expr, $user:expr, $now:expr) => {{
        let user_s = $user.to_string();
        ensure_platform_row!(
            $tx,
            "people",
            "platform_user_id",
            "person",
            person_id($platform, &user_s),
            $tenant,
            $platform,
            &user_s,
            $now
        )
    }};
}

/// Upserts the context a Moodle course id names, notes the course as the site's, and returns
/// the context id.
macro_rules! ensure_context {
    ($tx:expr, $tenant:expr, $platform:expr, $site:expr, $course:expr, $now:expr) => {{
        let course_s = $course.to_string();
        let id = ensure_platform_row!(
            $tx, "contexts", "platform_context_id", "context",
            context_id($platform, &course_s), $tenant, $platform, &course_s, $now
        );
        sqlx::query(
            "INSERT INTO moodle_courses (site_id, course_id, tenant_id, context_id) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (site_id, course_id) DO NOTHING",
        )
        .bind($site.as_str())
        .bind($course)
        .bind($tenant)
        .bind(&id)
        .execute(&mut *$tx)
        .await?;
        id
    }};
}

/// The guard every state upsert carries: only a newer event (time, then outbox sequence)
/// replaces stored state, and never another tenant's row.
macro_rules! newer_than {
    ($table:literal) => {
        concat!(
            " WHERE ",
            $table,
            ".tenant_id = excluded.tenant_id AND (excluded.state_at > ",
            $table,
            ".state_at OR (excluded.state_at = ",
            $table,
            ".state_at AND excluded.state_seq > ",
            $table,
            ".state_seq))"
        )
    };
}

impl Store {
    /// The live site a request names, or `None` (unknown or unpaired).
    pub async fn moodle_site_key(
        &self,
        site: &MoodleSiteId,
    ) -> Result<Option<MoodleSiteKey>, StoreError> {
        let row: Option<(String, String, String, Vec<u8>)> = on_db!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT tenant_id, platform_id, site_url, secret_sealed FROM moodle_sites WHERE id = $1 AND revoked_at IS NULL",
            )
            .bind(site.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(|(tenant, platform, site_url, secret_sealed)| {
            Ok(MoodleSiteKey {
                scope: TenantScope::new(tenant.parse().map_err(|_| corrupt("site tenant"))?),
                site_id: site.clone(),
                platform_id: platform.parse().map_err(|_| corrupt("site platform"))?,
                site_url,
                secret_sealed,
            })
        })
        .transpose()
    }

    /// Forgets events received before `before` (micros), a bounded number at a time;
    /// returns how many went. The state they built stays, and guards against their late
    /// return: an event older than the state is ignored, stored again or not.
    pub async fn sweep_moodle_events(&self, before: i64, limit: i64) -> Result<u64, StoreError> {
        Ok(on_db!(&self.db, |pool| {
            sqlx::query(
                "DELETE FROM moodle_events WHERE received_at < $1 AND event_id IN \
                 (SELECT event_id FROM moodle_events WHERE received_at < $1 LIMIT $2)",
            )
            .bind(before)
            .bind(limit)
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }

    /// Claims sites with a web service token whose reconciliation is due (last run longer
    /// than `interval_secs` ago) for `lease_secs`, across tenants: any instance may run them,
    /// one at a time per site.
    pub async fn claim_moodle_reconciliations(
        &self,
        interval_secs: i64,
        lease_secs: i64,
        limit: i64,
    ) -> Result<Vec<(TenantScope, MoodleSiteId)>, StoreError> {
        let now = now_micros();
        let due_before = now - interval_secs.saturating_mul(1_000_000);
        let candidates: Vec<(String, String)> = on_db!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT tenant_id, id FROM moodle_sites WHERE revoked_at IS NULL AND ws_token_sealed IS NOT NULL \
                 AND (last_reconciled_at IS NULL OR last_reconciled_at < $1) \
                 AND (reconcile_lease_until IS NULL OR reconcile_lease_until < $2) ORDER BY last_reconciled_at LIMIT $3",
            )
            .bind(due_before)
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        let mut claimed = Vec::new();
        for (tenant, id) in candidates {
            let won = on_db!(&self.db, |pool| {
                sqlx::query(
                    "UPDATE moodle_sites SET reconcile_lease_until = $1 WHERE id = $2 \
                     AND (reconcile_lease_until IS NULL OR reconcile_lease_until < $3)",
                )
                .bind(now + lease_secs.saturating_mul(1_000_000))
                .bind(&id)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
            });
            if won == 1 {
                claimed.push((
                    TenantScope::new(tenant.parse().map_err(|_| corrupt("site tenant"))?),
                    MoodleSiteId::parse(&id).ok_or_else(|| corrupt("site id"))?,
                ));
            }
        }
        Ok(claimed)
    }
}

/// What reconciliation needs of a site.
#[derive(Clone)]
pub struct MoodleReconcileTarget {
    pub site: MoodleSite,
    pub ws_token: MoodleSecret,
    /// The site's courses lmsbridge knows: from events, and contexts of its platform.
    pub courses: Vec<i64>,
}

impl fmt::Debug for MoodleReconcileTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MoodleReconcileTarget")
            .field("site", &self.site)
            .field("courses", &self.courses)
            .finish_non_exhaustive()
    }
}

/// An enrolment of a course as the events built it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownMoodleEnrolment {
    pub user_id: i64,
    pub enrol: String,
    pub status: String,
    pub state_at: i64,
}

/// The state the events built for one person in one course.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MoodleProgress {
    pub enrollment_status: Option<EnrollmentStatus>,
    pub roles: Vec<Role>,
    pub course_completed_at: Option<i64>,
    /// (activity id = course module id, completion state 0-3)
    pub activities: Vec<(String, i64)>,
    /// (grade item id, final grade, overridden, grader's Moodle user id)
    pub grades: Vec<(String, Option<f64>, bool, Option<String>)>,
}

impl TenantStore<'_> {
    /// Pairs a Moodle site with one of this tenant's Moodle platforms: a new site id and
    /// signing secret (returned once), both audited (the secret is not).
    pub async fn pair_moodle_site(
        &self,
        platform: PlatformId,
        site_url: &Url,
        ws_token: Option<&str>,
        master: &MasterKey,
        actor: &Actor,
    ) -> Result<PairedMoodleSite, StoreError> {
        let p = self.platform(platform).await?;
        if p.kind != PlatformKind::Moodle {
            return Err(StoreError::Invalid(
                "only a platform of kind moodle can be paired with a Moodle site".into(),
            ));
        }
        if !matches!(site_url.scheme(), "http" | "https") {
            return Err(StoreError::Invalid("site URL must be http(s)".into()));
        }
        if ws_token.is_some_and(|t| t.trim().is_empty() || t.len() > 256) {
            return Err(StoreError::Invalid(
                "the web service token must be 1 to 256 characters".into(),
            ));
        }
        let tenant = self.scope.tenant_id();
        let id = MoodleSiteId::generate();
        let secret = MoodleSecret(random_token(32));
        let sealed = master.seal(secret.0.as_bytes(), &secret_context(&id))?;
        let token_sealed = ws_token
            .map(|t| master.seal(t.trim().as_bytes(), &ws_token_context(&id)))
            .transpose()?;
        let site_url_s = site_url.as_str().trim_end_matches('/').to_owned();
        let now = now_micros();
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "moodle.site_paired",
            format!("moodle_site:{id}"),
            json!({"platform_id": platform, "site_url": site_url_s, "ws_token": ws_token.is_some()}),
        );
        let result: Result<(), StoreError> = async {
            on_db!(self.db, |pool| {
                let mut tx = pool.begin_write().await?;
                sqlx::query(
                    "INSERT INTO moodle_sites (id, tenant_id, platform_id, site_url, secret_sealed, ws_token_sealed, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(id.as_str())
                .bind(tenant.to_string())
                .bind(platform.to_string())
                .bind(&site_url_s)
                .bind(&sealed)
                .bind(&token_sealed)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                audit_append!(tx, &audit);
                tx.commit().await?;
            });
            Ok(())
        }
        .await;
        match result {
            Err(e) if e.is_unique_violation() => Err(StoreError::Conflict(
                "this platform is already paired with a Moodle site (unpair it first)",
            )),
            Err(e) => Err(e),
            Ok(()) => Ok(PairedMoodleSite {
                site: MoodleSite {
                    id,
                    platform_id: platform,
                    site_url: site_url_s,
                    has_ws_token: token_sealed.is_some(),
                    created_at: now,
                    last_seen_at: None,
                    last_seq: 0,
                    last_reconciled_at: None,
                },
                secret,
            }),
        }
    }

    /// Ends a pairing: the site's requests are refused from now on (its events stay).
    pub async fn unpair_moodle_site(
        &self,
        site: &MoodleSiteId,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let tenant = self.scope.tenant_id();
        let audit = NewAuditEntry::tenant(
            tenant,
            actor.clone(),
            "moodle.site_unpaired",
            format!("moodle_site:{site}"),
            json!({}),
        );
        on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query(
                "UPDATE moodle_sites SET revoked_at = $1 WHERE id = $2 AND tenant_id = $3 AND revoked_at IS NULL",
            )
            .bind(now_micros())
            .bind(site.as_str())
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

    /// This tenant's live pairings.
    pub async fn moodle_sites(&self) -> Result<Vec<MoodleSite>, StoreError> {
        let rows: Vec<SiteRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {SITE_COLUMNS} FROM moodle_sites WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY created_at"
            )))
            .bind(self.scope.tenant_id().to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(MoodleSite::try_from).collect()
    }

    /// Stores a batch of events from `site` (which must be this tenant's), applies the new
    /// ones to the domain model and queues their webhooks, all in one transaction. An event
    /// id stored before, by any instance, comes back under `duplicates` and changes nothing.
    pub async fn record_moodle_events(
        &self,
        site: &MoodleSiteId,
        events: &[MoodleEvent],
    ) -> Result<MoodleBatchOutcome, StoreError> {
        let tenant = self.scope.tenant_id();
        let tenant_s = tenant.to_string();
        let now = now_micros();
        let mut out = MoodleBatchOutcome::default();
        let mut audits: Vec<NewAuditEntry> = Vec::new();
        on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let site_row: Option<(String,)> = sqlx::query_as(
                "SELECT platform_id FROM moodle_sites WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL",
            )
            .bind(site.as_str())
            .bind(&tenant_s)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((platform_s,)) = site_row else {
                tx.rollback().await?;
                return Err(StoreError::NotFound);
            };
            let platform: PlatformId = platform_s.parse().map_err(|_| corrupt("site platform"))?;
            let mut people: HashMap<i64, String> = HashMap::new();
            let mut contexts: HashMap<i64, String> = HashMap::new();
            let mut max_seq = 0i64;
            for ev in events {
                let inserted = sqlx::query(
                    "INSERT INTO moodle_events (site_id, event_id, tenant_id, seq, name, occurred_at, course_id, user_id, cm_id, payload, source, outcome, received_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'applied', $12) ON CONFLICT (site_id, event_id) DO NOTHING",
                )
                .bind(site.as_str())
                .bind(&ev.id)
                .bind(&tenant_s)
                .bind(ev.seq)
                .bind(ev.name.as_str())
                .bind(ev.occurred_at)
                .bind(ev.course_id)
                .bind(ev.user_id)
                .bind(ev.cm_id)
                .bind(ev.payload.to_string())
                .bind(ev.source.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    out.duplicates.push(ev.id.clone());
                    continue;
                }
                out.accepted.push(ev.id.clone());
                if ev.source == MoodleEventSource::Plugin {
                    max_seq = max_seq.max(ev.seq);
                }
                let person = match ev.user_id {
                    Some(u) => Some(match people.get(&u) {
                        Some(p) => p.clone(),
                        None => {
                            let p = ensure_person!(tx, &tenant_s, platform, u, now);
                            people.insert(u, p.clone());
                            p
                        }
                    }),
                    None => None,
                };
                let context = match ev.course_id {
                    Some(c) if ev.name != MoodleEventName::UserDeleted => {
                        Some(match contexts.get(&c) {
                            Some(x) => x.clone(),
                            None => {
                                let x = ensure_context!(tx, &tenant_s, platform, site, c, now);
                                contexts.insert(c, x.clone());
                                x
                            }
                        })
                    }
                    _ => None,
                };
                let state_at = ev.occurred_at.saturating_mul(1_000_000);
                let user_s = ev.user_id.map(|u| u.to_string());
                let course_s = ev.course_id.map(|c| c.to_string());
                let deleted_user = match (&person, ev.name) {
                    (_, MoodleEventName::UserDeleted) | (None, _) => false,
                    (Some(p), _) => sqlx::query_as::<_, (String,)>(
                        "SELECT person_id FROM moodle_deleted_users WHERE platform_id = $1 AND person_id = $2 AND tenant_id = $3",
                    )
                    .bind(&platform_s)
                    .bind(p)
                    .bind(&tenant_s)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some(),
                };
                let outcome: &str = if deleted_user {
                    "user_deleted"
                } else {
                    match (&ev.data, &person, &context) {
                        (
                            MoodleEventData::Enrolment {
                                enrol,
                                status,
                                time_start,
                                time_end,
                                roles,
                            },
                            Some(person),
                            Some(context),
                        ) => {
                            let roles_s =
                                serde_json::to_string(roles).unwrap_or_else(|_| "[]".into());
                            let applied: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                                "INSERT INTO moodle_enrolments (tenant_id, context_id, person_id, enrol, status, roles, time_start, time_end, state_at, state_seq, updated_at) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                                 ON CONFLICT (context_id, person_id, enrol) DO UPDATE SET status = excluded.status, \
                                   roles = CASE WHEN excluded.roles = '[]' THEN moodle_enrolments.roles ELSE excluded.roles END, \
                                   time_start = excluded.time_start, time_end = excluded.time_end, state_at = excluded.state_at, \
                                   state_seq = excluded.state_seq, updated_at = excluded.updated_at{} RETURNING state_seq",
                                newer_than!("moodle_enrolments")
                            )))
                            .bind(&tenant_s)
                            .bind(context)
                            .bind(person)
                            .bind(enrol)
                            .bind(status.as_str())
                            .bind(&roles_s)
                            .bind(*time_start)
                            .bind(*time_end)
                            .bind(state_at)
                            .bind(ev.seq)
                            .bind(now)
                            .fetch_optional(&mut *tx)
                            .await?;
                            if applied.is_none() {
                                "stale"
                            } else {
                                if ev.source == MoodleEventSource::Plugin {
                                    // A real method's news replaces what reconciliation
                                    // guessed without knowing the method.
                                    sqlx::query(
                                        "DELETE FROM moodle_enrolments WHERE tenant_id = $1 AND context_id = $2 AND person_id = $3 \
                                         AND enrol = $4 AND state_at <= $5",
                                    )
                                    .bind(&tenant_s)
                                    .bind(context)
                                    .bind(person)
                                    .bind(RECONCILED_ENROL)
                                    .bind(state_at)
                                    .execute(&mut *tx)
                                    .await?;
                                }
                                let methods: Vec<(String, String)> = sqlx::query_as(
                                    "SELECT status, roles FROM moodle_enrolments WHERE tenant_id = $1 AND context_id = $2 AND person_id = $3 \
                                     ORDER BY state_at DESC, state_seq DESC",
                                )
                                .bind(&tenant_s)
                                .bind(context)
                                .bind(person)
                                .fetch_all(&mut *tx)
                                .await?;
                                let new_status = aggregate_status(&methods);
                                let moodle_roles: Vec<String> = methods
                                    .iter()
                                    .filter_map(|(_, r)| {
                                        serde_json::from_str::<Vec<String>>(r).ok()
                                    })
                                    .find(|r| !r.is_empty())
                                    .unwrap_or_default();
                                let current: Option<(String, String)> = sqlx::query_as(
                                    "SELECT roles, status FROM enrollments WHERE tenant_id = $1 AND context_id = $2 AND person_id = $3",
                                )
                                .bind(&tenant_s)
                                .bind(context)
                                .bind(person)
                                .fetch_optional(&mut *tx)
                                .await?;
                                let new_roles_s = if moodle_roles.is_empty() {
                                    current
                                        .as_ref()
                                        .map_or_else(|| "[]".to_owned(), |(r, _)| r.clone())
                                } else {
                                    let normalised: Vec<Role> =
                                        moodle_roles.iter().map(|r| moodle_role(r)).collect();
                                    serde_json::to_string(&normalised)
                                        .unwrap_or_else(|_| "[]".into())
                                };
                                let changed = current.as_ref().is_none_or(|(r, s)| {
                                    s != new_status.as_str()
                                        || serde_json::from_str::<Value>(r).ok()
                                            != serde_json::from_str::<Value>(&new_roles_s).ok()
                                });
                                if changed {
                                    sqlx::query(
                                        "INSERT INTO enrollments (tenant_id, context_id, person_id, roles, status, source, updated_at) \
                                         VALUES ($1, $2, $3, $4, $5, 'moodle', $6) ON CONFLICT (context_id, person_id) DO UPDATE SET \
                                         roles = excluded.roles, status = excluded.status, updated_at = excluded.updated_at \
                                         WHERE enrollments.tenant_id = excluded.tenant_id",
                                    )
                                    .bind(&tenant_s)
                                    .bind(context)
                                    .bind(person)
                                    .bind(&new_roles_s)
                                    .bind(new_status.as_str())
                                    .bind(now)
                                    .execute(&mut *tx)
                                    .await?;
                                    let roles_v: Value = serde_json::from_str(&new_roles_s)
                                        .unwrap_or_else(|_| json!([]));
                                    queue_webhook_event!(
                                        tx,
                                        &tenant_s,
                                        "enrollment.changed",
                                        json!({"data": {
                                            "person_id": person, "context_id": context, "platform_id": platform,
                                            "platform_user_id": user_s, "platform_context_id": course_s,
                                            "status": new_status.as_str(), "previous_status": current.as_ref().map(|(_, s)| s.clone()),
                                            "roles": roles_v, "moodle_roles": moodle_roles,
                                            "enrol": enrol, "enrol_status": status.as_str(),
                                            "time_start": time_start, "time_end": time_end,
                                            "moodle": moodle_ref(site, ev),
                                        }}),
                                        now
                                    );
                                }
                                "applied"
                            }
                        }
                        (
                            MoodleEventData::CourseCompleted { time_completed },
                            Some(person),
                            Some(context),
                        ) => {
                            let previous: Option<(i64,)> = sqlx::query_as(
                                "SELECT completed_at FROM course_completions WHERE tenant_id = $1 AND context_id = $2 AND person_id = $3",
                            )
                            .bind(&tenant_s)
                            .bind(context)
                            .bind(person)
                            .fetch_optional(&mut *tx)
                            .await?;
                            let applied: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                                "INSERT INTO course_completions (tenant_id, context_id, person_id, completed_at, state_at, state_seq, updated_at) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (context_id, person_id) DO UPDATE SET \
                                 completed_at = excluded.completed_at, state_at = excluded.state_at, state_seq = excluded.state_seq, \
                                 updated_at = excluded.updated_at{} RETURNING state_seq",
                                newer_than!("course_completions")
                            )))
                            .bind(&tenant_s)
                            .bind(context)
                            .bind(person)
                            .bind(*time_completed)
                            .bind(state_at)
                            .bind(ev.seq)
                            .bind(now)
                            .fetch_optional(&mut *tx)
                            .await?;
                            if applied.is_none() {
                                "stale"
                            } else if previous.is_some() {
                                // Completed before (a real event after reconciliation found
                                // it, or the reverse): the product heard of it once.
                                "unchanged"
                            } else {
                                queue_webhook_event!(
                                    tx,
                                    &tenant_s,
                                    "course.completed",
                                    json!({"data": {
                                        "person_id": person, "context_id": context, "platform_id": platform,
                                        "platform_user_id": user_s, "platform_context_id": course_s,
                                        "completed_at": time_completed, "moodle": moodle_ref(site, ev),
                                    }}),
                                    now
                                );
                                "applied"
                            }
                        }
                        (
                            MoodleEventData::ActivityCompletion {
                                completion_state,
                                modname,
                                instance_id,
                                time_modified,
                            },
                            Some(person),
                            Some(context),
                        ) => {
                            let activity = ev.cm_id.unwrap_or_default().to_string();
                            let resource =
                                match (modname.as_str(), instance_id, context.parse::<ContextId>())
                                {
                                    ("lti", Some(i), Ok(c)) if *i > 0 => {
                                        Some(resource_id(c, &i.to_string()).to_string())
                                    }
                                    _ => None,
                                };
                            let previous: Option<(i64,)> = sqlx::query_as(
                                "SELECT completion_state FROM activity_completions WHERE tenant_id = $1 AND context_id = $2 AND person_id = $3 AND activity_id = $4",
                            )
                            .bind(&tenant_s)
                            .bind(context)
                            .bind(person)
                            .bind(&activity)
                            .fetch_optional(&mut *tx)
                            .await?;
                            let applied: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                                "INSERT INTO activity_completions (tenant_id, context_id, person_id, activity_id, modname, instance_id, resource_id, completion_state, state_at, state_seq, updated_at) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (context_id, person_id, activity_id) DO UPDATE SET \
                                 modname = excluded.modname, instance_id = COALESCE(excluded.instance_id, activity_completions.instance_id), \
                                 resource_id = COALESCE(excluded.resource_id, activity_completions.resource_id), \
                                 completion_state = excluded.completion_state, state_at = excluded.state_at, state_seq = excluded.state_seq, \
                                 updated_at = excluded.updated_at{} RETURNING state_seq",
                                newer_than!("activity_completions")
                            )))
                            .bind(&tenant_s)
                            .bind(context)
                            .bind(person)
                            .bind(&activity)
                            .bind(modname)
                            .bind(*instance_id)
                            .bind(&resource)
                            .bind(*completion_state)
                            .bind(state_at)
                            .bind(ev.seq)
                            .bind(now)
                            .fetch_optional(&mut *tx)
                            .await?;
                            if applied.is_none() {
                                "stale"
                            } else if *completion_state == 0
                                || previous.map(|(s,)| s) == Some(*completion_state)
                            {
                                "unchanged"
                            } else {
                                queue_webhook_event!(
                                    tx,
                                    &tenant_s,
                                    "activity.completed",
                                    json!({"data": {
                                        "person_id": person, "context_id": context, "platform_id": platform,
                                        "platform_user_id": user_s, "platform_context_id": course_s,
                                        "activity_id": activity, "modname": modname, "instance_id": instance_id,
                                        "resource_id": resource, "completion_state": completion_name(*completion_state),
                                        "completed_at": time_modified.unwrap_or(ev.occurred_at),
                                        "moodle": moodle_ref(site, ev),
                                    }}),
                                    now
                                );
                                "applied"
                            }
                        }
                        (
                            MoodleEventData::Graded {
                                item_id,
                                item_type,
                                item_module,
                                item_instance,
                                item_name,
                                final_grade,
                                grade_max,
                                overridden,
                                grader_id,
                                feedback,
                            },
                            Some(person),
                            Some(context),
                        ) => {
                            let item = item_id.to_string();
                            let grader = grader_id.map(|g| g.to_string());
                            let previous: Option<(Option<f64>, bool)> = sqlx::query_as(
                                "SELECT final_grade, overridden FROM grade_overrides WHERE tenant_id = $1 AND context_id = $2 AND person_id = $3 AND item_id = $4",
                            )
                            .bind(&tenant_s)
                            .bind(context)
                            .bind(person)
                            .bind(&item)
                            .fetch_optional(&mut *tx)
                            .await?;
                            let applied: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                                "INSERT INTO grade_overrides (tenant_id, context_id, person_id, item_id, item_type, item_module, item_instance, item_name, final_grade, grade_max, overridden, grader_id, feedback, state_at, state_seq, updated_at) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (context_id, person_id, item_id) DO UPDATE SET \
                                 item_type = excluded.item_type, item_module = excluded.item_module, item_instance = excluded.item_instance, \
                                 item_name = excluded.item_name, final_grade = excluded.final_grade, grade_max = excluded.grade_max, \
                                 overridden = excluded.overridden, grader_id = excluded.grader_id, feedback = excluded.feedback, \
                                 state_at = excluded.state_at, state_seq = excluded.state_seq, updated_at = excluded.updated_at{} RETURNING state_seq",
                                newer_than!("grade_overrides")
                            )))
                            .bind(&tenant_s)
                            .bind(context)
                            .bind(person)
                            .bind(&item)
                            .bind(item_type)
                            .bind(item_module)
                            .bind(*item_instance)
                            .bind(item_name)
                            .bind(*final_grade)
                            .bind(*grade_max)
                            .bind(*overridden)
                            .bind(&grader)
                            .bind(feedback)
                            .bind(state_at)
                            .bind(ev.seq)
                            .bind(now)
                            .fetch_optional(&mut *tx)
                            .await?;
                            let was_overridden = previous.is_some_and(|(_, o)| o);
                            let same = previous
                                .is_some_and(|(g, o)| g == *final_grade && o == *overridden);
                            if applied.is_none() {
                                "stale"
                            } else if (!*overridden && !was_overridden) || same {
                                // Grades the platform computed itself are Moodle's business;
                                // only a teacher's override (or its removal) is news.
                                "unchanged"
                            } else {
                                let resource = match (
                                    item_module.as_deref(),
                                    item_instance,
                                    context.parse::<ContextId>(),
                                ) {
                                    (Some("lti"), Some(i), Ok(c)) if *i > 0 => {
                                        Some(resource_id(c, &i.to_string()).to_string())
                                    }
                                    _ => None,
                                };
                                let grader_person =
                                    grader_id.map(|g| moodle_person_id(platform, g).to_string());
                                let detail = json!({
                                    "person_id": person, "context_id": context, "platform_id": platform,
                                    "platform_user_id": user_s, "platform_context_id": course_s,
                                    "item_id": item, "item_type": item_type, "item_module": item_module,
                                    "item_instance": item_instance, "item_name": item_name, "resource_id": resource,
                                    "final_grade": final_grade, "grade_max": grade_max, "overridden": overridden,
                                    "grader": {"platform_user_id": grader, "person_id": grader_person},
                                });
                                let mut data = detail.clone();
                                data["feedback"] = json!(feedback);
                                data["moodle"] = moodle_ref(site, ev);
                                queue_webhook_event!(
                                    tx,
                                    &tenant_s,
                                    "grade.overridden",
                                    json!({"data": data}),
                                    now
                                );
                                let mut entry = NewAuditEntry::tenant(
                                    tenant,
                                    Actor {
                                        kind: ActorKind::Instructor,
                                        id: format!(
                                            "moodle:{}",
                                            grader.as_deref().unwrap_or("unknown")
                                        ),
                                    },
                                    "grade.overridden_in_moodle",
                                    format!("person:{person}"),
                                    {
                                        let mut d = detail;
                                        d["moodle_site_id"] = json!(site.as_str());
                                        d["moodle_event_id"] = json!(ev.id);
                                        d
                                    },
                                );
                                entry.at = now;
                                audits.push(entry);
                                "applied"
                            }
                        }
                        (
                            MoodleEventData::ModuleCreated {
                                modname,
                                instance_id,
                                name,
                            },
                            _,
                            Some(context),
                        ) => {
                            if modname != "lti" || *instance_id <= 0 {
                                "ignored"
                            } else {
                                let c: ContextId =
                                    context.parse().map_err(|_| corrupt("context id"))?;
                                sqlx::query(
                                    "INSERT INTO resources (id, tenant_id, context_id, platform_resource_id, title, created_at, updated_at) \
                                     VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (context_id, platform_resource_id) DO UPDATE SET \
                                     title = COALESCE(excluded.title, resources.title), updated_at = excluded.updated_at \
                                     WHERE resources.tenant_id = excluded.tenant_id",
                                )
                                .bind(resource_id(c, &instance_id.to_string()).to_string())
                                .bind(&tenant_s)
                                .bind(context)
                                .bind(instance_id.to_string())
                                .bind(name)
                                .bind(now)
                                .execute(&mut *tx)
                                .await?;
                                "applied"
                            }
                        }
                        (MoodleEventData::UserDeleted, Some(person), _) => {
                            sqlx::query(
                                "INSERT INTO moodle_deleted_users (tenant_id, platform_id, person_id, deleted_at) VALUES ($1, $2, $3, $4) \
                                 ON CONFLICT (platform_id, person_id) DO NOTHING",
                            )
                            .bind(&tenant_s)
                            .bind(&platform_s)
                            .bind(person)
                            .bind(state_at)
                            .execute(&mut *tx)
                            .await?;
                            let ended: Vec<(String, String, String)> = sqlx::query_as(
                                "UPDATE enrollments SET status = 'inactive', updated_at = $1 \
                                 WHERE tenant_id = $2 AND person_id = $3 AND status = 'active' \
                                 RETURNING context_id, roles, (SELECT platform_context_id FROM contexts c WHERE c.id = enrollments.context_id)",
                            )
                            .bind(now)
                            .bind(&tenant_s)
                            .bind(person)
                            .fetch_all(&mut *tx)
                            .await?;
                            for (context, roles, course) in ended {
                                let roles_v: Value =
                                    serde_json::from_str(&roles).unwrap_or_else(|_| json!([]));
                                queue_webhook_event!(
                                    tx,
                                    &tenant_s,
                                    "enrollment.changed",
                                    json!({"data": {
                                        "person_id": person, "context_id": context, "platform_id": platform,
                                        "platform_user_id": user_s, "platform_context_id": course,
                                        "status": "inactive", "previous_status": "active", "roles": roles_v,
                                        "user_deleted": true, "moodle": moodle_ref(site, ev),
                                    }}),
                                    now
                                );
                            }
                            "applied"
                        }
                        _ => "ignored",
                    }
                };
                if outcome != "applied" {
                    sqlx::query("UPDATE moodle_events SET outcome = $1 WHERE site_id = $2 AND event_id = $3 AND tenant_id = $4")
                        .bind(outcome)
                        .bind(site.as_str())
                        .bind(&ev.id)
                        .bind(&tenant_s)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            sqlx::query(
                "UPDATE moodle_sites SET last_seen_at = $1, last_seq = CASE WHEN last_seq < $2 THEN $2 ELSE last_seq END \
                 WHERE id = $3 AND tenant_id = $4",
            )
            .bind(now)
            .bind(max_seq)
            .bind(site.as_str())
            .bind(&tenant_s)
            .execute(&mut *tx)
            .await?;
            audit_append_all!(tx, &audits);
            tx.commit().await?;
        });
        Ok(out)
    }

    /// How many events of `site` are stored (each id once).
    pub async fn moodle_event_count(&self, site: &MoodleSiteId) -> Result<i64, StoreError> {
        Ok(on_db!(self.db, |pool| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM moodle_events WHERE site_id = $1 AND tenant_id = $2",
            )
            .bind(site.as_str())
            .bind(self.scope.tenant_id().to_string())
            .fetch_one(pool)
            .await?
        }))
    }

    /// What an event did when it was stored: `applied`, `stale` (older than the state),
    /// `unchanged`, `ignored`, `user_deleted`; `None` if it was never stored.
    pub async fn moodle_event_outcome(
        &self,
        site: &MoodleSiteId,
        event_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(on_db!(self.db, |pool| {
            sqlx::query_scalar(
                "SELECT outcome FROM moodle_events WHERE site_id = $1 AND event_id = $2 AND tenant_id = $3",
            )
            .bind(site.as_str())
            .bind(event_id)
            .bind(self.scope.tenant_id().to_string())
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Everything the events built for one person in one course.
    pub async fn moodle_progress(
        &self,
        person: PersonId,
        context: ContextId,
    ) -> Result<MoodleProgress, StoreError> {
        let tenant_s = self.scope.tenant_id().to_string();
        let (p, c) = (person.to_string(), context.to_string());
        let (enrolment, completed, activities, grades): ProgressRows = on_db!(self.db, |pool| {
            let e = sqlx::query_as(
                "SELECT status, roles FROM enrollments WHERE tenant_id = $1 AND person_id = $2 AND context_id = $3",
            )
            .bind(&tenant_s)
            .bind(&p)
            .bind(&c)
            .fetch_optional(pool)
            .await?;
            let done = sqlx::query_as(
                "SELECT completed_at FROM course_completions WHERE tenant_id = $1 AND person_id = $2 AND context_id = $3",
            )
            .bind(&tenant_s)
            .bind(&p)
            .bind(&c)
            .fetch_optional(pool)
            .await?;
            let a = sqlx::query_as(
                "SELECT activity_id, completion_state FROM activity_completions WHERE tenant_id = $1 AND person_id = $2 AND context_id = $3 ORDER BY activity_id",
            )
            .bind(&tenant_s)
            .bind(&p)
            .bind(&c)
            .fetch_all(pool)
            .await?;
            let g = sqlx::query_as(
                "SELECT item_id, final_grade, overridden, grader_id FROM grade_overrides WHERE tenant_id = $1 AND person_id = $2 AND context_id = $3 ORDER BY item_id",
            )
            .bind(&tenant_s)
            .bind(&p)
            .bind(&c)
            .fetch_all(pool)
            .await?;
            (e, done, a, g)
        });
        let (enrollment_status, roles) = match enrolment {
            Some((s, r)) => (
                Some(crate::rosters::parse_status(&s)?),
                serde_json::from_str(&r).map_err(|_| corrupt("enrollment roles"))?,
            ),
            None => (None, Vec::new()),
        };
        Ok(MoodleProgress {
            enrollment_status,
            roles,
            course_completed_at: completed.map(|(t,)| t),
            activities,
            grades,
        })
    }

    /// What reconciliation of `site` needs: its URL, web service token and known courses.
    /// `None` when the site is not this tenant's, is unpaired, or has no token.
    pub async fn moodle_reconcile_target(
        &self,
        site: &MoodleSiteId,
        master: &MasterKey,
    ) -> Result<Option<MoodleReconcileTarget>, StoreError> {
        let tenant_s = self.scope.tenant_id().to_string();
        let found: Option<TargetRows> = on_db!(self.db, |pool| {
            let row: Option<SiteRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {SITE_COLUMNS} FROM moodle_sites WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL"
                )))
                .bind(site.as_str())
                .bind(&tenant_s)
                .fetch_optional(pool)
                .await?;
            match row {
                None => None,
                Some(row) => {
                    let token: Option<Vec<u8>> = sqlx::query_scalar(
                        "SELECT ws_token_sealed FROM moodle_sites WHERE id = $1 AND tenant_id = $2",
                    )
                    .bind(site.as_str())
                    .bind(&tenant_s)
                    .fetch_one(pool)
                    .await?;
                    let from_events: Vec<i64> = sqlx::query_scalar(
                            "SELECT course_id FROM moodle_courses WHERE site_id = $1 AND tenant_id = $2",
                        )
                        .bind(site.as_str())
                        .bind(&tenant_s)
                        .fetch_all(pool)
                        .await?;
                    let from_launches: Vec<String> = sqlx::query_scalar(
                            "SELECT platform_context_id FROM contexts WHERE platform_id = $1 AND tenant_id = $2",
                        )
                        .bind(&row.platform_id)
                        .bind(&tenant_s)
                        .fetch_all(pool)
                        .await?;
                    Some((row, token, from_events, from_launches))
                }
            }
        });
        let Some((row, Some(token), mut courses, launched)) = found else {
            return Ok(None);
        };
        courses.extend(
            launched
                .iter()
                .filter_map(|c| c.parse::<i64>().ok())
                .filter(|c| *c > 0),
        );
        courses.sort_unstable();
        courses.dedup();
        let site_rec = MoodleSite::try_from(row)?;
        let plain = master.open(&token, &ws_token_context(&site_rec.id))?;
        let ws_token =
            MoodleSecret(String::from_utf8(plain).map_err(|_| corrupt("web service token"))?);
        Ok(Some(MoodleReconcileTarget {
            site: site_rec,
            ws_token,
            courses,
        }))
    }

    /// The enrolments of a course the events built that are not deleted, with their Moodle
    /// user ids, so reconciliation can tell who Moodle no longer lists.
    pub async fn known_moodle_enrolments(
        &self,
        site: &MoodleSiteId,
        course_id: i64,
    ) -> Result<Vec<KnownMoodleEnrolment>, StoreError> {
        let rows: Vec<(String, String, String, i64)> = on_db!(self.db, |pool| {
            sqlx::query_as(
                "SELECT p.platform_user_id, e.enrol, e.status, e.state_at FROM moodle_courses mc \
                 JOIN moodle_enrolments e ON e.context_id = mc.context_id AND e.tenant_id = mc.tenant_id \
                 JOIN people p ON p.id = e.person_id \
                 WHERE mc.site_id = $1 AND mc.course_id = $2 AND mc.tenant_id = $3 AND e.status <> 'deleted' \
                 ORDER BY p.platform_user_id, e.enrol",
            )
            .bind(site.as_str())
            .bind(course_id)
            .bind(self.scope.tenant_id().to_string())
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(user, enrol, status, state_at)| {
                Some(KnownMoodleEnrolment {
                    user_id: user.parse().ok()?,
                    enrol,
                    status,
                    state_at,
                })
            })
            .collect())
    }

    /// Ends a reconciliation run of `site`: `completed_at` (micros) becomes the time the
    /// next run asks Moodle for changes since, when every course succeeded; the lease is
    /// released either way.
    pub async fn finish_moodle_reconcile(
        &self,
        site: &MoodleSiteId,
        completed_at: Option<i64>,
    ) -> Result<(), StoreError> {
        on_db!(self.db, |pool| {
            sqlx::query(
                "UPDATE moodle_sites SET reconcile_lease_until = NULL, \
                 last_reconciled_at = COALESCE($1, last_reconciled_at) WHERE id = $2 AND tenant_id = $3",
            )
            .bind(completed_at)
            .bind(site.as_str())
            .bind(self.scope.tenant_id().to_string())
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(v: Value) -> Result<MoodleEvent, RejectedEvent> {
        MoodleEvent::from_json(&v, 1_764_290_000)
    }

    #[test]
    fn site_ids_have_one_shape() {
        let id = MoodleSiteId::generate();
        assert_eq!(id.as_str().len(), 25);
        assert_eq!(MoodleSiteId::parse(id.as_str()), Some(id));
        assert!(MoodleSiteId::parse("ms_short").is_none());
        assert!(MoodleSiteId::parse("xx_aaaaaaaaaaaaaaaaaaaaaa").is_none());
        assert!(MoodleSiteId::parse("ms_aaaaaaaaaaaaaaaaaaaa'--").is_none());
        assert!(!format!("{:?}", MoodleSecret("s3cr3t".into())).contains("s3cr3t"));
    }

    #[test]
    fn events_are_checked_one_by_one() {
        let ok = event(
            json!({"id": "e1", "seq": 1, "name": "\\core\\event\\course_completed",
            "occurred_at": 1_764_290_000, "course_id": 12, "user_id": 34, "cm_id": null,
            "payload": {"timecompleted": 1_764_289_999}}),
        )
        .unwrap();
        assert_eq!(
            ok.data,
            MoodleEventData::CourseCompleted {
                time_completed: 1_764_289_999
            }
        );
        let bad = [
            (json!({"seq": 1}), "id must be a string"),
            (
                json!({"id": "e", "seq": 1, "name": "\\core\\event\\nope", "occurred_at": 1_764_290_000, "course_id": 1, "user_id": 1, "payload": {}}),
                "name",
            ),
            (
                json!({"id": "e", "seq": 1, "name": "\\core\\event\\course_completed", "occurred_at": 5, "course_id": 1, "user_id": 1, "payload": {}}),
                "occurred_at",
            ),
            (
                json!({"id": "e", "seq": 1, "name": "\\core\\event\\course_completed", "occurred_at": 1_764_290_000, "user_id": 1, "payload": {}}),
                "course_id",
            ),
            (
                json!({"id": "e", "seq": 1, "name": "\\core\\event\\course_module_completion_updated", "occurred_at": 1_764_290_000, "course_id": 1, "user_id": 1, "cm_id": 3, "payload": {"completionstate": 7, "modname": "quiz"}}),
                "completionstate",
            ),
            (
                json!({"id": "e", "seq": 1, "name": "\\core\\event\\user_enrolment_created", "occurred_at": 1_764_290_000, "course_id": 1, "user_id": 1, "payload": {"enrol": "manual", "status": 4}}),
                "status",
            ),
            (
                json!({"id": "e", "seq": -1, "name": "\\core\\event\\user_deleted", "occurred_at": 1_764_290_000, "user_id": 1, "payload": {}}),
                "seq",
            ),
        ];
        for (v, why) in bad {
            let r = event(v.clone()).unwrap_err();
            assert!(r.reason.contains(why), "{v}: {}", r.reason);
        }
        // PHP's empty array stands for an empty payload; 0 stands for no course.
        let gone = event(
            json!({"id": "e", "seq": 2, "name": "\\core\\event\\user_deleted",
            "occurred_at": 1_764_290_000, "course_id": 0, "user_id": 9, "payload": []}),
        )
        .unwrap();
        assert_eq!(gone.data, MoodleEventData::UserDeleted);
        let graded = event(json!({"id": "g", "seq": 3, "name": "\\core\\event\\user_graded",
            "occurred_at": 1_764_290_000, "course_id": 1, "user_id": 2,
            "payload": {"itemid": 5, "finalgrade": "85.50000", "rawgrademax": 100, "overridden": true, "grader_id": 7}}))
        .unwrap();
        match graded.data {
            MoodleEventData::Graded {
                final_grade,
                overridden,
                grader_id,
                ..
            } => assert_eq!(
                (final_grade, overridden, grader_id),
                (Some(85.5), true, Some(7))
            ),
            other => panic!("{other:?}"),
        }
    }
}
