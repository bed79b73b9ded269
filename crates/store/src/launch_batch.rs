//! Recording many launches in one transaction (LTI Core §5.3–§5.4 launch data; Security
//! Framework §5.1.3 step 11: a nonce is accepted once).
//!
//! At exam peaks launches arrive by the hundred per second. A batch shares one transaction and
//! a fixed, small number of database calls whatever its size: rows travel as arrays
//! (PostgreSQL `UNNEST`) or as one JSON document per table (SQLite `jsonb_each`), so each
//! statement's text never changes and stays prepared. The two dialects differ here, side by
//! side, because the point is the number of round trips (PostgreSQL) or hops to the database
//! thread (SQLite):
//!
//! | step | PostgreSQL | SQLite |
//! |---|---|---|
//! | checks: deployment active (touched once a minute), nonce consumed | 1 statement | 1 call (with the audit heads) |
//! | people, contexts, resources, enrolments, grade targets, launches, handoff codes | 1 statement (data-modifying CTEs) | 1 call (with the audit entries) |
//! | audit chain heads, taken last, just before COMMIT | 2 statements | — |
//!
//! Ids of people, contexts, resources and grade targets are derived from what identifies them
//! on the platform, so upserts need no `RETURNING`, and the same person launching twice in one
//! batch is one row.
//!
//! On PostgreSQL several writers run at once, so nothing shared is locked early: a deployment's
//! `last_seen_at` is written at most once a minute (and skipped while another writer holds the
//! row), contexts, resources and grade targets are updated only when a launch changes them (an
//! `ON CONFLICT DO UPDATE` locks the row even when nothing changes), rows are written in key
//! order so two writers cannot deadlock, and each tenant's audit chain head is locked last.

use crate::audit::GENESIS;
use crate::crypto::sha256_hex;
use crate::db::Db;
use crate::error::StoreError;
use crate::launches::{NewLaunch, RecordedLaunch};
use crate::tenants::TenantScope;
use crate::{Store, now_micros};
use domain::{
    ActorKind, ContextId, GradeTargetId, LaunchId, PersonId, PlatformId, ResourceId, Role,
};
use serde::Serialize;
use sqlx::pool::PoolConnection;
use std::collections::{BTreeMap, HashSet};
use uuid::Uuid;

/// Why one launch of a batch was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LaunchRefusal {
    #[error("the nonce was already used")]
    NonceReplayed,
    #[error("the deployment is not registered (or not approved) for this platform")]
    UnknownDeployment,
}

/// How stale a deployment's `last_seen_at` may be. Writing it on every launch made its row the
/// one every PostgreSQL writer queued for; a minute is plenty for an admin's "last seen".
pub const LAST_SEEN_RESOLUTION_MICROS: i64 = 60 * 1_000_000;

/// Times a batch is run again after PostgreSQL rolled it back for a deadlock or a
/// serialization failure (nothing of it was kept, so running it again is safe).
const TRANSIENT_RETRIES: usize = 2;

/// The outcome of each launch of a batch, in batch order.
pub type BatchOutcome = Vec<Result<RecordedLaunch, LaunchRefusal>>;

/// Records batches of launches on one connection, kept between batches while launches keep
/// coming: taking a connection from the pool checks it first, which costs a round trip
/// (PostgreSQL) or a hop to the database thread (SQLite) per batch.
#[derive(Debug)]
pub struct LaunchWriter {
    db: Db,
    conn: Option<Held>,
}

#[derive(Debug)]
enum Held {
    Sqlite(sqlite::SqliteHeld),
    Postgres(PoolConnection<sqlx::Postgres>),
}

impl Store {
    /// A writer for [`LaunchWriter::record`]; give each writer task its own.
    pub fn launch_writer(&self) -> LaunchWriter {
        LaunchWriter {
            db: self.db.clone(),
            conn: None,
        }
    }

    /// Records launches, each for the tenant whose registration admitted it, in one
    /// transaction. Each launch either is recorded whole or is refused with its reason; a
    /// database failure fails the batch.
    pub async fn record_launches(
        &self,
        batch: &[(TenantScope, NewLaunch)],
    ) -> Result<BatchOutcome, StoreError> {
        let mut writer = self.launch_writer();
        let outcome = writer.record(batch).await;
        writer.release();
        outcome
    }
}

impl LaunchWriter {
    /// Records one batch (see [`Store::record_launches`]).
    pub async fn record(
        &mut self,
        batch: &[(TenantScope, NewLaunch)],
    ) -> Result<BatchOutcome, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let named: Vec<Named<'_>> = batch
            .iter()
            .map(|(scope, launch)| Named {
                launch,
                tenant: scope.tenant_id().to_string(),
                platform: launch.platform_id.to_string(),
            })
            .collect();
        let mut retries = 0;
        loop {
            let mut held = match self.conn.take() {
                Some(held) => held,
                None => match &self.db {
                    Db::Sqlite(pool) => {
                        Held::Sqlite(sqlite::SqliteHeld::new(pool.acquire().await?))
                    }
                    Db::Postgres(pool) => Held::Postgres(pool.acquire().await?),
                },
            };
            let result = match &mut held {
                Held::Sqlite(conn) => sqlite::record(conn, &named).await,
                Held::Postgres(conn) => postgres::record(conn, &named).await,
            };
            match result {
                Ok(outcome) => {
                    self.conn = Some(held);
                    return Ok(outcome);
                }
                Err(e) if retries < TRANSIENT_RETRIES && is_transient(&e) => {
                    retries += 1;
                    tracing::debug!(error = %e, retries, "launch batch rolled back; running it again");
                }
                // The connection goes back to the pool, which checks it before its next use.
                Err(e) => return Err(e),
            }
        }
    }

    /// Gives the connection back to the pool: a writer with nothing to do holds none.
    pub fn release(&mut self) {
        self.conn = None;
    }

    /// Whether a connection is held between batches.
    pub fn holds_connection(&self) -> bool {
        self.conn.is_some()
    }
}

