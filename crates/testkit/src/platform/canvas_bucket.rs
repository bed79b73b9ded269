//! Canvas's API throttling, as its documentation describes it: a leaky bucket per access
//! token's user. A request is charged a fixed pre-flight penalty while it runs (so parallel
//! requests cost extra) and its real cost when it finishes; the bucket leaks at a steady rate;
//! a request that arrives with the bucket past its high-water mark is refused with
//! `403 Forbidden (Rate Limit Exceeded)`. Every answer carries `X-Request-Cost` and
//! `X-Rate-Limit-Remaining` (the high-water mark minus the level). Off until set.

use super::SimulatedLms;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The bucket's shape. Canvas's defaults are a high-water mark of 700 and a pre-flight
/// penalty of 50; the leak rate and a request's cost depend on the instance and the call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanvasBucket {
    pub high_water: f64,
    pub preflight: f64,
    /// Units charged for a finished request.
    pub cost: f64,
    /// Units leaked per second.
    pub leak_per_sec: f64,
}

impl Default for CanvasBucket {
    fn default() -> Self {
        Self {
            high_water: 700.0,
            preflight: 50.0,
            cost: 10.0,
            leak_per_sec: 50.0,
        }
    }
}

#[derive(Debug)]
struct Level {
    shape: CanvasBucket,
    level: f64,
    at: Instant,
}

impl Level {
    fn leak(&mut self) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level - elapsed * self.shape.leak_per_sec).max(0.0);
        self.at = now;
    }

    fn remaining(&self) -> f64 {
        self.shape.high_water - self.level
    }
}

#[derive(Debug, Default)]
pub(super) struct Bucket {
    level: Mutex<Option<Level>>,
    refused: AtomicU64,
}

impl Bucket {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Level>> {
        self.level.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Charges the pre-flight penalty, or refuses; `None` when no bucket is set.
    fn admit(&self) -> Option<Result<CanvasBucket, f64>> {
        let mut guard = self.lock();
        let l = guard.as_mut()?;
        l.leak();
        if l.level + l.shape.preflight > l.shape.high_water {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Some(Err(l.remaining()));
        }
        l.level += l.shape.preflight;
        Some(Ok(l.shape))
    }

    /// Swaps the penalty for the request's cost; what is left.
    fn settle(&self, shape: CanvasBucket) -> f64 {
        let mut guard = self.lock();
        match guard.as_mut() {
            Some(l) => {
                l.leak();
                l.level = (l.level - shape.preflight + shape.cost).max(0.0);
                l.remaining()
            }
            None => shape.high_water,
        }
    }
}

impl SimulatedLms {
    /// Throttles the service endpoints the way Canvas does, or stops (`None`).
    pub fn set_canvas_bucket(&self, shape: Option<CanvasBucket>) {
        *self.inner.canvas_bucket.lock() = shape.map(|shape| Level {
            shape,
            level: 0.0,
            at: Instant::now(),
        });
    }

    /// Requests refused with `403 Rate Limit Exceeded` since the LMS started.
    pub fn canvas_bucket_refusals(&self) -> u64 {
        self.inner.canvas_bucket.refused.load(Ordering::Relaxed)
    }
}

fn number(v: f64) -> HeaderValue {
    HeaderValue::from_str(&format!("{v:.1}")).unwrap_or(HeaderValue::from_static("0"))
}

/// Runs a request through the bucket.
pub(super) async fn limit(
    State(lms): State<SimulatedLms>,
    request: Request,
    next: Next,
) -> Response {
    let shape = match lms.inner.canvas_bucket.admit() {
        None => return next.run(request).await,
        Some(Ok(shape)) => shape,
        Some(Err(remaining)) => {
            let mut refused =
                (StatusCode::FORBIDDEN, "403 Forbidden (Rate Limit Exceeded)").into_response();
            refused
                .headers_mut()
                .insert("x-rate-limit-remaining", number(remaining.max(0.0)));
            return refused;
        }
    };
    let mut response = next.run(request).await;
    let remaining = lms.inner.canvas_bucket.settle(shape);
    let headers = response.headers_mut();
    headers.insert("x-request-cost", number(shape.cost));
    headers.insert("x-rate-limit-remaining", number(remaining));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_requests_cost_the_penalty_until_they_finish() {
        let b = Bucket::default();
        assert!(b.admit().is_none(), "no bucket set");
        *b.lock() = Some(Level {
            shape: CanvasBucket {
                high_water: 100.0,
                preflight: 40.0,
                cost: 5.0,
                leak_per_sec: 0.0,
            },
            level: 0.0,
            at: Instant::now(),
        });
        let first = b.admit().unwrap().unwrap();
        let second = b.admit().unwrap().unwrap();
        let third = b.admit().unwrap();
        assert_eq!(third, Err(20.0), "two in flight hold 80 of 100");
        assert_eq!(b.settle(first), 55.0);
        assert_eq!(b.settle(second), 90.0, "two finished requests cost 10");
        assert_eq!(b.refused.load(Ordering::Relaxed), 1);
    }
}
