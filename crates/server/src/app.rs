//! The application state, assembled once at start-up.

use crate::config::Settings;
use crate::keyring::Keyring;
use crate::master_key;
use adapters::LtiAdapter;
use domain::{LmsAdapter, PlatformKind};
use lti::LaunchValidator;
use lti::jwks::{JwksCache, JwksCachePolicy};
use passback::{AdapterResolver, Worker, WorkerConfig};
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::sync::{Notify, watch};
use url::Url;

/// Shared state behind every handler. Cheap to clone.
#[derive(Clone, Debug)]
pub struct App(Arc<Inner>);

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) settings: Settings,
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) validator: LaunchValidator,
    pub(crate) wake_worker: Arc<Notify>,
    pub(crate) launch_url: Url,
    pub(crate) base_url: Url,
    /// Seals and opens per-platform secrets (LTI 1.1 credentials) and login states.
    pub(crate) master: store::crypto::MasterKey,
    pub(crate) registrations: crate::registrations::Registrations,
    /// For calls a request makes to a platform itself (Dynamic Registration).
    pub(crate) http: reqwest::Client,
    /// The LTI adapter the worker sends scores through; request handlers share it, and with
    /// it the access-token cache.
    pub(crate) lti: Arc<LtiAdapter>,
    /// The passback worker's per-platform limiters, for `/metrics`.
    pub(crate) limiters: Arc<passback::Limiters>,
    pub(crate) launches: crate::launch_batcher::LaunchBatcher,
    /// Runs roster syncs (NRPS) in the background.
    pub(crate) rosters: crate::roster_sync::RosterSyncs,
    /// Google's signing keys, for the OIDC tokens on Pub/Sub pushes.
    pub(crate) google_push_keys: lti::jwks::JwksCache,
    /// Google Classroom: per-tenant OAuth clients, token caches, the adapter's grants.
    pub(crate) google: crate::google::Google,
}

#[derive(Debug)]
struct Adapters {
    lti: Arc<LtiAdapter>,
    classroom: Arc<adapters::ClassroomAdapter>,
}

impl AdapterResolver for Adapters {
    fn adapter(&self, kind: PlatformKind) -> Option<Arc<dyn LmsAdapter>> {
        if kind == PlatformKind::GoogleClassroom {
            return Some(self.classroom.clone() as Arc<dyn LmsAdapter>);
        }
        kind.speaks_lti()
            .then(|| self.lti.clone() as Arc<dyn LmsAdapter>)
    }
}

/// Builds an [`App`] and its background work.
#[derive(Debug)]
pub struct AppBuilder {
    settings: Settings,
    http: Option<reqwest::Client>,
    worker: WorkerConfig,
}

/// A built app with the background tasks it needs.
#[derive(Debug)]
pub struct Running {
    pub app: App,
    pub worker: Worker,
}

impl AppBuilder {
    pub fn new(settings: Settings) -> Self {
        let mut worker = WorkerConfig::default();
        worker.limiter.rate_per_sec = settings.platform_rate_per_sec;
        worker.limiter.burst = (settings.platform_rate_per_sec / 2.0).max(1.0);
        worker.limiter.max_concurrency = settings.platform_max_concurrency;
        worker.limiter.canvas_max_concurrency = settings.platform_max_concurrency.min(4);
        worker.limiter.low_water = settings.platform_rate_budget_low_water;
        worker.lease = Duration::from_secs(settings.passback_lease_secs);
        worker.max_attempts = settings.passback_max_attempts;
        worker.max_age = Duration::from_secs(settings.passback_give_up_hours * 3600);
        Self {
            settings,
            http: None,
            worker,
        }
    }

