//! Rosters read by LTI Names and Role Provisioning Services 2.0 (NRPS §2.2, §2.4.1): the
//! state of each sync, the members each page brings, and who a finished full sync no longer
//! saw.
//!
//! A sync is a row in `roster_syncs`, written page by page by whichever instance holds its
//! lease, so progress is visible while it runs and a sync cut short by a restart resumes at
//! the page it was about to read. Only one sync per context may be queued or running (a
//! partial unique index). A full sync stamps each enrolment it sees with its generation; when
//! it finishes, the context's enrolments still on an older generation, and not touched by a
//! launch since the sync started, are marked `deleted`. A differences sync applies only what
//! the platform says changed, `status: Deleted` included. Each write is one transaction with
//! its audit entry, and no transaction is open while the platform is asked for a page.

use crate::audit::{NewAuditEntry, builder_for};
use crate::db::BeginWrite;
use crate::error::StoreError;
use crate::launch_batch::person_id;
use crate::tenants::TenantScope;
use crate::{Store, TenantStore, now_micros};
use domain::{Actor, ContextId, EnrollmentStatus, PersonId, Platform, PlatformId, Role};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use url::Url;
use uuid::Uuid;

/// Rows per multi-row statement: well under SQLite's and PostgreSQL's bind limits whatever
/// page size a platform chooses (Moodle sends a whole roster in one page when not asked
/// for less).
const CHUNK: usize = 500;

/// Identifies one roster sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RosterSyncId(Uuid);

impl RosterSyncId {
    /// A fresh, time-ordered identifier.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for RosterSyncId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for RosterSyncId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Whether a sync reads the whole roster or only the changes since the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncKind {
    /// Every page from the membership URL; members not seen are removed at the end.
    Full,
    /// The platform's `differences` link: only what changed, removals as `Deleted`.
    Differences,
}

impl SyncKind {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Differences => "differences",
        }
    }
}

impl FromStr for SyncKind {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "full" => Ok(Self::Full),
            "differences" => Ok(Self::Differences),
            _ => Err(corrupt("kind")),
        }
    }
}

/// Where a sync is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    Queued,
    Running,
    Done,
    Failed,
}

impl SyncState {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// True once nothing more will happen to the sync.
    pub const fn is_finished(&self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }
}

impl FromStr for SyncState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "queued" => Ok(Self::Queued),
            "running" => Ok(Self::Running),
            "done" => Ok(Self::Done),
            "failed" => Ok(Self::Failed),
            _ => Err(corrupt("state")),
        }
    }
}

/// A roster sync and its progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RosterSync {
    pub id: RosterSyncId,
    pub context_id: ContextId,
    pub kind: SyncKind,
    pub state: SyncState,
    /// The generation a full sync stamps on the enrolments it sees.
    pub generation: i64,
    pub pages_fetched: i64,
    pub members_seen: i64,
    pub added: i64,
    pub updated: i64,
    pub removed: i64,
    /// A stable code for why the sync failed (`token_refused`, `scope_not_granted`, ...).
    pub error_code: Option<String>,
    /// A sentence for the person looking at the failure, safe to show.
    pub error: Option<String>,
    /// The page to read next; `None` once the last page was read.
    pub next_url: Option<Url>,
    /// The platform's `differences` link seen during this sync.
    pub differences_url: Option<Url>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct SyncRow {
    id: String,
    context_id: String,
    kind: String,
    state: String,
    generation: i64,
    next_url: Option<String>,
    differences_url: Option<String>,
    pages_fetched: i64,
    members_seen: i64,
    added: i64,
    updated: i64,
    removed: i64,
    error_code: Option<String>,
    error: Option<String>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    updated_at: i64,
}

const SYNC_COLUMNS: &str = "id, context_id, kind, state, generation, next_url, differences_url, pages_fetched, members_seen, \
    added, updated, removed, error_code, error, created_at, started_at, finished_at, updated_at";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("roster sync {what}"))
}

fn stored_url(s: Option<String>, what: &str) -> Result<Option<Url>, StoreError> {
    s.map(|u| Url::parse(&u).map_err(|_| corrupt(what)))
        .transpose()
}

impl TryFrom<SyncRow> for RosterSync {
    type Error = StoreError;
    fn try_from(r: SyncRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id.parse().map_err(|_| corrupt("id"))?,
            context_id: r.context_id.parse().map_err(|_| corrupt("context id"))?,
            kind: r.kind.parse()?,
            state: r.state.parse()?,
            generation: r.generation,
            next_url: stored_url(r.next_url, "next_url")?,
            differences_url: stored_url(r.differences_url, "differences_url")?,
            pages_fetched: r.pages_fetched,
            members_seen: r.members_seen,
            added: r.added,
            updated: r.updated,
            removed: r.removed,
            error_code: r.error_code,
            error: r.error,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            updated_at: r.updated_at,
        })
    }
}

