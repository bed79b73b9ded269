//! A limiter per platform: a token bucket for the request rate, and an adaptive concurrency
//! limit that halves when the platform throttles (429, 503, Canvas's `403 Rate Limit
//! Exceeded`) and grows back by one request per window of successes.
//!
//! A refused request always waits its own `Retry-After` (the worker schedules its retry no
//! earlier). Whether the *other* requests to that platform wait too depends on how the
//! platform is throttling: when at least [`LimiterConfig::pause_after`] of the last
//! [`OUTCOME_WINDOW`] answers were throttling answers, the platform's budget is spent and every
//! request would be refused, so all of them pause until the `Retry-After`. An isolated 429
//! among successes (a platform that refuses a share of requests at random, or one user's
//! quota) pauses nothing else: pausing the whole platform for it cut a drain with 5% random
//! 429s carrying `Retry-After: 1` to a fifth of the allowed rate.
//!
//! Canvas's leaky bucket charges parallel requests extra, so Canvas platforms get a lower
//! concurrency ceiling, and when Canvas reports its bucket nearly empty
//! (`X-Rate-Limit-Remaining` under [`LimiterConfig::low_water`]) the concurrency limit halves
//! before Canvas starts refusing; under twice the mark it holds rather than grows.

use domain::{PlatformId, PlatformKind};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Limits for one platform.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterConfig {
    /// Sustained requests per second.
    pub rate_per_sec: f64,
    /// Requests that may go at once after a quiet spell.
    pub burst: f64,
    /// Most requests in flight at once.
    pub max_concurrency: usize,
    /// Most requests in flight at once to a Canvas platform.
    pub canvas_max_concurrency: usize,
    /// Concurrency never drops below this, so a throttled platform still drains.
    pub min_concurrency: usize,
    /// Throttling answers among the last [`OUTCOME_WINDOW`] that make a `Retry-After` pause
    /// the whole platform rather than only the refused request.
    pub pause_after: u32,
    /// A reported rate budget (`X-Rate-Limit-Remaining`) below this halves the concurrency
    /// limit, at most once per [`LOW_WATER_INTERVAL`].
    pub low_water: f64,
}

/// How many recent answers [`LimiterConfig::pause_after`] counts over.
pub const OUTCOME_WINDOW: u32 = 8;

/// The shortest time between two decreases for a low rate budget: the answers in flight
/// when the first one arrived report the same budget.
pub const LOW_WATER_INTERVAL: Duration = Duration::from_millis(500);

impl Default for LimiterConfig {
    fn default() -> Self {
        Self {
            rate_per_sec: 20.0,
            burst: 10.0,
            max_concurrency: 16,
            canvas_max_concurrency: 4,
            min_concurrency: 1,
            pause_after: 4,
            // Canvas's bucket holds 700 when idle and charges 50 up front per request.
            low_water: 300.0,
        }
    }
}

#[derive(Debug)]
struct State {
    tokens: f64,
    refilled_at: Instant,
    /// The adaptive concurrency limit; fractional so it can grow by 1/limit per success.
    limit: f64,
    ceiling: f64,
    in_flight: usize,
    paused_until: Option<Instant>,
    throttled: u64,
    /// The last [`OUTCOME_WINDOW`] answers, newest in bit 0: 1 for a throttling answer.
    recent: u32,
    low_water_at: Option<Instant>,
}

/// The limiter of one platform.
#[derive(Debug)]
pub struct PlatformLimiter {
    config: LimiterConfig,
    state: Mutex<State>,
    released: Notify,
}

/// A right to send one request. Report how it went; dropping it without a report counts as
/// neither success nor throttling.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<PlatformLimiter>,
}

impl PlatformLimiter {
    fn new(config: LimiterConfig, ceiling: usize) -> Self {
        let ceiling = ceiling.max(config.min_concurrency).max(1) as f64;
        Self {
            config,
            state: Mutex::new(State {
                tokens: config.burst.max(1.0),
                refilled_at: Instant::now(),
                limit: ceiling,
                ceiling,
                in_flight: 0,
                paused_until: None,
                throttled: 0,
                recent: 0,
                low_water_at: None,
            }),
            released: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a request may be sent.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            // Registered before checking, so a release between the check and the wait is
            // not missed.
            let released = self.released.notified();
            let wait = {
                let mut s = self.lock();
                let now = Instant::now();
                let elapsed = now.saturating_duration_since(s.refilled_at).as_secs_f64();
                s.tokens =
                    (s.tokens + elapsed * self.config.rate_per_sec).min(self.config.burst.max(1.0));
                s.refilled_at = now;
                if let Some(until) = s.paused_until.filter(|u| *u > now) {
                    Some(until - now)
                } else if (s.in_flight as f64) >= s.limit.floor().max(1.0) {
                    None
                } else if s.tokens >= 1.0 {
                    s.tokens -= 1.0;
                    s.in_flight += 1;
                    return Permit {
                        limiter: self.clone(),
                    };
                } else {
                    Some(Duration::from_secs_f64(
                        (1.0 - s.tokens) / self.config.rate_per_sec.max(f64::MIN_POSITIVE),
                    ))
                }
            };
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => released.await,
            }
        }
    }

    /// The current concurrency limit, requests in flight, and throttling answers seen.
    pub fn snapshot(&self) -> (f64, usize, u64) {
        let s = self.lock();
        (s.limit, s.in_flight, s.throttled)
    }
}

