//! A score sent again after an attempt whose outcome was lost: its worker died mid-send (or
//! lost its lease), another worker took the row over and sent it again. The first send may
//! have landed; the platform then refuses the second with 409, because it keeps the score
//! with the latest timestamp and takes none that is not later (LTI AGS 2.0 §3.4; Canvas and
//! the simulated LMS answer 409, Moodle too, for its own reasons handled in `moodle`).
//!
//! A worker never claims a score when a newer one of the same pair exists, and timestamps
//! rise strictly per pair, so on such a resend the 409 means the platform already holds this
//! very score: it is recorded as delivered, saying so, instead of dead. A 409 on a score
//! with no lost attempt stays a permanent refusal.

use domain::{DeliveryError, DeliveryReceipt, PlatformKind};
use store::{ClaimedScore, Store, StoreError};

/// The detail recorded for a score found already on the platform.
pub const ALREADY_DELIVERED: &str = "the platform already holds this score: an earlier attempt, whose answer was lost when its worker stopped, delivered it";

/// Turns a 409 on a resend after a lost attempt into a delivery; any other result is
/// returned as it is.
pub(crate) async fn landed_before(
    store: &Store,
    score: &ClaimedScore,
    result: Result<DeliveryReceipt, DeliveryError>,
) -> Result<Result<DeliveryReceipt, DeliveryError>, StoreError> {
    let conflict = matches!(result, Err(DeliveryError::Rejected { status: 409, .. }));
    // Moodle's 409 compares with its own save time, not with the score it holds.
    if !conflict || score.attempts < 2 || score.platform.kind == PlatformKind::Moodle {
        return Ok(result);
    }
    let recorded = store.recorded_attempts(score).await?;
    if recorded >= score.attempts - 1 {
        return Ok(result);
    }
    tracing::info!(score = %score.id, attempt = score.attempts, recorded,
        "the platform already holds the score: an interrupted attempt delivered it");
    Ok(Ok(DeliveryReceipt::new(409, ALREADY_DELIVERED)))
}
