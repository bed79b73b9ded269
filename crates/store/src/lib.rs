//! Persistence for lmsbridge, on SQLite (the embedded default) and PostgreSQL (scale-out).
//!
//! Every tenant-owned row carries its tenant id, and every query that touches one goes
//! through a [`TenantStore`], which can only be obtained with a [`TenantScope`] the store
//! itself issued (from an API key, a platform registration, or an admin lookup). There is
//! no function that returns tenant rows without a scope, so one tenant cannot read
//! another's data by mistake in a handler.
//!
//! Queries are written once in SQL both dialects accept (`$1` placeholders, `ON CONFLICT`,
//! `RETURNING`) and run against either pool by the `on_db!` macro; where the dialects must
//! differ (claiming work with `FOR UPDATE SKIP LOCKED`) the difference lives next to the query.

#[macro_use]
mod db;
#[macro_use]
pub mod audit;
#[macro_use]
mod webhooks;
mod audit_query;
mod catalog;
pub mod crypto;
mod error;
mod expiry;
pub mod google;
pub mod google_addons;
pub mod keys;
mod launch_batch;
mod launches;
mod line_items;
mod metrics;
mod moodle_events;
mod platforms;
mod registrations;
pub mod rosters;
mod score_batch;
mod score_policy;
mod scores;
mod tenants;
pub mod testing;

pub use audit_query::{AuditFilter, MAX_AUDIT_PAGE};
pub use catalog::{
    CatalogItem, CatalogItemChanges, CatalogItemId, CatalogItemType, NewCatalogItem,
    RESERVED_CUSTOM_PREFIX,
};
pub use db::{Backend, now_micros};
pub use error::StoreError;
pub use keys::{KeyStatus, StoredToolKey};
pub use launch_batch::{BatchOutcome, LAST_SEEN_RESOLUTION_MICROS, LaunchRefusal, LaunchWriter};
pub use launches::{LaunchContext, LaunchPerson, NewLaunch, RecordedLaunch};
pub use line_items::{LineItemContainer, LineItemOrigin, StoredLineItem};
pub use metrics::{LATENCY_BUCKETS_MS, PassbackFigures};
pub use moodle_events::{
    KnownMoodleEnrolment, MoodleBatchOutcome, MoodleEnrolStatus, MoodleEvent, MoodleEventData,
    MoodleEventName, MoodleEventSource, MoodleProgress, MoodleReconcileTarget, MoodleSecret,
    MoodleSite, MoodleSiteId, MoodleSiteKey, PairedMoodleSite, RECONCILED_ENROL, RejectedEvent,
    moodle_context_id, moodle_person_id, moodle_role,
};
pub use platforms::{NewPlatform, PlatformRegistration};
pub use registrations::{InviteSummary, NewDynamicPlatform, RegistrationInvite};
pub use rosters::{
    ClaimedRosterSync, MemberPage, MemberQuery, MemberRecord, QueuedSync, RosterMemberInput,
    RosterPageInput, RosterSource, RosterSync, RosterSyncId, SyncKind, SyncOutcome, SyncState,
};
pub use score_batch::ScoreBatchOutcome;
pub use score_policy::RestampOutcome;
pub use scores::{
    AttemptOutcome, ClaimedScore, EnqueueOutcome, ScoreAttempt, ScoreRecord, ScoreRequest,
};
pub use tenants::{ApiKey, TenantScope};
pub use webhooks::{ClaimedWebhook, WebhookAttempt, WebhookDelivery, WebhookOutcome};

use db::Db;

/// The database handle. Cheap to clone; share one per process.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
}

/// Tenant-scoped access. Every method filters by the scope's tenant.
#[derive(Clone, Debug)]
pub struct TenantStore<'a> {
    db: &'a Db,
    scope: TenantScope,
}

impl Store {
    /// Connects to `sqlite:…` or `postgres://…` and runs pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating (for `lmsbridge migrate` and tests of migration itself).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Ok(Self {
            db: Db::connect(url).await?,
        })
    }

    /// Applies pending migrations for the connected dialect.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.db.migrate().await
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_db!(&self.db, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Scoped access for a tenant the caller has proven access to.
    pub fn tenant(&self, scope: &TenantScope) -> TenantStore<'_> {
        TenantStore {
            db: &self.db,
            scope: scope.clone(),
        }
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        on_db!(&self.db, |pool| pool.close().await);
    }
}

impl TenantStore<'_> {
    /// The tenant this handle is scoped to.
    pub fn scope(&self) -> &TenantScope {
        &self.scope
    }
}
