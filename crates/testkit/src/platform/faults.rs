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
    /// A refusal retrying cannot fix: Canvas's 422 for a score in a concluded course.
    ConcludedCourse422,
}

#[derive(Debug, Default)]
struct Plan {
    next_scores: Option<(u32, FaultKind)>,
    score_failure_rate: Option<(f64, FaultKind)>,
    /// Several failure kinds at once, each with its own share of score posts.
    score_fault_mix: Vec<(f64, FaultKind)>,
    latency: Duration,
    /// How long each score post is held, drawn uniformly from this range.
    score_latency: Option<(Duration, Duration)>,
    /// How long the answer to a score post is held after the score was processed.
    score_answer_delay: Option<(Duration, Duration)>,
    /// How long an access token works for score posts once it was first used for one.
    token_life_after_use: Option<Duration>,
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

    /// Score posts fail with several kinds at once: each `(share, kind)` fails that share of
    /// posts (shares clamped to 0..=1, their sum to 1). An empty list turns it off. Applies
    /// after [`Faults::fail_next_scores`] and [`Faults::set_score_failure_rate`].
    pub fn set_score_fault_mix(&self, mix: &[(f64, FaultKind)]) {
        let mut left = 1.0;
        let mut kept = Vec::with_capacity(mix.len());
        for &(share, kind) in mix {
            let share = if share.is_finite() {
                share.clamp(0.0, left)
            } else {
                0.0
            };
            left -= share;
            if share > 0.0 {
                kept.push((share, kind));
            }
        }
        self.plan().score_fault_mix = kept;
    }

    /// Holds each score post for a random time between `min` and `max` (a slow gradebook
    /// write), after it is logged as started: concurrent posts overlap for that long. Zero
    /// for both turns it off.
    pub fn set_score_latency(&self, min: Duration, max: Duration) {
        self.plan().score_latency = (!max.is_zero()).then_some((min.min(max), max));
    }

    /// Holds the answer to each score post for a random time between `min` and `max` after
    /// the score was processed (taken or refused): a tool that dies meanwhile never learns
    /// that the platform took its score. Zero for both turns it off.
    pub fn set_score_answer_delay(&self, min: Duration, max: Duration) {
        self.plan().score_answer_delay = (!max.is_zero()).then_some((min.min(max), max));
    }

    /// Access tokens stop working for score posts `life` after their first score post,
    /// whatever `expires_in` promised: a platform revoking tokens early. Tokens keep working
    /// for at least `life`, so a freshly fetched token is never refused at once. Zero turns
    /// it off.
    pub fn expire_tokens_after_use(&self, life: Duration) {
        self.plan().token_life_after_use = (!life.is_zero()).then_some(life);
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

    /// How long to hold this score post.
    pub(super) fn score_latency(&self) -> Duration {
        draw(self.plan().score_latency)
    }

    /// How long to hold the answer to this score post.
    pub(super) fn score_answer_delay(&self) -> Duration {
        draw(self.plan().score_answer_delay)
    }

    pub(super) fn token_life_after_use(&self) -> Option<Duration> {
        self.plan().token_life_after_use
    }

    /// Decides whether this score post fails, consuming one of the "next n" if so.
    pub(super) fn take_score_fault(&self) -> Option<FaultKind> {
        let mut plan = self.plan();
        if let Some((n, kind)) = plan.next_scores {
            plan.next_scores = (n > 1).then_some((n - 1, kind));
            return Some(kind);
        }
        let mut rng = rand::rng();
        if let Some((rate, kind)) = plan.score_failure_rate
            && rng.random_bool(rate)
        {
            return Some(kind);
        }
        if plan.score_fault_mix.is_empty() {
            return None;
        }
        let draw: f64 = rng.random();
        let mut upto = 0.0;
        for &(share, kind) in &plan.score_fault_mix {
            upto += share;
            if draw < upto {
                return Some(kind);
            }
        }
        None
    }
}

/// A duration drawn uniformly from a range, or zero.
fn draw(range: Option<(Duration, Duration)>) -> Duration {
    match range {
        Some((min, max)) if max > min => rand::rng().random_range(min..=max),
        Some((_, max)) => max,
        None => Duration::ZERO,
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

    #[test]
    fn a_fault_mix_fails_each_kind_by_its_share() {
        let f = Faults::default();
        let throttle = FaultKind::TooManyRequests {
            retry_after_secs: 1,
        };
        f.set_score_fault_mix(&[(0.3, throttle), (0.2, FaultKind::ServerError)]);
        let draws: Vec<_> = (0..4000).map(|_| f.take_score_fault()).collect();
        let share = |want: Option<FaultKind>| {
            draws.iter().filter(|d| **d == want).count() as f64 / draws.len() as f64
        };
        assert!((share(Some(throttle)) - 0.3).abs() < 0.05);
        assert!((share(Some(FaultKind::ServerError)) - 0.2).abs() < 0.05);
        assert!((share(None) - 0.5).abs() < 0.05);
        // Shares beyond the whole are cut: everything fails, the first kind first.
        f.set_score_fault_mix(&[(0.8, throttle), (0.8, FaultKind::ServerError)]);
        assert!((0..200).all(|_| f.take_score_fault().is_some()));
        f.set_score_fault_mix(&[]);
        assert_eq!(f.take_score_fault(), None);
    }

    #[test]
    fn score_latency_is_drawn_from_its_range() {
        let f = Faults::default();
        assert_eq!(f.score_latency(), Duration::ZERO);
        f.set_score_latency(Duration::from_millis(5), Duration::from_millis(9));
        for _ in 0..50 {
            let d = f.score_latency();
            assert!(d >= Duration::from_millis(5) && d <= Duration::from_millis(9));
        }
        f.set_score_latency(Duration::ZERO, Duration::ZERO);
        assert_eq!(f.score_latency(), Duration::ZERO);
    }
}
