//! The claim, send, record loop.

use crate::backoff::Backoff;
use crate::limiter::{LimiterConfig, Limiters};
use domain::{
    DeliveryError, GradeTargetLocation, LmsAdapter, PlatformEndpoints, PlatformKind, ScoreDelivery,
    TargetLocation,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{AttemptOutcome, ClaimedScore, Store, now_micros};
use tokio::sync::{Notify, watch};

/// Finds the adapter for a platform kind.
pub trait AdapterResolver: Send + Sync + std::fmt::Debug {
    fn adapter(&self, kind: PlatformKind) -> Option<Arc<dyn LmsAdapter>>;
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This worker's name in leases and attempt records.
    pub id: String,
    /// Rows claimed (and sent concurrently) per round.
    pub batch: i64,
    /// How long a claim lasts before another worker may take the row over.
    pub lease: Duration,
    /// Longest sleep between rounds when nothing wakes the worker.
    pub poll_interval: Duration,
    pub backoff: Backoff,
    /// Attempts after which a retryable failure becomes dead.
    pub max_attempts: i64,
    /// Age after which a retryable failure becomes dead.
    pub max_age: Duration,
    /// Rate and concurrency limits applied to each platform.
    pub limiter: LimiterConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            id: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            batch: 32,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            backoff: Backoff::default(),
            max_attempts: 25,
            max_age: Duration::from_secs(3 * 24 * 3600),
            limiter: LimiterConfig::default(),
        }
    }
}

/// The passback worker. Run one per instance (inside `serve`) or alone (`lmsbridge worker`).
#[derive(Debug, Clone)]
pub struct Worker {
    store: Store,
    adapters: Arc<dyn AdapterResolver>,
    config: WorkerConfig,
    wake: Arc<Notify>,
    limiters: Arc<Limiters>,
    webhooks: Option<crate::webhooks::WebhookSender>,
}

impl Worker {
    pub fn new(store: Store, adapters: Arc<dyn AdapterResolver>, config: WorkerConfig) -> Self {
        Self {
            store,
            adapters,
            limiters: Arc::new(Limiters::new(config.limiter)),
            config,
            wake: Arc::new(Notify::new()),
            webhooks: None,
        }
    }

    /// Also sends the product's webhook deliveries in each round.
    #[must_use]
    pub fn with_webhooks(mut self, sender: crate::webhooks::WebhookSender) -> Self {
        self.webhooks = Some(sender);
        self
    }

    /// The per-platform limiters, for metrics.
    pub fn limiters(&self) -> Arc<Limiters> {
        self.limiters.clone()
    }