/// What a context offers for a roster sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterSource {
    pub context_id: ContextId,
    pub platform_id: PlatformId,
    pub platform_context_id: String,
    /// The NRPS `context_memberships_url` from the latest launch that carried one.
    pub memberships_url: Option<Url>,
    /// The `differences` link of the newest finished sync that received one.
    pub differences_url: Option<Url>,
    /// The sync of this context that is queued or running, if any.
    pub active: Option<RosterSync>,
}

/// The outcome of asking for a sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedSync {
    pub sync: RosterSync,
    /// False when a sync of the context was already queued or running; that one is returned.
    pub created: bool,
}

/// A sync whose lease the caller holds, with what is needed to read the platform.
#[derive(Clone, Debug)]
pub struct ClaimedRosterSync {
    pub sync: RosterSync,
    pub platform: Platform,
    pub platform_context_id: String,
    /// The holder of the lease; every write must name it.
    pub owner: String,
}

/// One member as a roster page gives it, normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterMemberInput {
    pub platform_user_id: String,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email: Option<String>,
    pub picture: Option<Url>,
    pub lis_person_sourcedid: Option<String>,
    pub roles: Vec<Role>,
    /// `Deleted` removes the enrolment (a differences page); `Inactive` keeps it, inactive.
    pub status: EnrollmentStatus,
}

/// A page read from the platform.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RosterPageInput {
    pub members: Vec<RosterMemberInput>,
    /// The page after this one.
    pub next_url: Option<Url>,
    pub differences_url: Option<Url>,
}

/// How a sync ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    Done,
    Failed { code: String, message: String },
}

/// A member of a context as lmsbridge knows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberRecord {
    pub person_id: PersonId,
    pub platform_user_id: String,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email: Option<String>,
    pub picture: Option<String>,
    pub lis_person_sourcedid: Option<String>,
    pub roles: Vec<Role>,
    pub status: EnrollmentStatus,
    /// Where the enrolment was first learnt of: `launch` or `nrps`.
    pub source: String,
    pub updated_at: i64,
}

/// Which members to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberQuery {
    /// `None` lists every status.
    pub status: Option<EnrollmentStatus>,
    pub role: Option<Role>,
    /// Continue after this person (the previous page's `next_after`).
    pub after: Option<PersonId>,
    pub limit: u32,
}

/// One page of members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberPage {
    pub members: Vec<MemberRecord>,
    /// Where the next page starts; `None` on the last page.
    pub next_after: Option<PersonId>,
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    person_id: String,
    platform_user_id: String,
    name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    email: Option<String>,
    picture: Option<String>,
    lis_person_sourcedid: Option<String>,
    roles: String,
    status: String,
    source: String,
    updated_at: i64,
}

pub(crate) fn parse_status(s: &str) -> Result<EnrollmentStatus, StoreError> {
    match s {
        "active" => Ok(EnrollmentStatus::Active),
        "inactive" => Ok(EnrollmentStatus::Inactive),
        "deleted" => Ok(EnrollmentStatus::Deleted),
        _ => Err(StoreError::Corrupt("enrollment status".into())),
    }
}

fn parse_roles(s: &str) -> Result<Vec<Role>, StoreError> {
    serde_json::from_str(s).map_err(|_| StoreError::Corrupt("enrollment roles".into()))
}

impl TryFrom<MemberRow> for MemberRecord {
    type Error = StoreError;
    fn try_from(r: MemberRow) -> Result<Self, StoreError> {
        Ok(Self {
            person_id: r
                .person_id
                .parse()
                .map_err(|_| StoreError::Corrupt("person id".into()))?,
            platform_user_id: r.platform_user_id,
            name: r.name,
            given_name: r.given_name,
            family_name: r.family_name,
            email: r.email,
            picture: r.picture,
            lis_person_sourcedid: r.lis_person_sourcedid,
            roles: parse_roles(&r.roles)?,
            status: parse_status(&r.status)?,
            source: r.source,
            updated_at: r.updated_at,
        })
    }
}

/// Keeps the last entry per user id, in first-seen order: one row per person in a
/// multi-row upsert, which may not touch a row twice.
fn last_per_user(members: &[RosterMemberInput]) -> Vec<&RosterMemberInput> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<&RosterMemberInput> = Vec::new();
    for m in members {
        match index.get(m.platform_user_id.as_str()) {
            Some(&i) => out[i] = m,
            None => {
                index.insert(&m.platform_user_id, out.len());
                out.push(m);
            }
        }
    }
    out
}

fn roles_json(roles: &[Role]) -> String {
    serde_json::to_string(roles).unwrap_or_else(|_| "[]".into())
}

