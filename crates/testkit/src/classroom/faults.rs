//! Fault injection for the simulated Classroom: what Google does on a bad day.
//!
//! Classroom throttles per user and per project with 429 `RESOURCE_EXHAUSTED` (Classroom API
//! "Usage limits"), fails with 500 `INTERNAL` and 503 `UNAVAILABLE`, and access tokens stop
//! working before `expires_in` when Google revokes them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How `Retry-After` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// Delta-seconds.
    Seconds(u64),
    /// An HTTP-date this far in the future.
    HttpDate(Duration),
}

/// One injected answer to a Classroom API call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClassroomFault {
    /// 429 `RESOURCE_EXHAUSTED`, with `Retry-After` when given.
    ResourceExhausted { retry_after: Option<RetryAfter> },
    /// 500 `INTERNAL`.
    Internal,
    /// 503 `UNAVAILABLE`.
    Unavailable,
    /// Any Google error: the HTTP status, the canonical status and the message.
    Error {
        http_status: u16,
        status: String,
        message: String,
    },
}

/// The faults switched on. Shared by every request; safe to change mid-test.
#[derive(Debug, Default)]
pub struct ClassroomFaults {
    next: Mutex<VecDeque<ClassroomFault>>,
    /// Access tokens remember the generation they were issued in; bumping it revokes them.
    token_generation: AtomicU64,
}

impl ClassroomFaults {
    fn next(&self) -> std::sync::MutexGuard<'_, VecDeque<ClassroomFault>> {
        self.next.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `n` authenticated API calls answer `fault` (after any queued before).
    pub fn fail_next(&self, n: usize, fault: ClassroomFault) {
        let mut q = self.next();
        q.extend(std::iter::repeat_n(fault, n));
    }

    /// Every access token issued so far answers 401 from now on; refresh tokens still work.
    pub fn expire_access_tokens(&self) {
        self.token_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Switches queued faults off. Expired tokens stay expired.
    pub fn clear(&self) {
        self.next().clear();
    }

    pub(super) fn take(&self) -> Option<ClassroomFault> {
        self.next().pop_front()
    }

    pub(super) fn token_generation(&self) -> u64 {
        self.token_generation.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_served_in_order_then_stop() {
        let f = ClassroomFaults::default();
        f.fail_next(1, ClassroomFault::Internal);
        f.fail_next(2, ClassroomFault::Unavailable);
        assert_eq!(f.take(), Some(ClassroomFault::Internal));
        assert_eq!(f.take(), Some(ClassroomFault::Unavailable));
        assert_eq!(f.take(), Some(ClassroomFault::Unavailable));
        assert_eq!(f.take(), None);
        f.fail_next(3, ClassroomFault::Internal);
        f.clear();
        assert_eq!(f.take(), None);
    }
}
