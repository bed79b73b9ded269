//! A request rate limit over the service endpoints (token, AGS, NRPS): a token bucket that
//! answers `429 Too Many Requests` with `Retry-After` (RFC 6585 §4, RFC 9110 §10.2.3) once it
//! is empty, the way hosted LMSs' gateways throttle tools. Off until set.

use super::SimulatedLms;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A sustained rate and the burst allowed after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_sec: f64,
    /// Requests that may arrive at once; the bucket's size.
    pub burst: f64,
}

#[derive(Debug)]
struct Bucket {
    limit: RateLimit,
    tokens: f64,
    refilled_at: Instant,
}

/// The bucket, when a limit is set, and what it did.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    bucket: Mutex<Option<Bucket>>,
    admitted: AtomicU64,
    throttled: AtomicU64,
}

impl Throttle {
    fn set(&self, limit: Option<RateLimit>) {
        *self.bucket.lock().unwrap_or_else(|e| e.into_inner()) = limit
            .filter(|l| l.per_sec.is_finite() && l.per_sec > 0.0)
            .map(|limit| Bucket {
                limit,
                tokens: limit.burst.max(1.0),
                refilled_at: Instant::now(),
            });
    }

    /// Takes a token, or says how long until one is available.
    fn take(&self) -> Result<(), Duration> {
        let mut guard = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let Some(b) = guard.as_mut() else {
            return Ok(());
        };
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(b.refilled_at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * b.limit.per_sec).min(b.limit.burst.max(1.0));
        b.refilled_at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            self.admitted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        } else {
            self.throttled.fetch_add(1, Ordering::Relaxed);
            Err(Duration::from_secs_f64((1.0 - b.tokens) / b.limit.per_sec))
        }
    }
}

impl SimulatedLms {
    /// Limits the service endpoints to `limit`, or lifts the limit (`None`). Requests beyond
    /// it are answered 429 with `Retry-After` in whole seconds, rounded up.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        self.inner.throttle.set(limit);
    }

    /// Service requests let through by the rate limit and refused by it, since the LMS
    /// started (requests while no limit was set are not counted).
    pub fn rate_limit_counts(&self) -> (u64, u64) {
        (
            self.inner.throttle.admitted.load(Ordering::Relaxed),
            self.inner.throttle.throttled.load(Ordering::Relaxed),
        )
    }
}

/// Lets a request through the bucket or answers 429.
pub(super) async fn limit(
    State(lms): State<SimulatedLms>,
    request: Request,
    next: Next,
) -> Response {
    match lms.inner.throttle.take() {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs.to_string())],
                axum::Json(serde_json::json!({
                    "error": "rate_limited",
                    "error_description": "request rate limit exceeded",
                })),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_admits_its_burst_then_refuses_until_it_refills() {
        let t = Throttle::default();
        assert_eq!(t.take(), Ok(()), "no limit set: everything passes");
        t.set(Some(RateLimit {
            per_sec: 100.0,
            burst: 5.0,
        }));
        for _ in 0..5 {
            assert_eq!(t.take(), Ok(()));
        }
        let wait = t
            .take()
            .expect_err("the sixth within the same instant is refused");
        assert!(wait <= Duration::from_millis(10), "{wait:?}");
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(t.take(), Ok(()), "refilled at 100/s");
        assert_eq!(t.throttled.load(Ordering::Relaxed), 1);
        t.set(None);
        assert!((0..100).all(|_| t.take().is_ok()));
    }
}