/// PostgreSQL's deadlock and serialization failures: the transaction was rolled back whole.
fn is_transient(e: &StoreError) -> bool {
    matches!(e, StoreError::Database(sqlx::Error::Database(db))
        if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

/// A launch of the batch with its tenant and platform as text, computed once.
struct Named<'a> {
    launch: &'a NewLaunch,
    tenant: String,
    platform: String,
}

/// What the checks found, per launch in batch order.
struct Checked {
    /// The deployment is active and belongs to the launch's tenant and platform.
    live: Vec<bool>,
    /// The launch's (platform, nonce) was recorded by this batch just now.
    fresh: Vec<bool>,
}

/// Refuses what the checks refused. A nonce recorded by this batch admits only the first live
/// launch carrying it; a later one in the same batch is a replay.
fn decide(named: &[Named<'_>], checked: &Checked) -> Vec<Option<LaunchRefusal>> {
    let mut claimed: HashSet<(&str, &str)> = HashSet::new();
    named
        .iter()
        .enumerate()
        .map(|(i, n)| {
            if !checked.live[i] {
                Some(LaunchRefusal::UnknownDeployment)
            } else if checked.fresh[i]
                && claimed.insert((n.platform.as_str(), n.launch.nonce.as_str()))
            {
                None
            } else {
                Some(LaunchRefusal::NonceReplayed)
            }
        })
        .collect()
}

/// A stable id from what identifies a row on the platform (a UUIDv8 over SHA-256).
fn derived(kind: &str, parts: &[&str]) -> Uuid {
    let mut material = String::with_capacity(96);
    material.push_str(kind);
    for p in parts {
        material.push('\u{1f}');
        material.push_str(p);
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, material.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    Uuid::new_v8(bytes)
}

/// The id a person gets from their platform identity, whether a launch, a roster sync or the
/// product API meets them first.
pub(crate) fn person_id(platform: PlatformId, platform_user_id: &str) -> PersonId {
    PersonId::from_uuid(derived(
        "person",
        &[&platform.to_string(), platform_user_id],
    ))
}

/// The id a context gets from its platform identity (LTI context id; Moodle's course id).
pub(crate) fn context_id(platform: PlatformId, platform_context_id: &str) -> ContextId {
    ContextId::from_uuid(derived(
        "context",
        &[&platform.to_string(), platform_context_id],
    ))
}

/// The id a resource link gets within its context (Moodle: the LTI instance id).
pub(crate) fn resource_id(context: ContextId, platform_resource_id: &str) -> ResourceId {
    ResourceId::from_uuid(derived(
        "resource",
        &[&context.to_string(), platform_resource_id],
    ))
}

/// The id of the grade target at `location` (a line item URL) on `platform`.
pub(crate) fn grade_target_id(platform: PlatformId, location: &str) -> GradeTargetId {
    GradeTargetId::from_uuid(derived("grade_target", &[&platform.to_string(), location]))
}

/// A new launch id: a UUIDv7 like [`LaunchId::generate`]'s, its random bits drawn from the
/// same generator as the handoff codes rather than by a `getrandom` system call for each id.
/// (Ids made in the same millisecond are not ordered among themselves; nothing orders
/// launches by id.)
fn new_launch_id() -> LaunchId {
    let mut random = [0u8; 10];
    crate::crypto::fill_random(&mut random);
    let millis = u64::try_from(now_micros() / 1000).unwrap_or(0);
    LaunchId::from_uuid(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
}

/// The ids a launch's rows get.
struct Ids {
    person: Option<PersonId>,
    context: Option<ContextId>,
    resource: Option<ResourceId>,
    grade_target: Option<GradeTargetId>,
}

fn ids(n: &Named<'_>) -> Ids {
    let launch = n.launch;
    let platform = n.platform.as_str();
    let context = launch
        .context
        .as_ref()
        .map(|c| ContextId::from_uuid(derived("context", &[platform, &c.platform_context_id])));
    Ids {
        person: launch
            .person
            .as_ref()
            .map(|p| PersonId::from_uuid(derived("person", &[platform, &p.platform_user_id]))),
        resource: match (&launch.resource, context) {
            (Some((rid, _)), Some(ctx)) => Some(ResourceId::from_uuid(derived(
                "resource",
                &[&ctx.to_string(), rid],
            ))),
            _ => None,
        },
        grade_target: match (&launch.line_item, context) {
            (Some((url, _)), Some(_)) => Some(GradeTargetId::from_uuid(derived(
                "grade_target",
                &[platform, url],
            ))),
            _ => None,
        },
        context,
    }
}

// The rows a batch writes. Field names are the JSON keys the SQLite statements read.

/// What each launch's checks need.
#[derive(Serialize)]
struct CheckRow<'a> {
    tenant: &'a str,
    platform: &'a str,
    deployment: &'a str,
    nonce: &'a str,
    /// Not read by the checks; kept for the nonce rows.
    #[serde(skip)]
    expires: i64,
}

/// A nonce the batch consumes (SQLite's document; PostgreSQL inserts them in its checks).
#[derive(Serialize)]
struct NonceRow<'a> {
    platform: &'a str,
    nonce: &'a str,
    expires: i64,
}

#[derive(Serialize)]
struct PersonRow<'a> {
    id: String,
    tenant: &'a str,
    platform: &'a str,
    user: &'a str,
    name: Option<&'a str>,
    given_name: Option<&'a str>,
    family_name: Option<&'a str>,
    email: Option<&'a str>,
}

#[derive(Serialize)]
struct ContextRow<'a> {
    id: String,
    tenant: &'a str,
    platform: &'a str,
    context: &'a str,
    title: Option<&'a str>,
    label: Option<&'a str>,
    lineitems_url: Option<&'a str>,
    memberships_url: Option<&'a str>,
}

#[derive(Serialize)]
struct ResourceRow<'a> {
    id: String,
    tenant: &'a str,
    context_id: String,
    resource: &'a str,
    title: Option<&'a str>,
}

#[derive(Serialize)]
struct EnrollmentRow<'a> {
    tenant: &'a str,
    context_id: String,
    person_id: String,
    roles: String,
}

#[derive(Serialize)]
struct GradeTargetRow<'a> {
    id: String,
    tenant: &'a str,
    platform: &'a str,
    context_id: String,
    resource_id: Option<String>,
    location: &'a str,
    label: Option<&'a str>,
}

#[derive(Serialize)]
struct LaunchRow<'a> {
    id: String,
    tenant: &'a str,
    platform: &'a str,
    person_id: Option<String>,
    context_id: Option<String>,
    resource_id: Option<String>,
    grade_target_id: Option<String>,
    message_type: &'a str,
    /// As a JSON object in SQLite's document, which stores the text of it: written once,
    /// instead of written as text and then escaped into the document as a string.
    summary: serde_json::Value,
    #[serde(skip)]
    code_hash: &'a str,
    #[serde(skip)]
    code_expires: i64,
}

#[derive(Serialize)]
struct HandoffRow<'a> {
    code_hash: &'a str,
    tenant: &'a str,
    launch_id: &'a str,
    expires: i64,
}

#[derive(Serialize)]
struct AuditRow<'a> {
    chain: &'a str,
    seq: i64,
    tenant: Option<&'a str>,
    at: i64,
    actor_kind: &'static str,
    actor_id: &'static str,
    action: &'static str,
    subject: &'a str,
    detail: &'a str,
    prev_hash: String,
    hash: String,
}