    /// A handle the API uses to wake the worker as soon as a score is queued.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `shutdown` turns true; finishes the round in progress first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(worker = %self.config.id, "passback worker started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let handled = match self.run_once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "passback round failed");
                    0
                }
            };
            if handled > 0 {
                continue;
            }
            let sleep = self.idle_sleep().await;
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!(worker = %self.config.id, "passback worker stopped");
    }

    async fn idle_sleep(&self) -> Duration {
        match self.store.next_score_due().await {
            Ok(Some(due)) => {
                let wait = u64::try_from(due - now_micros()).unwrap_or(0);
                Duration::from_micros(wait).min(self.config.poll_interval)
            }
            _ => self.config.poll_interval,
        }
    }

    /// Sends one batch of scores and one of webhook deliveries. Returns how many were handled.
    pub async fn run_once(&self) -> Result<usize, store::StoreError> {
        let scores = self.run_scores_once().await?;
        let webhooks = match &self.webhooks {
            Some(sender) => sender.run_once(&self.config.id).await?,
            None => 0,
        };
        Ok(scores + webhooks)
    }

    /// Claims one batch of scores and sends it. Returns how many scores were handled.
    pub async fn run_scores_once(&self) -> Result<usize, store::StoreError> {
        let lease_until = now_micros() + micros(self.config.lease);
        let claimed = self
            .store
            .claim_scores(&self.config.id, lease_until, self.config.batch)
            .await?;
        let n = claimed.len();
        let mut tasks = tokio::task::JoinSet::new();
        for score in claimed {
            let this = self.clone();
            tasks.spawn(async move { this.deliver(score).await });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Err(e)) => tracing::error!(error = %e, "recording a passback attempt failed"),
                Err(e) => tracing::error!(error = %e, "passback task panicked"),
                Ok(Ok(())) => {}
            }
        }
        Ok(n)
    }

    async fn deliver(&self, score: ClaimedScore) -> Result<(), store::StoreError> {
        if crate::moodle::hold_if_it_would_erase(&self.store, &self.config.id, &score).await? {
            return Ok(());
        }
        let limiter = self
            .limiters
            .for_platform(score.platform.id, score.platform.kind);
        // Waiting for the limiter past half the lease would let another worker take the row
        // over; hand it back unsent instead, without counting an attempt.
        let permit = match tokio::time::timeout(self.config.lease / 2, limiter.acquire()).await {
            Ok(p) => p,
            Err(_) => {
                let at = now_micros() + micros(self.config.lease / 4);
                self.store.defer_claim(&score, &self.config.id, at).await?;
                tracing::info!(score = %score.id, "score deferred: the platform's limiter is saturated");
                return Ok(());
            }
        };
        let started_at = now_micros();
        let clock = Instant::now();
        let result = match self.adapters.adapter(score.platform.kind) {
            None => Err(DeliveryError::Misconfigured {
                detail: format!("no adapter for {} platforms", score.platform.kind),
            }),
            Some(adapter) => adapter.send_score(&delivery(&score)).await,
        };
        match &result {
            Ok(receipt) => permit.succeeded_with(receipt.rate_limit_remaining),
            Err(DeliveryError::RateLimited { retry_after, .. }) => permit.throttled(*retry_after),
            Err(DeliveryError::Transient {
                status: Some(503),
                retry_after,
                ..
            }) => permit.throttled(*retry_after),
            Err(_) => drop(permit),
        }
        let latency_ms = i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX);
        if crate::moodle::restamp_if_refused_as_stale(
            &self.store,
            &self.config.id,
            self.config.max_attempts,
            &score,
            &result,
            started_at,
            latency_ms,
        )
        .await?
        {
            return Ok(());
        }
        let result = crate::interrupted::landed_before(&self.store, &score, result).await?;
        let outcome = self.outcome(&score, result);
        match &outcome {
            AttemptOutcome::Delivered { status, .. } => {
                tracing::info!(score = %score.id, status, latency_ms, "score delivered");
            }
            AttemptOutcome::Retry { status, detail, .. } => {
                tracing::warn!(score = %score.id, ?status, attempt = score.attempts, detail, "score delivery will be retried");
            }
            AttemptOutcome::Dead { status, detail } => {
                tracing::warn!(score = %score.id, ?status, detail, "score delivery gave up");
            }
        }
        let kept = self
            .store
            .finish_attempt(&score, &self.config.id, started_at, latency_ms, &outcome)
            .await?;
        if !kept {
            tracing::warn!(score = %score.id, "lease lost before the outcome was recorded; another worker owns the score");
        }
        Ok(())
    }

    fn outcome(
        &self,
        score: &ClaimedScore,
        result: Result<domain::DeliveryReceipt, DeliveryError>,
    ) -> AttemptOutcome {
        match result {
            Ok(receipt) => AttemptOutcome::Delivered {
                status: receipt.status,
                detail: receipt.detail,
            },
            Err(e) if e.is_retryable() => {
                let status = match &e {
                    DeliveryError::Transient { status, .. } => *status,
                    DeliveryError::RateLimited { .. } => Some(429),
                    _ => None,
                };
                let too_old = now_micros() - score.created_at > micros(self.config.max_age);
                if score.attempts >= self.config.max_attempts || too_old {
                    return AttemptOutcome::Dead {
                        status,
                        detail: format!("gave up after {} attempts: {e}", score.attempts),
                    };
                }
                let attempt = u32::try_from(score.attempts).unwrap_or(u32::MAX);
                let wait = self
                    .config
                    .backoff
                    .delay(attempt, e.retry_after(), &mut rand::rng());
                AttemptOutcome::Retry {
                    at: now_micros() + micros(wait),
                    status,
                    detail: e.to_string(),
                }
            }
            Err(e) => AttemptOutcome::Dead {
                status: match &e {
                    DeliveryError::Rejected { status, .. } => Some(*status),
                    _ => None,
                },
                detail: e.to_string(),
            },
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn delivery(score: &ClaimedScore) -> ScoreDelivery {
    ScoreDelivery {
        platform: PlatformEndpoints {
            kind: score.platform.kind,
            issuer: score.platform.issuer.clone(),
            client_id: score.platform.client_id.clone(),
            token_url: score.platform.token_url.clone(),
            token_audience: score.platform.token_audience.clone(),
        },
        target: match &score.location {
            GradeTargetLocation::LtiLineItem { line_item_url } => {
                TargetLocation::LtiLineItem(line_item_url.clone())
            }
            GradeTargetLocation::ClassroomCourseWork {
                course_id,
                course_work_id,
            } => TargetLocation::ClassroomCourseWork {
                course_id: course_id.clone(),
                course_work_id: course_work_id.clone(),
            },
            GradeTargetLocation::ClassroomAddOnAttachment {
                course_id,
                item_id,
                attachment_id,
            } => TargetLocation::ClassroomAddOnAttachment {
                course_id: course_id.clone(),
                item_id: item_id.clone(),
                attachment_id: attachment_id.clone(),
            },
        },
        platform_user_id: score.platform_user_id.clone(),
        score_given: score.score_given,
        score_maximum: score.score_maximum,
        comment: score.comment.clone(),
        activity_progress: score.activity_progress,
        grading_progress: score.grading_progress,
        timestamp_micros: score.timestamp_micros,
    }
}