impl Permit {
    /// The request went through: grow the concurrency limit by one per window of successes.
    pub fn succeeded(self) {
        self.succeeded_with(None);
    }

    /// The request went through and the platform reported what is left of its rate budget.
    pub fn succeeded_with(self, rate_limit_remaining: Option<f64>) {
        let config = self.limiter.config;
        let mut s = self.limiter.lock();
        s.recent = (s.recent << 1) & window_mask();
        let now = Instant::now();
        let low = rate_limit_remaining.is_some_and(|r| r < config.low_water);
        // Between the low-water mark and twice it, hold: growing there would refill the
        // bucket to the mark again within a round trip.
        let holding = rate_limit_remaining.is_some_and(|r| r < 2.0 * config.low_water);
        if low {
            let due = s
                .low_water_at
                .is_none_or(|at| now.saturating_duration_since(at) >= LOW_WATER_INTERVAL);
            if due {
                s.low_water_at = Some(now);
                s.limit = (s.limit / 2.0).max(config.min_concurrency.max(1) as f64);
            }
        } else if !holding {
            s.limit = (s.limit + 1.0 / s.limit.max(1.0)).min(s.ceiling);
        }
    }

    /// The platform throttled: halve the concurrency limit and, when it said how long to
    /// wait and throttling is no longer isolated, pause the platform until then.
    pub fn throttled(self, retry_after: Option<Duration>) {
        let config = self.limiter.config;
        let mut s = self.limiter.lock();
        s.throttled += 1;
        s.recent = ((s.recent << 1) | 1) & window_mask();
        s.limit = (s.limit / 2.0).max(config.min_concurrency.max(1) as f64);
        let sustained = s.recent.count_ones() >= config.pause_after.max(1);
        if let Some(wait) = retry_after.filter(|_| sustained) {
            let until = Instant::now() + wait;
            s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
        }
    }
}

const fn window_mask() -> u32 {
    (1 << OUTCOME_WINDOW) - 1
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut s = self.limiter.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        drop(s);
        self.limiter.released.notify_one();
    }
}

/// The limiters of every platform this worker sends to.
#[derive(Debug, Default)]
pub struct Limiters {
    config: LimiterConfig,
    by_platform: Mutex<HashMap<PlatformId, Arc<PlatformLimiter>>>,
}

impl Limiters {
    pub fn new(config: LimiterConfig) -> Self {
        Self {
            config,
            by_platform: Mutex::default(),
        }
    }

    /// The limiter of one platform, created on first use.
    pub fn for_platform(&self, id: PlatformId, kind: PlatformKind) -> Arc<PlatformLimiter> {
        let mut map = self.by_platform.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(id)
            .or_insert_with(|| {
                let ceiling = match kind {
                    PlatformKind::Canvas => self.config.canvas_max_concurrency,
                    _ => self.config.max_concurrency,
                };
                Arc::new(PlatformLimiter::new(self.config, ceiling))
            })
            .clone()
    }

