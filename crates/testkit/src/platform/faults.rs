//! Fault injection: the misbehaviour of real platforms, switched on at run time.
//!
//! Each fault mirrors something LMSs do in production: Canvas throttles with 429 and
//! `Retry-After` (and, before that, with a 403 whose body says "Rate Limit Exceeded"), every
//! platform has bad minutes with 5xx, is slow, or revokes tokens before `expires_in` runs out.

use rand::Rng;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How an injected score failure answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultKind {
    /// 429 Too Many Requests with `Retry-After: retry_after_secs`.
    TooManyRequests { retry_after_secs: u64 },
    /// 500 Internal Server Error.
    ServerError,
    /// Canvas's legacy throttle: 403 with the body `403 Forbidden (Rate Limit Exceeded)`.
    RateLimit403,
}

#[derive(Debug, Default)]
struct Plan {
    next_scores: Option<(u32, FaultKind)>,
    score_failure_rate: Option<(f64, FaultKind)>,
    latency: Duration,
}

/// The faults currently switched on. Shared by every request; safe to change mid-test.
#[derive(Debug, Default)]
pub struct Faults {
    plan: Mutex<Plan>,
    /// Access tokens remember the generation they were issued in; bumping it revokes them all.
    token_generation: AtomicU64,
}

impl Faults {
    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `n` score posts fail with `kind`, before any other processing. Replaces an
    /// earlier call's remaining count.
    pub fn fail_next_scores(&self, n: u32, kind: FaultKind) {
        self.plan().next_scores = (n > 0).then_some((n, kind));
    }

    /// Each score post fails with `kind` with probability `rate` (clamped to 0..=1); 0 turns
    /// it off.
    pub fn set_score_failure_rate(&self, rate: f64, kind: FaultKind) {
        let rate = if rate.is_finite() {
            rate.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.plan().score_failure_rate = (rate > 0.0).then_some((rate, kind));
    }

    /// Delay added to every token, AGS and NRPS response.
    pub fn set_latency(&self, latency: Duration) {
        self.plan().latency = latency;
    }

    /// Revokes every access token issued so far: they answer 401 from now on. Tokens issued
    /// afterwards work.
    pub fn expire_tokens_now(&self) {
        self.token_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Switches every fault off. Tokens already revoked stay revoked.
    pub fn clear(&self) {
        *self.plan() = Plan::default();
    }

    pub(super) fn latency(&self) -> Duration {
        self.plan().latency
    }

    pub(super) fn token_generation(&self) -> u64 {
        self.token_generation.load(Ordering::SeqCst)
    }

    /// Decides whether this score post fails, consuming one of the "next n" if so.
    pub(super) fn take_score_fault(&self) -> Option<FaultKind> {
        let mut plan = self.plan();
        if let Some((n, kind)) = plan.next_scores {
            plan.next_scores = (n > 1).then_some((n - 1, kind));
            return Some(kind);
        }
        let (rate, kind) = plan.score_failure_rate?;
        rand::rng().random_bool(rate).then_some(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_n_failures_are_counted_down_then_stop() {
        let f = Faults::default();
        f.fail_next_scores(2, FaultKind::ServerError);
        assert_eq!(f.take_score_fault(), Some(FaultKind::ServerError));
        assert_eq!(f.take_score_fault(), Some(FaultKind::ServerError));
        assert_eq!(f.take_score_fault(), None);
    }

    #[test]
    fn failure_rate_extremes_are_deterministic() {
        let f = Faults::default();
        f.set_score_failure_rate(1.0, FaultKind::RateLimit403);
        assert!((0..20).all(|_| f.take_score_fault() == Some(FaultKind::RateLimit403)));
        f.set_score_failure_rate(f64::NAN, FaultKind::RateLimit403);
        assert!((0..20).all(|_| f.take_score_fault().is_none()));
        f.set_score_failure_rate(1.0, FaultKind::ServerError);
        f.clear();
        assert_eq!(f.take_score_fault(), None);
    }
}