    /// The HTTP client used to reach platforms (tests shorten its timeouts).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    pub fn worker_config(mut self, worker: WorkerConfig) -> Self {
        self.worker = worker;
        self
    }

    /// Opens the store (migrating it), loads or creates the keys, wires the adapters.
    pub async fn build(self) -> anyhow::Result<Running> {
        let settings = self.settings;
        if settings.database_url.starts_with("sqlite:") {
            std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot create data directory {}: {e}",
                    settings.data_dir.display()
                )
            })?;
        }
        let master =
            master_key::load_or_create(settings.master_key.as_deref(), &settings.data_dir)?;
        let store = Store::open(&settings.database_url).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot open the database {}: {e}",
                crate::config::mask_url_password(&settings.database_url)
            )
        })?;
        let keyring = Arc::new(Keyring::open(store.clone(), master.clone()).await?);
        let http = match self.http {
            Some(h) => h,
            None => default_http_client()?,
        };
        let validator = LaunchValidator::new(
            JwksCache::new(http.clone(), JwksCachePolicy::default()),
            settings.clock_skew_secs,
        );
        let lti = Arc::new(LtiAdapter::new(http.clone(), keyring.clone()));
        let google =
            crate::google::Google::new(store.clone(), master.clone(), http.clone(), &settings);
        let classroom = Arc::new(google.adapter());
        let adapters = Arc::new(Adapters {
            lti: lti.clone(),
            classroom: classroom.clone(),
        });
        let worker = Worker::new(store.clone(), adapters, self.worker).with_webhooks(
            passback::WebhookSender::new(
                store.clone(),
                http.clone(),
                master.clone(),
                passback::WebhookConfig::default(),
            ),
        );
        let limiters = worker.limiters();
        let app = App(Arc::new(Inner {
            rosters: crate::roster_sync::RosterSyncs::new(
                store.clone(),
                http.clone(),
                keyring.clone(),
                crate::roster_sync::RosterSyncConfig::default(),
            )
            .with_classroom(classroom),
            google,
            google_push_keys: JwksCache::new(http.clone(), JwksCachePolicy::default()),
            http,
            lti,
            limiters,
            launch_url: settings.public("lti/launch"),
            base_url: settings.public(""),
            registrations: crate::registrations::Registrations::new(
                store.clone(),
                Duration::from_secs(30),
            ),
            launches: crate::launch_batcher::LaunchBatcher::spawn(
                store.clone(),
                match store.backend() {
                    store::Backend::Sqlite => 1,
                    // Two: one prepares its batch while the other holds the tenant's audit
                    // head through COMMIT. More only wait for that head, in smaller batches
                    // (four measured 30-40% slower on the launch benchmark).
                    store::Backend::Postgres => 2,
                },
                128,
            ),
            store,
            keyring,
            validator,
            wake_worker: worker.waker(),
            master,
            settings,
        }));
        Ok(Running { app, worker })
    }
}

/// The client for platform calls: bounded timeouts, no redirects to follow blindly.
pub fn default_http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("lmsbridge/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

impl App {
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.0.keyring
    }

    /// Google Classroom: OAuth clients, token caches and grants.
    pub fn google(&self) -> &crate::google::Google {
        &self.0.google
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.0
    }

    /// Background upkeep: reload keys (rotation by another instance), sweep expired states.
    pub async fn maintain(self, mut shutdown: watch::Receiver<bool>) {
        // Moodle reconciliation waits on Moodle sites, so it runs beside the upkeep below.
        let moodle = tokio::spawn(crate::moodle_reconcile::run_periodically(
            crate::moodle_reconcile::MoodleReconciler::new(
                self.0.store.clone(),
                self.0.http.clone(),
                self.0.master.clone(),
            ),
            self.0.settings.moodle_reconcile_interval_secs,
            shutdown.clone(),
        ));
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => {
                    self.0.rosters.stop();
                    moodle.abort();
                    return;
                }
            }
            // Reloads the keys (a rotation by another instance) and rotates on schedule.
            if let Err(e) = self.0.keyring.rotate_if_due(&self.0.settings).await {
                tracing::error!(error = %e, "reloading or rotating tool keys failed");
            }
            match self.0.store.sweep_expired().await {
                Ok(n) if n > 0 => {
                    tracing::debug!(removed = n, "swept expired login states and codes")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "sweeping expired rows failed"),
            }
            // Classroom push registrations renewed before they lapse; periodic re-syncs.
            crate::google_push_renewal::tick(&self, store::now_micros()).await;
            // Roster syncs queued, or left by an instance that stopped mid-sync.
            if let Err(e) = self.0.rosters.resume_abandoned().await {
                tracing::error!(error = %e, "resuming roster syncs failed");
            }
        }
    }
}
