//! Roster sync in the background, by LTI Names and Role Provisioning Services 2.0
//! (NRPS §2.2 membership container, §2.4 `next` pages, §2.4.1 `differences`).
//!
//! A sync is queued by the product API and run here: the runner takes the sync's lease,
//! reads one page from the platform with no transaction open, records it (people,
//! enrolments, progress, audit) in one transaction, and goes on to the next page. Progress
//! is in the database after every page, so the API shows it while the sync runs, and a
//! sync cut short by a restart or a crash is resumed, at the page it was about to read, by
//! whichever instance next finds its lease expired. Every sync is bounded: a page cap, a
//! timeout per page and per sync, a few retries of temporary failures. A failure is
//! recorded with a stable code and a sentence that says who must act.

use adapters::{SigningKeySource, lti_roles};
use domain::EnrollmentStatus;
use lti::nrps::{MemberStatus, MembershipPage, NrpsClient, NrpsError, PageWalk};
use lti::token::{TokenClient, TokenEndpoint};
use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{
    ClaimedRosterSync, RosterMemberInput, RosterPageInput, RosterSyncId, Store, StoreError,
    SyncOutcome, TenantScope, TenantStore, now_micros,
};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

/// Limits every sync runs within.
#[derive(Debug, Clone)]
pub struct RosterSyncConfig {
    /// Pages one sync may read, resumed runs included.
    pub max_pages: usize,
    /// How long one sync may take from its first page to its last.
    pub timeout: Duration,
    /// How long one page request may take.
    pub page_timeout: Duration,
    /// Attempts after the first for a page that failed temporarily (5xx, 429, no answer).
    pub retries: u32,
    /// The longest wait between attempts, whatever `Retry-After` asks.
    pub max_backoff: Duration,
    /// How long a runner's claim on a sync lasts without progress; another instance resumes
    /// it after that. Longer than a page with all its retries.
    pub lease: Duration,
    /// Syncs this instance runs at once; more wait their turn.
    pub concurrency: usize,
    /// The page size asked of the platform (`limit`); `None` leaves it to the platform.
    pub page_limit: Option<NonZeroU32>,
}

impl Default for RosterSyncConfig {
    fn default() -> Self {
        Self {
            max_pages: 1000,
            timeout: Duration::from_secs(15 * 60),
            page_timeout: Duration::from_secs(60),
            retries: 3,
            max_backoff: Duration::from_secs(30),
            lease: Duration::from_secs(10 * 60),
            concurrency: 4,
            page_limit: None,
        }
    }
}

/// The runner. Cheap to clone.
#[derive(Clone)]
pub struct RosterSyncs(Arc<Inner>);

struct Inner {
    store: Store,
    client: NrpsClient,
    keys: Arc<dyn SigningKeySource>,
    config: RosterSyncConfig,
    /// Names this instance's leases.
    owner: String,
    permits: Semaphore,
    /// Syncs this instance is running or about to run.
    running: Mutex<HashSet<RosterSyncId>>,
    stopping: watch::Sender<bool>,
    /// Reads Google Classroom rosters (students, then teachers, by `nextPageToken`).
    classroom: std::sync::OnceLock<Arc<adapters::ClassroomAdapter>>,
}

impl std::fmt::Debug for RosterSyncs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RosterSyncs")
            .field("owner", &self.0.owner)
            .field("config", &self.0.config)
            .finish_non_exhaustive()
    }
}

/// Why a run stopped before the sync was done.
enum Stop {
    /// The sync failed; recorded as such.
    Failed { code: &'static str, message: String },
    /// Another runner holds the sync now; it goes on from there.
    LeaseLost,
    /// This instance is shutting down; the lease runs out and the sync is resumed later.
    ShuttingDown,
    /// The database failed; the sync is marked failed if it still can be.
    Store(StoreError),
}

impl From<NrpsError> for Stop {
    fn from(e: NrpsError) -> Self {
        Self::Failed {
            code: e.code(),
            message: safe_message(&e.to_string()),
        }
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// The longest failure sentence kept; the platform's own words are cut to fit.
const MESSAGE_LIMIT: usize = 500;

/// A failure sentence fit to show: printable characters only, bounded.
fn safe_message(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MESSAGE_LIMIT)
        .collect()
}

impl RosterSyncs {
    pub fn new(
        store: Store,
        http: reqwest::Client,
        keys: Arc<dyn SigningKeySource>,
        config: RosterSyncConfig,
    ) -> Self {
        let owner = format!("roster-{}", uuid::Uuid::new_v4().simple());
        Self(Arc::new(Inner {
            client: NrpsClient::new(http.clone(), TokenClient::new(http)),
            permits: Semaphore::new(config.concurrency.max(1)),
            store,
            keys,
            config,
            owner,
            running: Mutex::default(),
            stopping: watch::Sender::new(false),
            classroom: std::sync::OnceLock::new(),
        }))
    }

