//! Retry timing: exponential backoff with full jitter (each wait uniform in
//! `[0, min(cap, base * 2^attempt)]`), raised to at least what the platform asked for.

use rand::Rng;
use std::time::Duration;

/// Backoff settings.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(15 * 60),
        }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (1 for the first retry).
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)))
            .min(self.cap);
        let jittered = Duration::from_micros(
            rng.random_range(0..=exp.as_micros().min(u128::from(u64::MAX)) as u64),
        );
        // A platform's Retry-After is a floor, but never an unbounded one.
        jittered.max(retry_after.unwrap_or_default().min(self.cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_under_the_exponential_ceiling_and_respects_retry_after() {
        let b = Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        };
        let mut rng = rand::rng();
        for attempt in 1..=10u32 {
            let ceiling = Duration::from_secs(1u64 << (attempt - 1)).min(b.cap);
            for _ in 0..50 {
                assert!(b.delay(attempt, None, &mut rng) <= ceiling);
                assert!(
                    b.delay(attempt, Some(Duration::from_secs(7)), &mut rng)
                        >= Duration::from_secs(7)
                );
            }
        }
        // An absurd Retry-After is capped.
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(86_400)), &mut rng),
            Duration::from_secs(60)
        );
        // Jitter actually spreads the waits.
        let samples: std::collections::HashSet<_> =
            (0..20).map(|_| b.delay(6, None, &mut rng)).collect();
        assert!(samples.len() > 10);
    }
}