/// The audit entry of an accepted launch, before it is chained: on its tenant's chain, by
/// the system actor `lti-launch`, action `launch.accepted`.
struct LaunchAudit {
    at: i64,
    subject: String,
    /// The detail's JSON text, serialised straight from [`AuditDetail`].
    detail: String,
}

const AUDIT_ACTOR_KIND: ActorKind = ActorKind::System;
const AUDIT_ACTOR_ID: &str = "lti-launch";
const AUDIT_ACTION: &str = "launch.accepted";

/// The detail of a launch's audit entry. Fields in key order: the same text as the
/// `serde_json::Value` object it used to be built as.
#[derive(Serialize)]
struct AuditDetail<'a> {
    context_id: Option<ContextId>,
    deployment_id: &'a str,
    message_type: &'a str,
    person_id: Option<PersonId>,
    platform_id: PlatformId,
    resource_id: Option<ResourceId>,
    roles: &'a [Role],
}

/// [`crate::audit::entry_hash`], from a tuple serialised straight to its canonical text
/// rather than a `serde_json::Value` array (the same text; see the test).
#[allow(clippy::too_many_arguments)]
fn entry_hash(
    chain: &str,
    seq: i64,
    tenant_id: Option<&str>,
    at: i64,
    actor_kind: &str,
    actor_id: &str,
    action: &str,
    subject: &str,
    detail: &str,
    prev_hash: &str,
) -> String {
    let canonical = serde_json::to_string(&(
        chain, seq, tenant_id, at, actor_kind, actor_id, action, subject, detail, prev_hash,
    ))
    .unwrap_or_default();
    sha256_hex(canonical.as_bytes())
}

#[derive(Serialize)]
struct HeadRow<'a> {
    chain: &'a str,
    seq: i64,
    hash: String,
}

/// Everything the accepted launches of a batch write, one row per key (a multi-row upsert may
/// not touch a row twice; the batch's last launch wins), in key order.
struct Plan<'a> {
    people: Vec<PersonRow<'a>>,
    contexts: Vec<ContextRow<'a>>,
    resources: Vec<ResourceRow<'a>>,
    enrollments: Vec<EnrollmentRow<'a>>,
    grade_targets: Vec<GradeTargetRow<'a>>,
    launches: Vec<LaunchRow<'a>>,
    /// The outcome of each accepted launch, by batch index.
    recorded: Vec<(usize, RecordedLaunch)>,
    /// Audit entries per chain, in batch order; chains in key order.
    audit: BTreeMap<String, Vec<LaunchAudit>>,
}

fn plan<'a>(named: &'a [Named<'a>], accepted: &[usize], now: i64) -> Plan<'a> {
    let mut people = BTreeMap::new();
    let mut contexts = BTreeMap::new();
    let mut resources = BTreeMap::new();
    let mut enrollments = BTreeMap::new();
    let mut grade_targets = BTreeMap::new();
    let mut launches = Vec::with_capacity(accepted.len());
    let mut recorded = Vec::with_capacity(accepted.len());
    let mut audit: BTreeMap<String, Vec<LaunchAudit>> = BTreeMap::new();
    for &i in accepted {
        let n = &named[i];
        let l = n.launch;
        let ids = ids(n);
        let person_s = ids.person.map(|p| p.to_string());
        let context_s = ids.context.map(|c| c.to_string());
        let resource_s = ids.resource.map(|r| r.to_string());
        let grade_target_s = ids.grade_target.map(|g| g.to_string());
        if let (Some(p), Some(id)) = (&l.person, &person_s) {
            people.insert(
                (n.platform.as_str(), p.platform_user_id.as_str()),
                PersonRow {
                    id: id.clone(),
                    tenant: &n.tenant,
                    platform: &n.platform,
                    user: &p.platform_user_id,
                    name: p.name.as_deref(),
                    given_name: p.given_name.as_deref(),
                    family_name: p.family_name.as_deref(),
                    email: p.email.as_deref(),
                },
            );
        }
        if let (Some(c), Some(id)) = (&l.context, &context_s) {
            contexts.insert(
                (n.platform.as_str(), c.platform_context_id.as_str()),
                ContextRow {
                    id: id.clone(),
                    tenant: &n.tenant,
                    platform: &n.platform,
                    context: &c.platform_context_id,
                    title: c.title.as_deref(),
                    label: c.label.as_deref(),
                    lineitems_url: c.lineitems_url.as_deref(),
                    memberships_url: c.memberships_url.as_deref(),
                },
            );
        }
        if let (Some((rid, title)), Some(id), Some(ctx)) = (&l.resource, &resource_s, &context_s) {
            resources.insert(
                (ctx.clone(), rid.as_str()),
                ResourceRow {
                    id: id.clone(),
                    tenant: &n.tenant,
                    context_id: ctx.clone(),
                    resource: rid,
                    title: title.as_deref(),
                },
            );
        }
        if let (Some(ctx), Some(person)) = (&context_s, &person_s) {
            enrollments.insert(
                (ctx.clone(), person.clone()),
                EnrollmentRow {
                    tenant: &n.tenant,
                    context_id: ctx.clone(),
                    person_id: person.clone(),
                    roles: serde_json::to_string(&l.roles).unwrap_or_else(|_| "[]".into()),
                },
            );
        }
        if let (Some((url, label)), Some(id), Some(ctx)) =
            (&l.line_item, &grade_target_s, &context_s)
        {
            grade_targets.insert(
                (n.platform.as_str(), url.as_str()),
                GradeTargetRow {
                    id: id.clone(),
                    tenant: &n.tenant,
                    platform: &n.platform,
                    context_id: ctx.clone(),
                    resource_id: resource_s.clone(),
                    location: url,
                    label: label.as_deref(),
                },
            );
        }
        let launch_id = new_launch_id();
        let summary = crate::launches::summary(
            l,
            launch_id,
            ids.person,
            ids.context,
            ids.resource,
            ids.grade_target,
            now,
        );
        let detail = serde_json::to_string(&AuditDetail {
            context_id: ids.context,
            deployment_id: &l.deployment_id,
            message_type: &l.message_type,
            person_id: ids.person,
            platform_id: l.platform_id,
            resource_id: ids.resource,
            roles: &l.roles,
        })
        .unwrap_or_default();
        audit
            .entry(n.tenant.clone())
            .or_default()
            .push(LaunchAudit {
                at: now_micros(),
                subject: format!("launch:{launch_id}"),
                detail,
            });
        launches.push(LaunchRow {
            id: launch_id.to_string(),
            tenant: &n.tenant,
            platform: &n.platform,
            person_id: person_s,
            context_id: context_s,
            resource_id: resource_s,
            grade_target_id: grade_target_s,
            message_type: &l.message_type,
            summary,
            code_hash: &l.handoff_code_hash,
            code_expires: l.handoff_expires_at,
        });
        recorded.push((
            i,
            RecordedLaunch {
                launch_id,
                person_id: ids.person,
                context_id: ids.context,
                resource_id: ids.resource,
                grade_target_id: ids.grade_target,
                // Moved here from its row once the row is written (`Plan::into_recorded`).
                summary: serde_json::Value::Null,
            },
        ));
    }
    Plan {
        people: people.into_values().collect(),
        contexts: contexts.into_values().collect(),
        resources: resources.into_values().collect(),
        enrollments: enrollments.into_values().collect(),
        grade_targets: grade_targets.into_values().collect(),
        launches,
        recorded,
        audit,
    }
}

impl Plan<'_> {
    /// The outcome of each accepted launch, each with its normalised launch.
    fn into_recorded(self) -> Vec<(usize, RecordedLaunch)> {
        let mut recorded = self.recorded;
        for ((_, r), l) in recorded.iter_mut().zip(self.launches) {
            r.summary = l.summary;
        }
        recorded
    }
}