    /// Syncs of Google Classroom courses go through this adapter.
    #[must_use]
    pub fn with_classroom(self, adapter: Arc<adapters::ClassroomAdapter>) -> Self {
        let _ = self.0.classroom.set(adapter);
        self
    }

    pub fn config(&self) -> &RosterSyncConfig {
        &self.0.config
    }

    /// The NRPS client, whose token cache tests inspect.
    pub fn client(&self) -> &NrpsClient {
        &self.0.client
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<RosterSyncId>> {
        self.0.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a queued sync in the background, unless this instance already does.
    pub fn start(&self, scope: TenantScope, id: RosterSyncId) {
        if *self.0.stopping.borrow() || !self.running().insert(id) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            // Removes the id however the task ends, a panic included.
            struct Done(RosterSyncs, RosterSyncId);
            impl Drop for Done {
                fn drop(&mut self) {
                    self.0.running().remove(&self.1);
                }
            }
            let _done = Done(this.clone(), id);
            let Ok(_permit) = this.0.permits.acquire().await else {
                return;
            };
            this.run(&scope, id).await;
        });
    }

    /// Starts the syncs left queued, or running under a lease that expired (an instance
    /// stopped mid-sync). Returns how many were found.
    pub async fn resume_abandoned(&self) -> Result<usize, StoreError> {
        let due = self.0.store.roster_syncs_to_resume(50).await?;
        let n = due.len();
        for (scope, id) in due {
            self.start(scope, id);
        }
        Ok(n)
    }

    /// Stops taking up pages: runs end after the page in hand, their leases run out, and
    /// another start resumes them.
    pub fn stop(&self) {
        self.0.stopping.send_replace(true);
    }

    async fn run(&self, scope: &TenantScope, id: RosterSyncId) {
        let tenant = self.0.store.tenant(scope);
        let claim = match tenant
            .claim_roster_sync(id, &self.0.owner, self.lease_until())
            .await
        {
            Ok(Some(c)) => c,
            // Finished, or another runner has it.
            Ok(None) => return,
            Err(e) => {
                tracing::error!(sync = %id, error = %e, "could not claim a roster sync");
                return;
            }
        };
        tracing::info!(sync = %id, context = %claim.sync.context_id, kind = claim.sync.kind.as_str(),
            pages_done = claim.sync.pages_fetched, "roster sync running");
        let outcome = match self.read_pages(&tenant, &claim).await {
            Ok(()) => SyncOutcome::Done,
            Err(Stop::Failed { code, message }) => SyncOutcome::Failed {
                code: code.to_owned(),
                message,
            },
            Err(Stop::LeaseLost) => {
                tracing::info!(sync = %id, "roster sync taken over by another runner");
                return;
            }
            Err(Stop::ShuttingDown) => {
                tracing::info!(sync = %id, "roster sync paused for shutdown; it resumes after");
                return;
            }
            Err(Stop::Store(e)) => {
                tracing::error!(sync = %id, error = %e, "roster sync could not record a page");
                SyncOutcome::Failed {
                    code: "internal".into(),
                    message: "lmsbridge could not record the roster; see its log".into(),
                }
            }
        };
        match tenant.finish_roster_sync(&claim, &outcome).await {
            Ok(Some(sync)) => match outcome {
                SyncOutcome::Done => tracing::info!(sync = %id, pages = sync.pages_fetched,
                    members = sync.members_seen, added = sync.added, updated = sync.updated,
                    removed = sync.removed, "roster sync done"),
                SyncOutcome::Failed { code, .. } => {
                    tracing::warn!(sync = %id, code, pages = sync.pages_fetched, "roster sync failed")
                }
            },
            Ok(None) => tracing::info!(sync = %id, "roster sync taken over before it finished"),
            Err(e) => {
                tracing::error!(sync = %id, error = %e, "could not record the end of a roster sync")
            }
        }
    }

    fn lease_until(&self) -> i64 {
        let lease = i64::try_from(self.0.config.lease.as_micros()).unwrap_or(i64::MAX);
        now_micros().saturating_add(lease)
    }