fn same_roles(a: &[Role], b: &[Role]) -> bool {
    a.iter().collect::<HashSet<_>>() == b.iter().collect::<HashSet<_>>()
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A context's (platform, platform context id, memberships URL), its newest differences
/// link, and its unfinished sync.
type SourceRows = (
    Option<(String, String, Option<String>)>,
    Option<(String,)>,
    Option<SyncRow>,
);

/// What one page changed, for the counters and the audit entry.
#[derive(Default)]
struct PageChanges {
    added: Vec<String>,
    updated: Vec<String>,
    removed: Vec<String>,
}

impl Store {
    /// Syncs left queued, or running under a lease that expired (the instance running them
    /// stopped), oldest first: the runner resumes them. Across tenants, like claiming scores.
    pub async fn roster_syncs_to_resume(
        &self,
        limit: i64,
    ) -> Result<Vec<(TenantScope, RosterSyncId)>, StoreError> {
        let now = now_micros();
        let rows: Vec<(String, String)> = on_db!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT tenant_id, id FROM roster_syncs \
                 WHERE state = 'queued' OR (state = 'running' AND (lease_until IS NULL OR lease_until < $1)) \
                 ORDER BY created_at LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(tenant, id)| {
                Ok((
                    TenantScope::new(tenant.parse().map_err(|_| corrupt("tenant id"))?),
                    id.parse().map_err(|_| corrupt("id"))?,
                ))
            })
            .collect()
    }
}