/// The entries of one chain, hashed onto its head: `last_seq` and `prev` are the head's
/// sequence number and hash before these entries.
fn chain_rows<'a>(
    chain: &'a str,
    entries: &'a [LaunchAudit],
    last_seq: i64,
    mut prev: String,
    rows: &mut Vec<AuditRow<'a>>,
) -> HeadRow<'a> {
    let mut seq = last_seq;
    for entry in entries {
        seq += 1;
        let hash = entry_hash(
            chain,
            seq,
            Some(chain),
            entry.at,
            AUDIT_ACTOR_KIND.as_str(),
            AUDIT_ACTOR_ID,
            AUDIT_ACTION,
            &entry.subject,
            &entry.detail,
            &prev,
        );
        rows.push(AuditRow {
            chain,
            seq,
            tenant: Some(chain),
            at: entry.at,
            actor_kind: AUDIT_ACTOR_KIND.as_str(),
            actor_id: AUDIT_ACTOR_ID,
            action: AUDIT_ACTION,
            subject: &entry.subject,
            detail: &entry.detail,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
        });
    }
    HeadRow {
        chain,
        seq,
        hash: prev,
    }
}

/// Each launch's outcome in batch order.
fn outcome(
    refusals: Vec<Option<LaunchRefusal>>,
    recorded: Vec<(usize, RecordedLaunch)>,
) -> BatchOutcome {
    let mut out: Vec<Result<RecordedLaunch, LaunchRefusal>> = refusals
        .into_iter()
        .map(|r| Err(r.unwrap_or(LaunchRefusal::UnknownDeployment)))
        .collect();
    for (i, r) in recorded {
        out[i] = Ok(r);
    }
    out
}

fn json<T: Serialize>(rows: &T) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(|e| StoreError::Invalid(format!("launch batch: {e}")))
}

mod sqlite {
    //! SQLite: one writer at a time holds the database's write lock from `BEGIN IMMEDIATE`,
    //! so the checks can read (nonces, audit heads) and the writes come later in the same
    //! transaction with nothing in between. A batch is two calls to the connection's thread,
    //! whatever its size: the first opens the transaction and checks, the second writes and
    //! commits (parameters are numbered across the statements of a call). The transaction is
    //! opened and closed in SQL rather than through sqlx, so [`SqliteHeld`] makes sure a
    //! connection never goes back to the pool with it still open.

    use super::*;
    use sqlx::Row as _;

    const CHECK: &str = "\
BEGIN IMMEDIATE; \
UPDATE deployments SET last_seen_at = $2 \
 WHERE status = 'active' AND (last_seen_at IS NULL OR last_seen_at < $3) \
   AND (tenant_id, platform_id, deployment_id) IN \
       (SELECT value->>'tenant', value->>'platform', value->>'deployment' FROM jsonb_each($1)); \
WITH w AS MATERIALIZED ( \
    SELECT key, value->>'tenant' AS tenant, value->>'platform' AS platform, \
           value->>'deployment' AS deployment, value->>'nonce' AS nonce FROM jsonb_each($1)) \
SELECT \
 (SELECT json_group_array(w.key) FROM w \
   WHERE EXISTS (SELECT 1 FROM deployments d WHERE d.status = 'active' AND d.tenant_id = w.tenant \
                   AND d.platform_id = w.platform AND d.deployment_id = w.deployment)), \
 (SELECT json_group_array(w.key) FROM w \
   WHERE EXISTS (SELECT 1 FROM used_nonces u WHERE u.platform_id = w.platform AND u.nonce = w.nonce)), \
 (SELECT json_group_array(json_array(chain, seq, hash)) FROM audit_heads \
   WHERE chain IN (SELECT value FROM jsonb_each($4)))";