    async fn read_pages(
        &self,
        tenant: &TenantStore<'_>,
        claim: &ClaimedRosterSync,
    ) -> Result<(), Stop> {
        let config = &self.0.config;
        let deadline = Instant::now() + config.timeout;
        let platform = &claim.platform;
        if platform.kind == domain::PlatformKind::GoogleClassroom {
            return self.read_classroom_pages(tenant, claim, deadline).await;
        }
        if !platform.kind.speaks_lti() {
            return Err(Stop::Failed {
                code: "not_lti",
                message: "this context's platform does not speak LTI Names and Roles".into(),
            });
        }
        let key = self.0.keys.signing_key().ok_or(NrpsError::NoSigningKey)?;
        let endpoint = TokenEndpoint {
            issuer: platform.issuer.clone(),
            client_id: platform.client_id.clone(),
            token_url: platform.token_url.clone(),
            audience: platform.token_audience.clone(),
        };
        let Some(mut url) = claim.sync.next_url.clone() else {
            // Every page was read before the previous runner stopped.
            return Ok(());
        };
        let done = usize::try_from(claim.sync.pages_fetched).unwrap_or(usize::MAX);
        let mut walk = PageWalk::resume(&url, done, config.max_pages);
        loop {
            if *self.0.stopping.borrow() {
                return Err(Stop::ShuttingDown);
            }
            walk.visit(&url)?;
            let page = self.page(&endpoint, &key, &url, deadline).await?;
            if let Some(next) = &page.next {
                walk.check_origin(next)?;
            }
            let input = RosterPageInput {
                members: page
                    .members
                    .iter()
                    .filter(|m| !m.user_id.trim().is_empty())
                    .map(|m| RosterMemberInput {
                        platform_user_id: m.user_id.clone(),
                        name: m.name.clone(),
                        given_name: m.given_name.clone(),
                        family_name: m.family_name.clone(),
                        email: m.email.clone(),
                        picture: m.picture.clone(),
                        lis_person_sourcedid: m.lis_person_sourcedid.clone(),
                        roles: lti_roles(&m.roles),
                        status: match m.status {
                            MemberStatus::Active => EnrollmentStatus::Active,
                            MemberStatus::Inactive => EnrollmentStatus::Inactive,
                            MemberStatus::Deleted => EnrollmentStatus::Deleted,
                        },
                    })
                    .collect(),
                next_url: page.next.clone(),
                // Kept only on the platform's own origin: it will be read with a token.
                differences_url: page
                    .differences
                    .clone()
                    .filter(|d| walk.check_origin(d).is_ok()),
            };
            if tenant
                .record_roster_page(claim, &input, self.lease_until())
                .await?
                .is_none()
            {
                return Err(Stop::LeaseLost);
            }
            match page.next {
                Some(next) => url = next,
                None => return Ok(()),
            }
        }
    }

    /// One page, retrying temporary failures a few times within the sync's deadline.
    async fn page(
        &self,
        endpoint: &TokenEndpoint,
        key: &lti::ToolKey,
        url: &url::Url,
        deadline: Instant,
    ) -> Result<MembershipPage, Stop> {
        let config = &self.0.config;
        let mut attempt = 0u32;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(timed_out(config.timeout));
            }
            let result = tokio::time::timeout(
                config.page_timeout.min(remaining),
                self.0.client.page(endpoint, key, url),
            )
            .await
            .unwrap_or_else(|_| {
                Err(NrpsError::Transport {
                    detail: "no answer within the page timeout".into(),
                })
            });
            let err = match result {
                Ok(page) => return Ok(page),
                Err(e) if e.is_retryable() && attempt < config.retries => e,
                Err(e) if e.is_retryable() => {
                    let tries = attempt + 1;
                    return Err(Stop::Failed {
                        code: e.code(),
                        message: safe_message(&format!("{e} (after {tries} attempts)")),
                    });
                }
                Err(e) => return Err(e.into()),
            };
            // Exponential from one second, never shorter than the platform asked for, never
            // longer than the cap.
            let wait = err
                .retry_after()
                .unwrap_or_else(|| Duration::from_secs(1u64 << attempt.min(5)))
                .min(config.max_backoff);
            if Instant::now() + wait >= deadline {
                return Err(timed_out(config.timeout));
            }
            attempt += 1;
            tracing::debug!(
                code = err.code(),
                attempt,
                ?wait,
                "roster page failed; retrying"
            );
            let mut stopping = self.0.stopping.subscribe();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stopping.wait_for(|s| *s) => return Err(Stop::ShuttingDown),
            }
        }
    }
}

