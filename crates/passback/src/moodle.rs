//! Moodle's grade passback, as observed on Moodle 4.2 (mod_lti as the platform, AGS 2.0
//! §3.4 scores), and what the worker does so that the newest final score always lands.
//!
//! * A score whose `gradingProgress` is not `FullyGraded` clears the grade Moodle stored. So a
//!   progress-only score (`Pending`, `PendingManual`, `Failed`, `NotReady`) for a learner
//!   whose newest delivered score is a final grade is **held back**: it is never sent, ends in
//!   state `held` with the reason in `last_error` (`GET /api/v1/scores/{id}` shows both), gets
//!   a `score.held` audit entry and, for tenants with a webhook, a `score.held` event. The
//!   next final score for the learner is sent as usual. Progress scores before any final
//!   grade was delivered erase nothing and are sent.
//! * Moodle refuses a score with 409 when its timestamp is not later than the time Moodle
//!   saved the stored grade, in whole seconds: of two scores for one learner within a second
//!   the newer is refused, and resending it with the same timestamp is refused forever. A 409
//!   on a score that is still the newest of its pair is **sent again under a fresh
//!   timestamp** at least a second later (the new timestamp is the time it becomes due,
//!   later than every other score of the pair; stored, and audited as `score.restamped`).
//!   When a newer score of the pair exists, the refused one is superseded by it instead.
//!   These retries count as attempts, so they end like any other retry.
//! * Moodle caps a score above the item's maximum. Nothing to do: the product's values are
//!   sent and kept as given.
//!
//! On every other platform a 409 is a permanent refusal and progress scores are sent.

use domain::{DeliveryError, GradingProgress, PlatformKind};
use rand::Rng;
use std::time::Duration;
use store::{ClaimedScore, RestampOutcome, Store, StoreError, now_micros};

/// Why a held score was not sent, as `GET /api/v1/scores/{id}` shows it.
pub const HOLD_REASON: &str = "held back: Moodle clears a learner's grade when it receives a score that is not FullyGraded, \
     and this learner's newest delivered score is a final grade; send a FullyGraded score to change it";

/// The least wait before a refused score is sent again: Moodle's stored time has whole
/// seconds, so a timestamp a second after the refusal is later than it.
const RESTAMP_DELAY: Duration = Duration::from_secs(1);
/// Spread over this much more, so refused scores of one burst do not return all at once.
const RESTAMP_JITTER: Duration = Duration::from_millis(500);

/// Whether sending `score` could erase a final grade on its platform.
pub(crate) fn may_erase_grade(score: &ClaimedScore) -> bool {
    score.platform.kind == PlatformKind::Moodle
        && score.grading_progress != GradingProgress::FullyGraded
}

/// Holds `score` back when sending it would erase a delivered final grade. True when held
/// (nothing is to be sent).
pub(crate) async fn hold_if_it_would_erase(
    store: &Store,
    worker: &str,
    score: &ClaimedScore,
) -> Result<bool, StoreError> {
    if !may_erase_grade(score) {
        return Ok(false);
    }
    match store
        .hold_if_final_grade_delivered(score, worker, HOLD_REASON)
        .await?
    {
        Some(protected) => {
            tracing::info!(score = %score.id, %protected, progress = score.grading_progress.as_str(),
                "progress score held back: it would erase the final grade delivered to Moodle");
            Ok(true)
        }
        None => Ok(false),
    }
}

/// For a Moodle platform's 409 (the timestamp is not later than Moodle's save time), while
/// attempts remain: takes the score back into the queue under a fresh timestamp, or marks it
/// superseded when a newer one exists. True when handled (the caller records nothing more).
pub(crate) async fn restamp_if_refused_as_stale(
    store: &Store,
    worker: &str,
    max_attempts: i64,
    score: &ClaimedScore,
    result: &Result<domain::DeliveryReceipt, DeliveryError>,
    started_at: i64,
    latency_ms: i64,
) -> Result<bool, StoreError> {
    let Err(DeliveryError::Rejected {
        status: 409,
        detail,
    }) = result
    else {
        return Ok(false);
    };
    if score.platform.kind != PlatformKind::Moodle || score.attempts >= max_attempts {
        return Ok(false);
    }
    let jitter = rand::rng().random_range(0..=RESTAMP_JITTER.as_micros() as u64);
    let at = now_micros() + RESTAMP_DELAY.as_micros() as i64 + jitter as i64;
    match store
        .retry_with_fresh_timestamp(score, worker, started_at, latency_ms, 409, detail, at)
        .await?
    {
        RestampOutcome::Restamped {
            previous_micros,
            timestamp_micros,
        } => tracing::info!(score = %score.id, previous_micros, timestamp_micros,
            "Moodle refused the score as out of date; it is sent again under a fresh timestamp"),
        RestampOutcome::Superseded { by } => tracing::info!(score = %score.id, newer = %by,
            "Moodle refused the score as out of date; a newer score is sent instead"),
        RestampOutcome::LeaseLost => tracing::warn!(score = %score.id,
            "lease lost before the outcome was recorded; another worker owns the score"),
    }
    Ok(true)
}