    /// The nonces go in first: their primary key is the last word on single use, and a
    /// conflict here (which the write lock rules out) fails the batch rather than admit one.
    const WRITE: &str = "\
INSERT INTO used_nonces (platform_id, nonce, expires_at) \
 SELECT value->>'platform', value->>'nonce', value->>'expires' FROM jsonb_each($10); \
INSERT INTO people (id, tenant_id, platform_id, platform_user_id, name, given_name, family_name, email, created_at, updated_at) \
 SELECT value->>'id', value->>'tenant', value->>'platform', value->>'user', value->>'name', value->>'given_name', \
        value->>'family_name', value->>'email', $1, $1 FROM jsonb_each($2) WHERE true \
 ON CONFLICT (platform_id, platform_user_id) DO UPDATE SET \
   name = COALESCE(excluded.name, people.name), given_name = COALESCE(excluded.given_name, people.given_name), \
   family_name = COALESCE(excluded.family_name, people.family_name), email = COALESCE(excluded.email, people.email), \
   updated_at = excluded.updated_at \
 WHERE people.tenant_id = excluded.tenant_id; \
INSERT INTO contexts (id, tenant_id, platform_id, platform_context_id, title, label, lineitems_url, memberships_url, created_at, updated_at) \
 SELECT value->>'id', value->>'tenant', value->>'platform', value->>'context', value->>'title', value->>'label', \
        value->>'lineitems_url', value->>'memberships_url', $1, $1 FROM jsonb_each($3) WHERE true \
 ON CONFLICT (platform_id, platform_context_id) DO UPDATE SET \
   title = COALESCE(excluded.title, contexts.title), label = COALESCE(excluded.label, contexts.label), \
   lineitems_url = COALESCE(excluded.lineitems_url, contexts.lineitems_url), \
   memberships_url = COALESCE(excluded.memberships_url, contexts.memberships_url), updated_at = excluded.updated_at \
 WHERE contexts.tenant_id = excluded.tenant_id \
   AND (COALESCE(excluded.title, contexts.title) IS DISTINCT FROM contexts.title \
     OR COALESCE(excluded.label, contexts.label) IS DISTINCT FROM contexts.label \
     OR COALESCE(excluded.lineitems_url, contexts.lineitems_url) IS DISTINCT FROM contexts.lineitems_url \
     OR COALESCE(excluded.memberships_url, contexts.memberships_url) IS DISTINCT FROM contexts.memberships_url); \
INSERT INTO resources (id, tenant_id, context_id, platform_resource_id, title, created_at, updated_at) \
 SELECT value->>'id', value->>'tenant', value->>'context_id', value->>'resource', value->>'title', $1, $1 \
 FROM jsonb_each($4) WHERE true \
 ON CONFLICT (context_id, platform_resource_id) DO UPDATE SET title = excluded.title, updated_at = excluded.updated_at \
 WHERE resources.tenant_id = excluded.tenant_id AND excluded.title IS NOT NULL \
   AND excluded.title IS DISTINCT FROM resources.title; \
INSERT INTO enrollments (tenant_id, context_id, person_id, roles, status, source, updated_at) \
 SELECT value->>'tenant', value->>'context_id', value->>'person_id', value->>'roles', 'active', 'launch', $1 \
 FROM jsonb_each($5) WHERE true \
 ON CONFLICT (context_id, person_id) DO UPDATE SET roles = excluded.roles, status = 'active', \
   updated_at = excluded.updated_at \
 WHERE enrollments.tenant_id = excluded.tenant_id; \
INSERT INTO grade_targets (id, tenant_id, platform_id, context_id, resource_id, kind, location, label, created_at) \
 SELECT value->>'id', value->>'tenant', value->>'platform', value->>'context_id', value->>'resource_id', \
        'lti_line_item', value->>'location', value->>'label', $1 FROM jsonb_each($6) WHERE true \
 ON CONFLICT (platform_id, location) DO UPDATE SET \
   label = COALESCE(excluded.label, grade_targets.label), \
   resource_id = COALESCE(excluded.resource_id, grade_targets.resource_id) \
 WHERE grade_targets.tenant_id = excluded.tenant_id \
   AND (COALESCE(excluded.label, grade_targets.label) IS DISTINCT FROM grade_targets.label \
     OR COALESCE(excluded.resource_id, grade_targets.resource_id) IS DISTINCT FROM grade_targets.resource_id); \
INSERT INTO launches (id, tenant_id, platform_id, person_id, context_id, resource_id, grade_target_id, message_type, summary, created_at) \
 SELECT value->>'id', value->>'tenant', value->>'platform', value->>'person_id', value->>'context_id', \
        value->>'resource_id', value->>'grade_target_id', value->>'message_type', value->'summary', $1 \
 FROM jsonb_each($7); \
INSERT INTO handoff_codes (code_hash, tenant_id, launch_id, expires_at) \
 SELECT value->>'code_hash', value->>'tenant', value->>'launch_id', value->>'expires' FROM jsonb_each($11); \
INSERT INTO audit_log (chain, seq, tenant_id, at, actor_kind, actor_id, action, subject, detail, prev_hash, hash) \
 SELECT value->>'chain', value->>'seq', value->>'tenant', value->>'at', value->>'actor_kind', value->>'actor_id', \
        value->>'action', value->>'subject', value->>'detail', value->>'prev_hash', value->>'hash' \
 FROM jsonb_each($8); \
INSERT INTO audit_heads (chain, seq, hash) \
 SELECT value->>'chain', value->>'seq', value->>'hash' FROM jsonb_each($9) WHERE true \
 ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash; \
COMMIT";

    /// A pooled connection that may be inside a transaction opened in SQL. Should the batch's
    /// future be dropped midway (a caller's timeout), the connection is closed, which rolls
    /// the transaction back, instead of going back to the pool with it open.
    #[derive(Debug)]
    pub(super) struct SqliteHeld {
        conn: Option<PoolConnection<sqlx::Sqlite>>,
        in_transaction: bool,
    }

    impl SqliteHeld {
        pub(super) fn new(conn: PoolConnection<sqlx::Sqlite>) -> Self {
            Self {
                conn: Some(conn),
                in_transaction: false,
            }
        }
    }

    impl Drop for SqliteHeld {
        fn drop(&mut self) {
            if self.in_transaction
                && let Some(conn) = self.conn.take()
            {
                drop(conn.detach());
            }
        }
    }