impl RosterSyncs {
    /// A Classroom course's roster through the Classroom adapter: students then teachers,
    /// each paged by `nextPageToken`, recorded page by page like NRPS pages (the sync's
    /// `next_url` is the Classroom list URL with its page token, so a resumed sync goes on
    /// where it stopped). Each course is its own sync, so one course Google refuses (domain
    /// admin approval missing, a revoked grant) does not stop the others; the refusal is kept
    /// on the linked course as its access state.
    async fn read_classroom_pages(
        &self,
        tenant: &TenantStore<'_>,
        claim: &ClaimedRosterSync,
        deadline: Instant,
    ) -> Result<(), Stop> {
        let Some(adapter) = self.0.classroom.get().cloned() else {
            return Err(Stop::Failed {
                code: "not_configured",
                message: "Google Classroom is not set up on this lmsbridge instance".into(),
            });
        };
        let p = &claim.platform;
        let platform = domain::PlatformEndpoints {
            kind: p.kind,
            issuer: p.issuer.clone(),
            client_id: p.client_id.clone(),
            token_url: p.token_url.clone(),
            token_audience: p.token_audience.clone(),
        };
        let Some(mut url) = claim.sync.next_url.clone() else {
            return Ok(());
        };
        let mut pages = usize::try_from(claim.sync.pages_fetched).unwrap_or(usize::MAX);
        let mut visited = HashSet::new();
        loop {
            if *self.0.stopping.borrow() {
                return Err(Stop::ShuttingDown);
            }
            if pages >= self.0.config.max_pages || !visited.insert(url.clone()) {
                return Err(Stop::Failed {
                    code: "paging_loop",
                    message: "Google Classroom's roster paging did not end".into(),
                });
            }
            let page = match self
                .classroom_page(&adapter, &platform, &url, deadline)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    if let Stop::Failed { code, message } = &e
                        && matches!(
                            *code,
                            "admin_approval_required"
                                | "permission_denied"
                                | "authorization_revoked"
                                | "insufficient_scopes"
                                | "platform_rejected"
                                | "no_google_grant"
                        )
                    {
                        let state = if *code == "authorization_revoked" {
                            "grant_revoked"
                        } else {
                            code
                        };
                        tenant
                            .set_google_course_access(claim.sync.context_id, state, Some(message))
                            .await?;
                    }
                    return Err(e);
                }
            };
            let input = RosterPageInput {
                members: page
                    .members
                    .iter()
                    .map(|m| RosterMemberInput {
                        platform_user_id: m.platform_user_id.clone(),
                        name: m.name.clone(),
                        given_name: m.given_name.clone(),
                        family_name: m.family_name.clone(),
                        email: m.email.clone(),
                        picture: None,
                        lis_person_sourcedid: None,
                        roles: m.roles.clone(),
                        status: m.status,
                    })
                    .collect(),
                next_url: page.next.clone(),
                differences_url: None,
            };
            if tenant
                .record_roster_page(claim, &input, self.lease_until())
                .await?
                .is_none()
            {
                return Err(Stop::LeaseLost);
            }
            pages += 1;
            match page.next {
                Some(next) => url = next,
                None => {
                    tenant
                        .set_google_course_access(claim.sync.context_id, "ok", None)
                        .await?;
                    tenant
                        .mark_google_enrollments(claim.sync.context_id)
                        .await?;
                    return Ok(());
                }
            }
        }
    }

    /// One Classroom roster page, retrying rate limits and failures a few times within the
    /// sync's deadline.
    async fn classroom_page(
        &self,
        adapter: &adapters::ClassroomAdapter,
        platform: &domain::PlatformEndpoints,
        url: &url::Url,
        deadline: Instant,
    ) -> Result<domain::RosterPage, Stop> {
        let config = &self.0.config;
        let request = domain::RosterRequest {
            platform: platform.clone(),
            roster_url: url.clone(),
            page: None,
        };
        let mut attempt = 0u32;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(timed_out(config.timeout));
            }
            let err = match tokio::time::timeout(
                config.page_timeout.min(remaining),
                adapter.roster_page_detailed(&request),
            )
            .await
            {
                Err(_) => None,
                Ok(Ok(page)) => return Ok(page),
                Ok(Err(e)) => Some(e),
            };
            let retryable = err.as_ref().is_none_or(|e| e.is_retryable());
            if !retryable || attempt >= config.retries {
                let (code, message) = match &err {
                    Some(e) => (e.code(), e.to_string()),
                    None => (
                        "platform_unreachable",
                        "Google Classroom did not answer within the page timeout".to_owned(),
                    ),
                };
                return Err(Stop::Failed {
                    code,
                    message: safe_message(&message),
                });
            }
            let wait = err
                .as_ref()
                .and_then(adapters::RosterError::retry_after)
                .unwrap_or_else(|| Duration::from_secs(1u64 << attempt.min(5)))
                .min(config.max_backoff);
            if Instant::now() + wait >= deadline {
                return Err(timed_out(config.timeout));
            }
            attempt += 1;
            let mut stopping = self.0.stopping.subscribe();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stopping.wait_for(|s| *s) => return Err(Stop::ShuttingDown),
            }
        }
    }
}

fn timed_out(limit: Duration) -> Stop {
    Stop::Failed {
        code: "timed_out",
        message: format!(
            "the roster sync took longer than {} s and was stopped",
            limit.as_secs()
        ),
    }
}