impl TenantStore<'_> {
    /// What a context offers for a sync: its membership URL, the differences link kept from
    /// the last sync, and the sync already under way. `NotFound` for another tenant's context.
    pub async fn roster_source(&self, context: ContextId) -> Result<RosterSource, StoreError> {
        let tenant_s = self.scope.tenant_id().to_string();
        let context_s = context.to_string();
        let (row, differences, active): SourceRows = on_db!(self.db, |pool| {
            let row = sqlx::query_as(
                "SELECT platform_id, platform_context_id, memberships_url FROM contexts WHERE id = $1 AND tenant_id = $2",
            )
            .bind(&context_s)
            .bind(&tenant_s)
            .fetch_optional(pool)
            .await?;
            let differences = sqlx::query_as(
                "SELECT differences_url FROM roster_syncs WHERE context_id = $1 AND tenant_id = $2 \
                 AND state = 'done' AND differences_url IS NOT NULL ORDER BY finished_at DESC LIMIT 1",
            )
            .bind(&context_s)
            .bind(&tenant_s)
            .fetch_optional(pool)
            .await?;
            let active = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {SYNC_COLUMNS} FROM roster_syncs WHERE context_id = $1 AND tenant_id = $2 \
                 AND state IN ('queued', 'running')"
            )))
            .bind(&context_s)
            .bind(&tenant_s)
            .fetch_optional(pool)
            .await?;
            (row, differences, active)
        });
        let (platform, platform_context_id, memberships) = row.ok_or(StoreError::NotFound)?;
        Ok(RosterSource {
            context_id: context,
            platform_id: platform
                .parse()
                .map_err(|_| StoreError::Corrupt("context platform id".into()))?,
            platform_context_id,
            // A launch stores the claim's URL as sent; one that does not parse is no service.
            memberships_url: memberships.and_then(|u| Url::parse(&u).ok()),
            differences_url: differences.and_then(|(u,)| Url::parse(&u).ok()),
            active: active.map(RosterSync::try_from).transpose()?,
        })
    }

    /// Queues a sync of `context` that starts reading at `first_page`, with its audit entry.
    /// When one is already queued or running, that one is returned instead (`created:
    /// false`): one sync per context at a time.
    pub async fn queue_roster_sync(
        &self,
        context: ContextId,
        kind: SyncKind,
        first_page: &Url,
        actor: &Actor,
    ) -> Result<QueuedSync, StoreError> {
        let tenant = self.scope.tenant_id();
        let tenant_s = tenant.to_string();
        let context_s = context.to_string();
        let now = now_micros();
        let id = RosterSyncId::generate();
        let attempt: Result<QueuedSync, StoreError> = async {
            Ok(on_db!(self.db, |pool| {
                let mut tx = pool.begin_write().await?;
                let known: Option<(String,)> =
                    sqlx::query_as("SELECT id FROM contexts WHERE id = $1 AND tenant_id = $2")
                        .bind(&context_s)
                        .bind(&tenant_s)
                        .fetch_optional(&mut *tx)
                        .await?;
                if known.is_none() {
                    return Err(StoreError::NotFound);
                }
                let active: Option<SyncRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {SYNC_COLUMNS} FROM roster_syncs WHERE context_id = $1 AND tenant_id = $2 \
                     AND state IN ('queued', 'running')"
                )))
                .bind(&context_s)
                .bind(&tenant_s)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = active {
                    tx.rollback().await?;
                    QueuedSync {
                        sync: row.try_into()?,
                        created: false,
                    }
                } else {
                    let (latest,): (Option<i64>,) = sqlx::query_as(
                        "SELECT MAX(generation) FROM roster_syncs WHERE context_id = $1 AND tenant_id = $2",
                    )
                    .bind(&context_s)
                    .bind(&tenant_s)
                    .fetch_one(&mut *tx)
                    .await?;
                    // A full sync needs a generation no enrolment carries yet; a differences
                    // sync keeps the current one.
                    let generation = match kind {
                        SyncKind::Full => latest.unwrap_or(0) + 1,
                        SyncKind::Differences => latest.unwrap_or(0),
                    };
                    sqlx::query(
                        "INSERT INTO roster_syncs (id, tenant_id, context_id, kind, state, generation, next_url, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $7)",
                    )
                    .bind(id.to_string())
                    .bind(&tenant_s)
                    .bind(&context_s)
                    .bind(kind.as_str())
                    .bind(generation)
                    .bind(first_page.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let audit = NewAuditEntry::tenant(
                        tenant,
                        actor.clone(),
                        "roster_sync.queued",
                        format!("roster_sync:{id}"),
                        serde_json::json!({
                            "context_id": context, "kind": kind, "generation": generation,
                        }),
                    );
                    audit_append!(tx, &audit);
                    tx.commit().await?;
                    QueuedSync {
                        sync: RosterSync {
                            id,
                            context_id: context,
                            kind,
                            state: SyncState::Queued,
                            generation,
                            pages_fetched: 0,
                            members_seen: 0,
                            added: 0,
                            updated: 0,
                            removed: 0,
                            error_code: None,
                            error: None,
                            next_url: Some(first_page.clone()),
                            differences_url: None,
                            created_at: now,
                            started_at: None,
                            finished_at: None,
                            updated_at: now,
                        },
                        created: true,
                    }
                }
            }))
        }
        .await;
        match attempt {
            // Another instance queued one between our check and insert (PostgreSQL): the
            // partial unique index refused ours, so theirs is the sync.
            Err(e) if e.is_unique_violation() => {
                let source = self.roster_source(context).await?;
                source
                    .active
                    .map(|sync| QueuedSync {
                        sync,
                        created: false,
                    })
                    .ok_or(StoreError::Conflict(
                        "a roster sync of this context just finished",
                    ))
            }
            other => other,
        }
    }

    /// One sync of this tenant.
    pub async fn roster_sync(&self, id: RosterSyncId) -> Result<Option<RosterSync>, StoreError> {
        let row: Option<SyncRow> = on_db!(self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {SYNC_COLUMNS} FROM roster_syncs WHERE id = $1 AND tenant_id = $2"
            )))
            .bind(id.to_string())
            .bind(self.scope.tenant_id().to_string())
            .fetch_optional(pool)
            .await?
        });
        row.map(RosterSync::try_from).transpose()
    }

    /// Takes the lease on a queued sync, or on a running one whose lease expired (resuming
    /// it where it stopped). `None` when it is finished or another runner holds it.
    pub async fn claim_roster_sync(
        &self,
        id: RosterSyncId,
        owner: &str,
        lease_until: i64,
    ) -> Result<Option<ClaimedRosterSync>, StoreError> {
        let tenant = self.scope.tenant_id();
        let tenant_s = tenant.to_string();
        let now = now_micros();
        let claimed: Option<(SyncRow, String, String)> = on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let row: Option<SyncRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE roster_syncs SET state = 'running', lease_owner = $1, lease_until = $2, \
                   started_at = COALESCE(started_at, $3), updated_at = $3 \
                 WHERE id = $4 AND tenant_id = $5 \
                   AND (state = 'queued' OR (state = 'running' AND (lease_until IS NULL OR lease_until < $3))) \
                 RETURNING {SYNC_COLUMNS}"
            )))
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .bind(id.to_string())
            .bind(&tenant_s)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                None => {
                    tx.rollback().await?;
                    None
                }
                Some(row) => {
                    let (platform, platform_context_id): (String, String) = sqlx::query_as(
                        "SELECT platform_id, platform_context_id FROM contexts WHERE id = $1 AND tenant_id = $2",
                    )
                    .bind(&row.context_id)
                    .bind(&tenant_s)
                    .fetch_one(&mut *tx)
                    .await?;
                    let audit = NewAuditEntry::tenant(
                        tenant,
                        Actor::system("roster-sync"),
                        if row.pages_fetched > 0 {
                            "roster_sync.resumed"
                        } else {
                            "roster_sync.started"
                        },
                        format!("roster_sync:{id}"),
                        serde_json::json!({"runner": owner, "pages_fetched": row.pages_fetched}),
                    );
                    audit_append!(tx, &audit);
                    tx.commit().await?;
                    Some((row, platform, platform_context_id))
                }
            }
        });
        let Some((row, platform, platform_context_id)) = claimed else {
            return Ok(None);
        };
        let platform: PlatformId = platform
            .parse()
            .map_err(|_| StoreError::Corrupt("context platform id".into()))?;
        Ok(Some(ClaimedRosterSync {
            sync: row.try_into()?,
            platform: self.platform(platform).await?,
            platform_context_id,
            owner: owner.to_owned(),
        }))
    }

    /// Applies one page the lease holder read: upserts people and enrolments (stamped with
    /// the sync's generation), removes enrolments the page marks `Deleted`, advances the
    /// sync to the next page, extends the lease, and audits it, in one transaction. `None`
    /// (and nothing written) when the caller no longer holds the lease.
    pub async fn record_roster_page(
        &self,
        claim: &ClaimedRosterSync,
        page: &RosterPageInput,
        lease_until: i64,
    ) -> Result<Option<RosterSync>, StoreError> {
        let tenant = self.scope.tenant_id();
        let tenant_s = tenant.to_string();
        let id_s = claim.sync.id.to_string();
        let platform = claim.platform.id;
        let platform_s = platform.to_string();
        let now = now_micros();
        let members = last_per_user(&page.members);
        let (present, gone): (Vec<&RosterMemberInput>, Vec<&RosterMemberInput>) = members
            .into_iter()
            .partition(|m| m.status != EnrollmentStatus::Deleted);
        let seen = i64::try_from(page.members.len()).unwrap_or(i64::MAX);
        let mut changes = PageChanges::default();
        let row: Option<SyncRow> = on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            // The lease first: it also locks the sync row until commit.
            let held: Option<(String, i64)> = sqlx::query_as(
                "UPDATE roster_syncs SET lease_until = $1, updated_at = $2 \
                 WHERE id = $3 AND tenant_id = $4 AND state = 'running' AND lease_owner = $5 \
                 RETURNING context_id, generation",
            )
            .bind(lease_until)
            .bind(now)
            .bind(&id_s)
            .bind(&tenant_s)
            .bind(&claim.owner)
            .fetch_optional(&mut *tx)
            .await?;
            match held {
                None => {
                    tx.rollback().await?;
                    None
                }
                Some((context_s, generation)) => {
                    // People: upserted as a launch would, under the same derived ids; the
                    // ids are read back since a row may predate derived ids.
                    let mut ids: HashMap<String, String> = HashMap::new();
                    for chunk in present.chunks(CHUNK) {
                        let mut q = builder_for(
                            &tx,
                            "INSERT INTO people (id, tenant_id, platform_id, platform_user_id, name, given_name, family_name, email, picture, lis_person_sourcedid, created_at, updated_at) ",
                        );
                        q.push_values(chunk, |mut b, m| {
                            b.push_bind(person_id(platform, &m.platform_user_id).to_string())
                                .push_bind(&tenant_s)
                                .push_bind(&platform_s)
                                .push_bind(&m.platform_user_id)
                                .push_bind(&m.name)
                                .push_bind(&m.given_name)
                                .push_bind(&m.family_name)
                                .push_bind(&m.email)
                                .push_bind(m.picture.as_ref().map(Url::as_str))
                                .push_bind(&m.lis_person_sourcedid)
                                .push_bind(now)
                                .push_bind(now);
                        });
                        q.push(" ON CONFLICT (platform_id, platform_user_id) DO UPDATE SET \
                            name = COALESCE(excluded.name, people.name), given_name = COALESCE(excluded.given_name, people.given_name), \
                            family_name = COALESCE(excluded.family_name, people.family_name), email = COALESCE(excluded.email, people.email), \
                            picture = COALESCE(excluded.picture, people.picture), \
                            lis_person_sourcedid = COALESCE(excluded.lis_person_sourcedid, people.lis_person_sourcedid), \
                            updated_at = excluded.updated_at WHERE people.tenant_id = excluded.tenant_id \
                            RETURNING platform_user_id, id");
                        ids.extend(
                            q.build_query_as::<(String, String)>()
                                .fetch_all(&mut *tx)
                                .await?,
                        );
                    }
                    for chunk in gone.chunks(CHUNK) {
                        let mut q = builder_for(
                            &tx,
                            "SELECT platform_user_id, id FROM people WHERE tenant_id = ",
                        );
                        q.push_bind(&tenant_s);
                        q.push(" AND platform_id = ");
                        q.push_bind(&platform_s);
                        q.push(" AND platform_user_id IN (");
                        {
                            let mut sep = q.separated(", ");
                            for m in chunk {
                                sep.push_bind(&m.platform_user_id);
                            }
                        }
                        q.push(")");
                        ids.extend(
                            q.build_query_as::<(String, String)>()
                                .fetch_all(&mut *tx)
                                .await?,
                        );
                    }

                    // What the context's enrolments of these people were before this page.
                    let person_ids: Vec<&String> = ids.values().collect();
                    let mut before: HashMap<String, (String, String, i64)> = HashMap::new();
                    for chunk in person_ids.chunks(CHUNK) {
                        let mut q = builder_for(
                            &tx,
                            "SELECT person_id, roles, status, updated_at FROM enrollments WHERE tenant_id = ",
                        );
                        q.push_bind(&tenant_s);
                        q.push(" AND context_id = ");
                        q.push_bind(&context_s);
                        q.push(" AND person_id IN (");
                        {
                            let mut sep = q.separated(", ");
                            for p in chunk {
                                sep.push_bind(*p);
                            }
                        }
                        q.push(")");
                        for (person, roles, status, updated) in q
                            .build_query_as::<(String, String, String, i64)>()
                            .fetch_all(&mut *tx)
                            .await?
                        {
                            before.insert(person, (roles, status, updated));
                        }
                    }

                    // Enrolments of the members present: a row that did not change keeps its
                    // updated_at, so "updated" means a change of roles or status.
                    let mut rows = Vec::with_capacity(present.len());
                    for m in &present {
                        let Some(person) = ids.get(&m.platform_user_id) else {
                            // The person row belongs to another tenant's registration of
                            // the same platform: not ours to enrol.
                            continue;
                        };
                        let status = m.status.as_str();
                        let stamp = match before.get(person) {
                            None => {
                                changes.added.push(m.platform_user_id.clone());
                                now
                            }
                            Some((_, old, _)) if old == "deleted" => {
                                changes.added.push(m.platform_user_id.clone());
                                now
                            }
                            Some((roles, old, updated)) => {
                                let unchanged = old == status
                                    && parse_roles(roles).is_ok_and(|r| same_roles(&r, &m.roles));
                                if unchanged {
                                    *updated
                                } else {
                                    changes.updated.push(m.platform_user_id.clone());
                                    now
                                }
                            }
                        };
                        rows.push((person.clone(), roles_json(&m.roles), status, stamp));
                    }
                    for chunk in rows.chunks(CHUNK) {
                        let mut q = builder_for(
                            &tx,
                            "INSERT INTO enrollments (tenant_id, context_id, person_id, roles, status, source, sync_generation, updated_at) ",
                        );
                        q.push_values(chunk, |mut b, (person, roles, status, stamp)| {
                            b.push_bind(&tenant_s)
                                .push_bind(&context_s)
                                .push_bind(person)
                                .push_bind(roles)
                                .push_bind(*status)
                                .push_bind("nrps")
                                .push_bind(generation)
                                .push_bind(*stamp);
                        });
                        q.push(" ON CONFLICT (context_id, person_id) DO UPDATE SET roles = excluded.roles, status = excluded.status, \
                            sync_generation = excluded.sync_generation, updated_at = excluded.updated_at \
                            WHERE enrollments.tenant_id = excluded.tenant_id");
                        q.build().execute(&mut *tx).await?;
                    }

                    // Members the page says left.
                    let gone_people: Vec<(&String, &String)> = gone
                        .iter()
                        .filter_map(|m| {
                            ids.get(&m.platform_user_id)
                                .map(|p| (p, &m.platform_user_id))
                        })
                        .collect();
                    for chunk in gone_people.chunks(CHUNK) {
                        let mut q = builder_for(
                            &tx,
                            "UPDATE enrollments SET status = 'deleted', sync_generation = ",
                        );
                        q.push_bind(generation);
                        q.push(", updated_at = ");
                        q.push_bind(now);
                        q.push(" WHERE tenant_id = ");
                        q.push_bind(&tenant_s);
                        q.push(" AND context_id = ");
                        q.push_bind(&context_s);
                        q.push(" AND status <> 'deleted' AND person_id IN (");
                        {
                            let mut sep = q.separated(", ");
                            for (p, _) in chunk {
                                sep.push_bind(*p);
                            }
                        }
                        q.push(") RETURNING person_id");
                        let removed: HashSet<String> = q
                            .build_query_as::<(String,)>()
                            .fetch_all(&mut *tx)
                            .await?
                            .into_iter()
                            .map(|(p,)| p)
                            .collect();
                        changes.removed.extend(
                            chunk
                                .iter()
                                .filter(|(p, _)| removed.contains(*p))
                                .map(|(_, u)| (*u).clone()),
                        );
                    }

                    let row: SyncRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "UPDATE roster_syncs SET pages_fetched = pages_fetched + 1, members_seen = members_seen + $1, \
                           added = added + $2, updated = updated + $3, removed = removed + $4, next_url = $5, \
                           differences_url = COALESCE($6, differences_url) \
                         WHERE id = $7 AND tenant_id = $8 RETURNING {SYNC_COLUMNS}"
                    )))
                    .bind(seen)
                    .bind(i64::try_from(changes.added.len()).unwrap_or(i64::MAX))
                    .bind(i64::try_from(changes.updated.len()).unwrap_or(i64::MAX))
                    .bind(i64::try_from(changes.removed.len()).unwrap_or(i64::MAX))
                    .bind(page.next_url.as_ref().map(Url::as_str))
                    .bind(page.differences_url.as_ref().map(Url::as_str))
                    .bind(&id_s)
                    .bind(&tenant_s)
                    .fetch_one(&mut *tx)
                    .await?;
                    let audit = NewAuditEntry::tenant(
                        tenant,
                        Actor::system("roster-sync"),
                        "roster_sync.page",
                        format!("roster_sync:{}", claim.sync.id),
                        serde_json::json!({
                            "context_id": context_s, "page": row.pages_fetched, "members": seen,
                            "added": changes.added, "updated": changes.updated, "removed": changes.removed,
                        }),
                    );
                    audit_append!(tx, &audit);
                    tx.commit().await?;
                    Some(row)
                }
            }
        });
        row.map(RosterSync::try_from).transpose()
    }

    /// Ends a sync the caller holds. A full sync that is done marks the context's enrolments
    /// it did not see (older generation, not touched since the sync started) as deleted.
    /// `None` (and nothing written) when the caller no longer holds the lease.
    pub async fn finish_roster_sync(
        &self,
        claim: &ClaimedRosterSync,
        outcome: &SyncOutcome,
    ) -> Result<Option<RosterSync>, StoreError> {
        let tenant = self.scope.tenant_id();
        let tenant_s = tenant.to_string();
        let id_s = claim.sync.id.to_string();
        let now = now_micros();
        let (state, code, message) = match outcome {
            SyncOutcome::Done => (SyncState::Done, None, None),
            SyncOutcome::Failed { code, message } => (
                SyncState::Failed,
                Some(code.as_str()),
                Some(message.as_str()),
            ),
        };
        let row: Option<SyncRow> = on_db!(self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let held: Option<(String, String, i64, Option<i64>)> = sqlx::query_as(
                "UPDATE roster_syncs SET state = $1, error_code = $2, error = $3, finished_at = $4, updated_at = $4, \
                   lease_owner = NULL, lease_until = NULL \
                 WHERE id = $5 AND tenant_id = $6 AND state = 'running' AND lease_owner = $7 \
                 RETURNING context_id, kind, generation, started_at",
            )
            .bind(state.as_str())
            .bind(code)
            .bind(message)
            .bind(now)
            .bind(&id_s)
            .bind(&tenant_s)
            .bind(&claim.owner)
            .fetch_optional(&mut *tx)
            .await?;
            match held {
                None => {
                    tx.rollback().await?;
                    None
                }
                Some((context_s, kind, generation, started_at)) => {
                    let mut removed: Vec<String> = Vec::new();
                    if state == SyncState::Done && kind == SyncKind::Full.as_str() {
                        let started = started_at.unwrap_or(now);
                        let people: Vec<(String,)> = sqlx::query_as(
                            "UPDATE enrollments SET status = 'deleted', updated_at = $1 \
                             WHERE tenant_id = $2 AND context_id = $3 AND sync_generation < $4 \
                               AND status <> 'deleted' AND updated_at < $5 \
                             RETURNING person_id",
                        )
                        .bind(now)
                        .bind(&tenant_s)
                        .bind(&context_s)
                        .bind(generation)
                        .bind(started)
                        .fetch_all(&mut *tx)
                        .await?;
                        for chunk in people.chunks(CHUNK) {
                            let mut q = builder_for(
                                &tx,
                                "SELECT platform_user_id FROM people WHERE tenant_id = ",
                            );
                            q.push_bind(&tenant_s);
                            q.push(" AND id IN (");
                            {
                                let mut sep = q.separated(", ");
                                for (p,) in chunk {
                                    sep.push_bind(p);
                                }
                            }
                            q.push(") ORDER BY platform_user_id");
                            removed.extend(
                                q.build_query_as::<(String,)>()
                                    .fetch_all(&mut *tx)
                                    .await?
                                    .into_iter()
                                    .map(|(u,)| u),
                            );
                        }
                    }
                    let row: SyncRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "UPDATE roster_syncs SET removed = removed + $1, \
                           next_url = CASE WHEN state = 'done' THEN NULL ELSE next_url END \
                         WHERE id = $2 AND tenant_id = $3 RETURNING {SYNC_COLUMNS}"
                    )))
                    .bind(i64::try_from(removed.len()).unwrap_or(i64::MAX))
                    .bind(&id_s)
                    .bind(&tenant_s)
                    .fetch_one(&mut *tx)
                    .await?;
                    let audit = NewAuditEntry::tenant(
                        tenant,
                        Actor::system("roster-sync"),
                        match state {
                            SyncState::Done => "roster_sync.done",
                            _ => "roster_sync.failed",
                        },
                        format!("roster_sync:{}", claim.sync.id),
                        serde_json::json!({
                            "context_id": context_s, "pages_fetched": row.pages_fetched,
                            "members_seen": row.members_seen, "added": row.added, "updated": row.updated,
                            "removed": row.removed, "removed_as_unseen": removed,
                            "error_code": code, "error": message,
                        }),
                    );
                    audit_append!(tx, &audit);
                    tx.commit().await?;
                    Some(row)
                }
            }
        });
        row.map(RosterSync::try_from).transpose()
    }

    /// Members of one of this tenant's contexts, ordered by person id, one page at a time.
    /// `NotFound` for a context that is not this tenant's.
    pub async fn list_members(
        &self,
        context: ContextId,
        query: &MemberQuery,
    ) -> Result<MemberPage, StoreError> {
        let tenant_s = self.scope.tenant_id().to_string();
        let context_s = context.to_string();
        let limit = i64::from(query.limit.clamp(1, 1000));
        let status = query.status.map_or("", |s| s.as_str());
        let after = query.after.map(|p| p.to_string()).unwrap_or_default();
        // Roles are stored as a JSON array; the pattern narrows in SQL, the exact check
        // below decides.
        let role_pattern = match &query.role {
            None => String::new(),
            Some(role) => {
                let encoded =
                    serde_json::to_string(&role).map_err(|_| StoreError::Invalid("role".into()))?;
                let inner = match role {
                    Role::Other(uri) => serde_json::to_string(uri)
                        .map_err(|_| StoreError::Invalid("role".into()))?,
                    _ => encoded,
                };
                format!("%{}%", like_escape(&inner))
            }
        };
        let (known, rows): (Option<(String,)>, Vec<MemberRow>) = on_db!(self.db, |pool| {
            let known = sqlx::query_as("SELECT id FROM contexts WHERE id = $1 AND tenant_id = $2")
                .bind(&context_s)
                .bind(&tenant_s)
                .fetch_optional(pool)
                .await?;
            let rows = sqlx::query_as(
                "SELECT e.person_id, p.platform_user_id, p.name, p.given_name, p.family_name, p.email, p.picture, \
                   p.lis_person_sourcedid, e.roles, e.status, e.source, e.updated_at \
                 FROM enrollments e JOIN people p ON p.id = e.person_id AND p.tenant_id = e.tenant_id \
                 WHERE e.tenant_id = $1 AND e.context_id = $2 AND ($3 = '' OR e.status = $3) \
                   AND e.person_id > $4 AND ($5 = '' OR e.roles LIKE $5 ESCAPE '\\') \
                 ORDER BY e.person_id LIMIT $6",
            )
            .bind(&tenant_s)
            .bind(&context_s)
            .bind(status)
            .bind(&after)
            .bind(&role_pattern)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            (known, rows)
        });
        if known.is_none() {
            return Err(StoreError::NotFound);
        }
        let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) == limit;
        let last = rows.last().map(|r| r.person_id.clone());
        let mut members = Vec::with_capacity(rows.len());
        for row in rows {
            let m = MemberRecord::try_from(row)?;
            if query.role.as_ref().is_none_or(|r| m.roles.contains(r)) {
                members.push(m);
            }
        }
        let next_after = match (full, last) {
            (true, Some(p)) => Some(
                p.parse()
                    .map_err(|_| StoreError::Corrupt("person id".into()))?,
            ),
            _ => None,
        };
        Ok(MemberPage {
            members,
            next_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(like_escape(r"a_b%c\d"), r"a\_b\%c\\d");
    }

    #[test]
    fn the_last_entry_per_user_wins_in_first_seen_order() {
        let m = |id: &str, name: &str| RosterMemberInput {
            platform_user_id: id.into(),
            name: Some(name.into()),
            given_name: None,
            family_name: None,
            email: None,
            picture: None,
            lis_person_sourcedid: None,
            roles: vec![],
            status: EnrollmentStatus::Active,
        };
        let all = [m("a", "1"), m("b", "2"), m("a", "3")];
        let kept: Vec<(&str, &str)> = last_per_user(&all)
            .iter()
            .map(|m| (m.platform_user_id.as_str(), m.name.as_deref().unwrap()))
            .collect();
        assert_eq!(kept, [("a", "3"), ("b", "2")]);
    }

    #[test]
    fn roles_compare_as_sets() {
        assert!(same_roles(
            &[Role::Learner, Role::Mentor],
            &[Role::Mentor, Role::Learner]
        ));
        assert!(!same_roles(&[Role::Learner], &[Role::Instructor]));
    }
}