    /// Per platform: concurrency limit, in flight, throttling answers seen (for metrics).
    pub fn snapshot(&self) -> Vec<(PlatformId, f64, usize, u64)> {
        let map = self.by_platform.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|(id, l)| {
                let (limit, in_flight, throttled) = l.snapshot();
                (*id, limit, in_flight, throttled)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rate: f64, burst: f64, conc: usize) -> LimiterConfig {
        LimiterConfig {
            rate_per_sec: rate,
            burst,
            max_concurrency: conc,
            canvas_max_concurrency: 2,
            ..LimiterConfig::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_never_exceeds_burst_plus_rate_times_time() {
        let limiters = Limiters::new(config(10.0, 5.0, 100));
        let l = limiters.for_platform(PlatformId::generate(), PlatformKind::Lti);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..60 {
            let p = l.acquire().await;
            times.push(start.elapsed().as_secs_f64());
            p.succeeded();
        }
        // In every window [t, t + w], at most burst + rate * w permits.
        for (i, t) in times.iter().enumerate() {
            for (j, u) in times.iter().enumerate().skip(i) {
                let allowed = 5.0 + 10.0 * (u - t) + 1e-6;
                assert!(
                    (j - i + 1) as f64 <= allowed + 1.0,
                    "{} permits in {:.3}s",
                    j - i + 1,
                    u - t
                );
            }
        }
        // And it is not needlessly slow: 60 permits at 10/s after a burst of 5 take ~5.5 s.
        let total = times.last().unwrap();
        assert!((5.0..6.5).contains(total), "took {total}s");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_capped_and_freed_by_dropping_permits() {
        let limiters = Limiters::new(config(1000.0, 1000.0, 3));
        let l = limiters.for_platform(PlatformId::generate(), PlatformKind::Lti);
        let a = l.acquire().await;
        let _b = l.acquire().await;
        let _c = l.acquire().await;
        assert_eq!(l.snapshot().1, 3);
        let waiting = tokio::spawn({
            let l = l.clone();
            async move { l.acquire().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a fourth request waits");
        drop(a);
        let d = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("released")
            .unwrap();
        assert_eq!(l.snapshot().1, 3);
        drop(d);
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_concurrency_and_recovers_slowly() {
        let limiters = Limiters::new(config(1000.0, 1000.0, 16));
        let l = limiters.for_platform(PlatformId::generate(), PlatformKind::Moodle);
        assert_eq!(l.snapshot().0, 16.0);
        l.acquire().await.throttled(None);
        assert_eq!(l.snapshot().0, 8.0);
        assert_eq!(l.snapshot().2, 1);
        // Additive increase: eight successes at limit 8 add about one.
        for _ in 0..8 {
            l.acquire().await.succeeded();
        }
        let limit = l.snapshot().0;
        assert!((8.9..9.1).contains(&limit), "{limit}");
        // Never below the floor however often it is throttled.
        for _ in 0..20 {
            l.acquire().await.throttled(None);
        }
        assert_eq!(l.snapshot().0, 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_isolated_retry_after_pauses_nothing_but_sustained_throttling_pauses_all() {
        let limiters = Limiters::new(config(1000.0, 1000.0, 16));
        let l = limiters.for_platform(PlatformId::generate(), PlatformKind::Moodle);
        let wait = Duration::from_secs(2);
        // One 429 in every ten answers, each with Retry-After: no other request waits.
        for _ in 0..3 {
            l.acquire().await.throttled(Some(wait));
            for _ in 0..9 {
                let before = Instant::now();
                l.acquire().await.succeeded();
                assert!(before.elapsed() < Duration::from_millis(100));
            }
        }
        // Four throttling answers among the last eight: the budget is spent, everyone waits.
        for _ in 0..3 {
            l.acquire().await.throttled(Some(wait));
        }
        let before = Instant::now();
        let p = l.acquire().await;
        assert!(
            before.elapsed() < Duration::from_millis(100),
            "three are not yet sustained"
        );
        p.throttled(Some(wait));
        let before = Instant::now();
        l.acquire().await.succeeded();
        assert!(
            before.elapsed() >= wait,
            "Retry-After honoured for every request: {:?}",
            before.elapsed()
        );
        // A throttling answer without Retry-After never pauses, however sustained.
        let m = limiters.for_platform(PlatformId::generate(), PlatformKind::Moodle);
        for _ in 0..8 {
            m.acquire().await.throttled(None);
        }
        let before = Instant::now();
        m.acquire().await.succeeded();
        assert!(before.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_nearly_empty_rate_budget_halves_concurrency_once_per_interval() {
        let limiters = Limiters::new(config(1000.0, 1000.0, 16));
        let l = limiters.for_platform(PlatformId::generate(), PlatformKind::Lti);
        let ceiling = l.snapshot().0;
        assert_eq!(ceiling, 16.0);
        l.acquire().await.succeeded_with(Some(650.0));
        assert_eq!(l.snapshot().0, ceiling, "plenty left: no change");
        l.acquire().await.succeeded_with(Some(120.0));
        assert_eq!(l.snapshot().0, ceiling / 2.0);
        // Answers already in flight report the same low budget: one decrease per interval.
        l.acquire().await.succeeded_with(Some(110.0));
        assert_eq!(l.snapshot().0, ceiling / 2.0);
        tokio::time::advance(LOW_WATER_INTERVAL).await;
        l.acquire().await.succeeded_with(Some(100.0));
        assert_eq!(l.snapshot().0, ceiling / 4.0);
        // Between the mark (300 by default) and twice it: hold; above: grow again.
        l.acquire().await.succeeded_with(Some(450.0));
        assert_eq!(l.snapshot().0, ceiling / 4.0);
        l.acquire().await.succeeded_with(Some(650.0));
        assert!(l.snapshot().0 > ceiling / 4.0);
        assert_eq!(l.snapshot().2, 0, "a low budget is not a throttling answer");
    }

    #[tokio::test(start_paused = true)]
    async fn canvas_platforms_get_the_lower_ceiling() {
        let limiters = Limiters::new(config(1000.0, 1000.0, 16));
        let canvas = limiters.for_platform(PlatformId::generate(), PlatformKind::Canvas);
        assert_eq!(canvas.snapshot().0, 2.0);
        assert_eq!(limiters.snapshot().len(), 1);
    }
}