    pub(super) async fn record(
        held: &mut SqliteHeld,
        named: &[Named<'_>],
    ) -> Result<BatchOutcome, StoreError> {
        let Some(conn) = held.conn.as_mut() else {
            return Err(StoreError::Corrupt(
                "launch writer without a connection".into(),
            ));
        };
        held.in_transaction = true;
        let result = batch(conn, named).await;
        if result.is_err() {
            // Whatever failed, nothing of the batch may stay: roll back (an error saying no
            // transaction is open is fine), or close the connection if even that fails.
            let rolled_back = match sqlx::query("ROLLBACK").execute(&mut **conn).await {
                Ok(_) => true,
                Err(sqlx::Error::Database(e)) => e.message().contains("no transaction"),
                Err(_) => false,
            };
            if !rolled_back {
                return result;
            }
        }
        held.in_transaction = false;
        result
    }

    async fn batch(
        conn: &mut sqlx::SqliteConnection,
        named: &[Named<'_>],
    ) -> Result<BatchOutcome, StoreError> {
        let now = now_micros();
        let checks: Vec<CheckRow<'_>> = named
            .iter()
            .map(|n| CheckRow {
                tenant: &n.tenant,
                platform: &n.platform,
                deployment: &n.launch.deployment_id,
                nonce: &n.launch.nonce,
                expires: n.launch.nonce_expires_at,
            })
            .collect();
        let chains: Vec<&str> = named
            .iter()
            .map(|n| n.tenant.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();

        let row = sqlx::query(CHECK)
            .bind(json(&checks)?)
            .bind(now)
            .bind(now - LAST_SEEN_RESOLUTION_MICROS)
            .bind(json(&chains)?)
            .fetch_one(&mut *conn)
            .await?;
        let parse = |i: usize| -> Result<String, StoreError> { Ok(row.try_get(i)?) };
        let corrupt = |_| StoreError::Corrupt("launch batch check".into());
        let live: Vec<usize> = serde_json::from_str(&parse(0)?).map_err(corrupt)?;
        let used: Vec<usize> = serde_json::from_str(&parse(1)?).map_err(corrupt)?;
        let heads: Vec<(String, i64, String)> =
            serde_json::from_str(&parse(2)?).map_err(corrupt)?;
        let mut checked = Checked {
            live: vec![false; named.len()],
            fresh: vec![true; named.len()],
        };
        for i in live {
            if let Some(slot) = checked.live.get_mut(i) {
                *slot = true;
            }
        }
        for i in used {
            if let Some(slot) = checked.fresh.get_mut(i) {
                *slot = false;
            }
        }
        let heads: BTreeMap<String, (i64, String)> = heads
            .into_iter()
            .map(|(chain, seq, hash)| (chain, (seq, hash)))
            .collect();
        let refusals = decide(named, &checked);
        let accepted: Vec<usize> = (0..named.len())
            .filter(|&i| refusals[i].is_none())
            .collect();
        if accepted.is_empty() {
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            return Ok(outcome(refusals, Vec::new()));
        }

        let plan = plan(named, &accepted, now);
        let mut audit_rows = Vec::new();
        let mut head_rows = Vec::new();
        for (chain, entries) in &plan.audit {
            let (seq, hash) = heads
                .get(chain)
                .cloned()
                .unwrap_or_else(|| (0, GENESIS.to_owned()));
            head_rows.push(chain_rows(chain, entries, seq, hash, &mut audit_rows));
        }
        let nonces: Vec<NonceRow<'_>> = accepted
            .iter()
            .map(|&i| NonceRow {
                platform: checks[i].platform,
                nonce: checks[i].nonce,
                expires: checks[i].expires,
            })
            .collect();
        // Apart from the launches, whose summaries make theirs the largest document.
        let handoffs: Vec<HandoffRow<'_>> = plan
            .launches
            .iter()
            .map(|l| HandoffRow {
                code_hash: l.code_hash,
                tenant: l.tenant,
                launch_id: &l.id,
                expires: l.code_expires,
            })
            .collect();
        sqlx::query(WRITE)
            .bind(now)
            .bind(json(&plan.people)?)
            .bind(json(&plan.contexts)?)
            .bind(json(&plan.resources)?)
            .bind(json(&plan.enrollments)?)
            .bind(json(&plan.grade_targets)?)
            .bind(json(&plan.launches)?)
            .bind(json(&audit_rows)?)
            .bind(json(&head_rows)?)
            .bind(json(&nonces)?)
            .bind(json(&handoffs)?)
            .execute(&mut *conn)
            .await?;
        Ok(outcome(refusals, plan.into_recorded()))
    }
}

mod postgres {
    //! PostgreSQL: arrays bound once per column and unnested; the audit heads are taken last.

    use super::*;
    use sqlx::Connection as _;
    use sqlx::postgres::PgBindIterExt as _;

    const CHECK: &str = "\
WITH w AS ( \
    SELECT * FROM UNNEST($1::int[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) \
        AS w(i, tenant_id, platform_id, deployment_id, nonce, expires_at) \
), live AS ( \
    SELECT d.id, d.tenant_id, d.platform_id, d.deployment_id FROM deployments d \
    WHERE d.status = 'active' \
      AND (d.tenant_id, d.platform_id, d.deployment_id) IN (SELECT tenant_id, platform_id, deployment_id FROM w) \
), touched AS ( \
    UPDATE deployments SET last_seen_at = $7 \
    WHERE id IN (SELECT d.id FROM deployments d JOIN live ON live.id = d.id \
                 WHERE d.last_seen_at IS NULL OR d.last_seen_at < $8 \
                 ORDER BY d.id FOR UPDATE OF d SKIP LOCKED) \
), fresh AS ( \
    INSERT INTO used_nonces (platform_id, nonce, expires_at) \
    SELECT DISTINCT ON (w.platform_id, w.nonce) w.platform_id, w.nonce, w.expires_at \
    FROM w JOIN live USING (tenant_id, platform_id, deployment_id) \
    ORDER BY w.platform_id, w.nonce, w.i \
    ON CONFLICT (platform_id, nonce) DO NOTHING \
    RETURNING platform_id, nonce \
) \
SELECT w.i, \
    EXISTS (SELECT 1 FROM live l WHERE l.tenant_id = w.tenant_id AND l.platform_id = w.platform_id \
            AND l.deployment_id = w.deployment_id), \
    EXISTS (SELECT 1 FROM fresh f WHERE f.platform_id = w.platform_id AND f.nonce = w.nonce) \
FROM w";

    const WRITE: &str = "\
WITH p AS ( \
    INSERT INTO people (id, tenant_id, platform_id, platform_user_id, name, given_name, family_name, email, created_at, updated_at) \
    SELECT id, tenant_id, platform_id, user_id, name, given_name, family_name, email, $1, $1 \
    FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[]) \
        AS t(id, tenant_id, platform_id, user_id, name, given_name, family_name, email) \
    ON CONFLICT (platform_id, platform_user_id) DO UPDATE SET \
        name = COALESCE(excluded.name, people.name), given_name = COALESCE(excluded.given_name, people.given_name), \
        family_name = COALESCE(excluded.family_name, people.family_name), email = COALESCE(excluded.email, people.email), \
        updated_at = excluded.updated_at \
    WHERE people.tenant_id = excluded.tenant_id \
), cv AS ( \
    SELECT * FROM UNNEST($10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[]) \
        AS t(id, tenant_id, platform_id, context_id, title, label, lineitems_url, memberships_url) \
), cu AS ( \
    UPDATE contexts c SET title = COALESCE(cv.title, c.title), label = COALESCE(cv.label, c.label), \
        lineitems_url = COALESCE(cv.lineitems_url, c.lineitems_url), \
        memberships_url = COALESCE(cv.memberships_url, c.memberships_url), updated_at = $1 \
    FROM cv \
    WHERE c.platform_id = cv.platform_id AND c.platform_context_id = cv.context_id AND c.tenant_id = cv.tenant_id \
      AND (COALESCE(cv.title, c.title) IS DISTINCT FROM c.title OR COALESCE(cv.label, c.label) IS DISTINCT FROM c.label \
        OR COALESCE(cv.lineitems_url, c.lineitems_url) IS DISTINCT FROM c.lineitems_url \
        OR COALESCE(cv.memberships_url, c.memberships_url) IS DISTINCT FROM c.memberships_url) \
), ci AS ( \
    INSERT INTO contexts (id, tenant_id, platform_id, platform_context_id, title, label, lineitems_url, memberships_url, created_at, updated_at) \
    SELECT id, tenant_id, platform_id, context_id, title, label, lineitems_url, memberships_url, $1, $1 FROM cv \
    ON CONFLICT (platform_id, platform_context_id) DO NOTHING \
), rv AS ( \
    SELECT * FROM UNNEST($18::text[], $19::text[], $20::text[], $21::text[], $22::text[]) \
        AS t(id, tenant_id, context_id, resource_id, title) \
), ru AS ( \
    UPDATE resources r SET title = rv.title, updated_at = $1 FROM rv \
    WHERE r.context_id = rv.context_id AND r.platform_resource_id = rv.resource_id AND r.tenant_id = rv.tenant_id \
      AND rv.title IS NOT NULL AND rv.title IS DISTINCT FROM r.title \
), ri AS ( \
    INSERT INTO resources (id, tenant_id, context_id, platform_resource_id, title, created_at, updated_at) \
    SELECT id, tenant_id, context_id, resource_id, title, $1, $1 FROM rv \
    ON CONFLICT (context_id, platform_resource_id) DO NOTHING \
), e AS ( \
    INSERT INTO enrollments (tenant_id, context_id, person_id, roles, status, source, updated_at) \
    SELECT tenant_id, context_id, person_id, roles, 'active', 'launch', $1 \
    FROM UNNEST($23::text[], $24::text[], $25::text[], $26::text[]) AS t(tenant_id, context_id, person_id, roles) \
    ON CONFLICT (context_id, person_id) DO UPDATE SET roles = excluded.roles, status = 'active', \
        updated_at = excluded.updated_at \
    WHERE enrollments.tenant_id = excluded.tenant_id \
), gv AS ( \
    SELECT * FROM UNNEST($27::text[], $28::text[], $29::text[], $30::text[], $31::text[], $32::text[], $33::text[]) \
        AS t(id, tenant_id, platform_id, context_id, resource_id, location, label) \
), gu AS ( \
    UPDATE grade_targets g SET label = COALESCE(gv.label, g.label), resource_id = COALESCE(gv.resource_id, g.resource_id) \
    FROM gv \
    WHERE g.platform_id = gv.platform_id AND g.location = gv.location AND g.tenant_id = gv.tenant_id \
      AND (COALESCE(gv.label, g.label) IS DISTINCT FROM g.label \
        OR COALESCE(gv.resource_id, g.resource_id) IS DISTINCT FROM g.resource_id) \
), gi AS ( \
    INSERT INTO grade_targets (id, tenant_id, platform_id, context_id, resource_id, kind, location, label, created_at) \
    SELECT id, tenant_id, platform_id, context_id, resource_id, 'lti_line_item', location, label, $1 FROM gv \
    ON CONFLICT (platform_id, location) DO NOTHING \
), l AS ( \
    INSERT INTO launches (id, tenant_id, platform_id, person_id, context_id, resource_id, grade_target_id, message_type, summary, created_at) \
    SELECT id, tenant_id, platform_id, person_id, context_id, resource_id, grade_target_id, message_type, summary, $1 \
    FROM UNNEST($34::text[], $35::text[], $36::text[], $37::text[], $38::text[], $39::text[], $40::text[], $41::text[], $42::text[]) \
        AS t(id, tenant_id, platform_id, person_id, context_id, resource_id, grade_target_id, message_type, summary) \
) \
INSERT INTO handoff_codes (code_hash, tenant_id, launch_id, expires_at) \
SELECT * FROM UNNEST($43::text[], $35::text[], $34::text[], $44::bigint[])";

    const HEADS: &str = "\
INSERT INTO audit_heads (chain, seq, hash) \
SELECT chain, n, $3 FROM UNNEST($1::text[], $2::bigint[]) AS t(chain, n) ORDER BY chain \
ON CONFLICT (chain) DO UPDATE SET seq = audit_heads.seq + excluded.seq \
RETURNING chain, seq, hash";

    const AUDIT: &str = "\
WITH log AS ( \
    INSERT INTO audit_log (chain, seq, tenant_id, at, actor_kind, actor_id, action, subject, detail, prev_hash, hash) \
    SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], \
                         $8::text[], $9::text[], $10::text[], $11::text[]) \
) \
UPDATE audit_heads h SET hash = t.hash FROM UNNEST($12::text[], $13::text[]) AS t(chain, hash) \
WHERE h.chain = t.chain";

    pub(super) async fn record(
        conn: &mut sqlx::PgConnection,
        named: &[Named<'_>],
    ) -> Result<BatchOutcome, StoreError> {
        let now = now_micros();
        let mut tx = conn.begin().await?;
        let rows: Vec<(i32, bool, bool)> = sqlx::query_as(CHECK)
            .bind(
                (0..named.len())
                    .map(|i| i32::try_from(i).unwrap_or(i32::MAX))
                    .bind_iter(),
            )
            .bind(named.iter().map(|n| n.tenant.as_str()).bind_iter())
            .bind(named.iter().map(|n| n.platform.as_str()).bind_iter())
            .bind(
                named
                    .iter()
                    .map(|n| n.launch.deployment_id.as_str())
                    .bind_iter(),
            )
            .bind(named.iter().map(|n| n.launch.nonce.as_str()).bind_iter())
            .bind(named.iter().map(|n| n.launch.nonce_expires_at).bind_iter())
            .bind(now)
            .bind(now - LAST_SEEN_RESOLUTION_MICROS)
            .fetch_all(&mut *tx)
            .await?;
        let mut checked = Checked {
            live: vec![false; named.len()],
            fresh: vec![false; named.len()],
        };
        for (i, live, fresh) in rows {
            if let Some(i) = usize::try_from(i).ok().filter(|&i| i < named.len()) {
                checked.live[i] = live;
                checked.fresh[i] = fresh;
            }
        }
        let refusals = decide(named, &checked);
        let accepted: Vec<usize> = (0..named.len())
            .filter(|&i| refusals[i].is_none())
            .collect();
        if accepted.is_empty() {
            tx.commit().await?;
            return Ok(outcome(refusals, Vec::new()));
        }

        let plan = plan(named, &accepted, now);
        let (p, c, r, e, g, l) = (
            &plan.people,
            &plan.contexts,
            &plan.resources,
            &plan.enrollments,
            &plan.grade_targets,
            &plan.launches,
        );
        sqlx::query(WRITE)
            .bind(now)
            .bind(p.iter().map(|x| x.id.as_str()).bind_iter())
            .bind(p.iter().map(|x| x.tenant).bind_iter())
            .bind(p.iter().map(|x| x.platform).bind_iter())
            .bind(p.iter().map(|x| x.user).bind_iter())
            .bind(p.iter().map(|x| x.name).bind_iter())
            .bind(p.iter().map(|x| x.given_name).bind_iter())
            .bind(p.iter().map(|x| x.family_name).bind_iter())
            .bind(p.iter().map(|x| x.email).bind_iter())
            .bind(c.iter().map(|x| x.id.as_str()).bind_iter())
            .bind(c.iter().map(|x| x.tenant).bind_iter())
            .bind(c.iter().map(|x| x.platform).bind_iter())
            .bind(c.iter().map(|x| x.context).bind_iter())
            .bind(c.iter().map(|x| x.title).bind_iter())
            .bind(c.iter().map(|x| x.label).bind_iter())
            .bind(c.iter().map(|x| x.lineitems_url).bind_iter())
            .bind(c.iter().map(|x| x.memberships_url).bind_iter())
            .bind(r.iter().map(|x| x.id.as_str()).bind_iter())
            .bind(r.iter().map(|x| x.tenant).bind_iter())
            .bind(r.iter().map(|x| x.context_id.as_str()).bind_iter())
            .bind(r.iter().map(|x| x.resource).bind_iter())
            .bind(r.iter().map(|x| x.title).bind_iter())
            .bind(e.iter().map(|x| x.tenant).bind_iter())
            .bind(e.iter().map(|x| x.context_id.as_str()).bind_iter())
            .bind(e.iter().map(|x| x.person_id.as_str()).bind_iter())
            .bind(e.iter().map(|x| x.roles.as_str()).bind_iter())
            .bind(g.iter().map(|x| x.id.as_str()).bind_iter())
            .bind(g.iter().map(|x| x.tenant).bind_iter())
            .bind(g.iter().map(|x| x.platform).bind_iter())
            .bind(g.iter().map(|x| x.context_id.as_str()).bind_iter())
            .bind(g.iter().map(|x| x.resource_id.as_deref()).bind_iter())
            .bind(g.iter().map(|x| x.location).bind_iter())
            .bind(g.iter().map(|x| x.label).bind_iter())
            .bind(l.iter().map(|x| x.id.as_str()).bind_iter())
            .bind(l.iter().map(|x| x.tenant).bind_iter())
            .bind(l.iter().map(|x| x.platform).bind_iter())
            .bind(l.iter().map(|x| x.person_id.as_deref()).bind_iter())
            .bind(l.iter().map(|x| x.context_id.as_deref()).bind_iter())
            .bind(l.iter().map(|x| x.resource_id.as_deref()).bind_iter())
            .bind(l.iter().map(|x| x.grade_target_id.as_deref()).bind_iter())
            .bind(l.iter().map(|x| x.message_type).bind_iter())
            .bind(l.iter().map(|x| x.summary.to_string()).bind_iter())
            .bind(l.iter().map(|x| x.code_hash).bind_iter())
            .bind(l.iter().map(|x| x.code_expires).bind_iter())
            .execute(&mut *tx)
            .await?;

        // Last, so each chain head stays locked only for the two statements and COMMIT.
        let heads: Vec<(String, i64, String)> = sqlx::query_as(HEADS)
            .bind(plan.audit.keys().map(String::as_str).bind_iter())
            .bind(
                plan.audit
                    .values()
                    .map(|v| i64::try_from(v.len()).unwrap_or(i64::MAX))
                    .bind_iter(),
            )
            .bind(GENESIS)
            .fetch_all(&mut *tx)
            .await?;
        let heads: BTreeMap<String, (i64, String)> = heads
            .into_iter()
            .map(|(chain, seq, hash)| (chain, (seq, hash)))
            .collect();
        let mut audit_rows = Vec::new();
        let mut head_rows = Vec::new();
        for (chain, entries) in &plan.audit {
            let (seq, hash) = heads
                .get(chain)
                .cloned()
                .ok_or_else(|| StoreError::Corrupt(format!("audit head of {chain}")))?;
            let count = i64::try_from(entries.len()).unwrap_or(i64::MAX);
            head_rows.push(chain_rows(
                chain,
                entries,
                seq - count,
                hash,
                &mut audit_rows,
            ));
        }
        let a = &audit_rows;
        sqlx::query(AUDIT)
            .bind(a.iter().map(|x| x.chain).bind_iter())
            .bind(a.iter().map(|x| x.seq).bind_iter())
            .bind(a.iter().map(|x| x.tenant).bind_iter())
            .bind(a.iter().map(|x| x.at).bind_iter())
            .bind(a.iter().map(|x| x.actor_kind).bind_iter())
            .bind(a.iter().map(|x| x.actor_id).bind_iter())
            .bind(a.iter().map(|x| x.action).bind_iter())
            .bind(a.iter().map(|x| x.subject).bind_iter())
            .bind(a.iter().map(|x| x.detail).bind_iter())
            .bind(a.iter().map(|x| x.prev_hash.as_str()).bind_iter())
            .bind(a.iter().map(|x| x.hash.as_str()).bind_iter())
            .bind(head_rows.iter().map(|h| h.chain).bind_iter())
            .bind(head_rows.iter().map(|h| h.hash.as_str()).bind_iter())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(outcome(refusals, plan.into_recorded()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_audit_text_and_hash_are_the_audit_modules() {
        let (platform, person) = (PlatformId::generate(), PersonId::generate());
        let roles = [Role::Learner, Role::Instructor];
        let detail = serde_json::to_string(&AuditDetail {
            context_id: None,
            deployment_id: "dep \"1\"",
            message_type: "LtiResourceLinkRequest",
            person_id: Some(person),
            platform_id: platform,
            resource_id: None,
            roles: &roles,
        })
        .unwrap();
        let as_value = serde_json::json!({
            "platform_id": platform, "deployment_id": "dep \"1\"",
            "message_type": "LtiResourceLinkRequest", "person_id": Some(person),
            "context_id": None::<ContextId>, "resource_id": None::<ResourceId>, "roles": roles,
        });
        assert_eq!(detail, as_value.to_string());
        for tenant in [Some("t-1"), None] {
            assert_eq!(
                entry_hash(
                    "t-1",
                    7,
                    tenant,
                    123,
                    "system",
                    "lti-launch",
                    "launch.accepted",
                    "launch:x",
                    &detail,
                    GENESIS
                ),
                crate::audit::entry_hash(
                    "t-1",
                    7,
                    tenant,
                    123,
                    "system",
                    "lti-launch",
                    "launch.accepted",
                    "launch:x",
                    &detail,
                    GENESIS
                ),
            );
        }
    }
}
