//! Moodle's handling of AGS scores (AGS 2.0 §3.4), as observed on Moodle 4.2 with mod_lti
//! as the platform, for an LMS set up with [`LmsBehaviour::Moodle`]:
//!
//! * the stored time of a grade is Moodle's own save time in whole seconds, not the tool's
//!   timestamp; a score whose timestamp is not later than it is refused with 409, so of two
//!   scores for one learner within a second the newer is refused, and so is every resend of
//!   it with the same timestamp;
//! * a score whose `gradingProgress` is not `FullyGraded` erases the stored grade;
//! * a score above the maximum is capped at the line item's maximum.
//!
//! [`LmsBehaviour::Standard`] (the default) orders scores by the tool's timestamps, keeps the
//! grade of every accepted score and does not cap.

use super::RecordedScore;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Which platform's score handling the simulated LMS reproduces. Chosen at setup
/// ([`super::LmsConfig::behaviour`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LmsBehaviour {
    /// Scores ordered by the tool's timestamps, as the AGS specification describes.
    #[default]
    Standard,
    /// Moodle 4.2's save-time ordering, grade erasure and capping.
    Moodle,
}

/// Whether a score stamped `at` is refused (409) given the learner's current score.
pub(super) fn refuses_as_stale(
    behaviour: LmsBehaviour,
    current: Option<&RecordedScore>,
    at: OffsetDateTime,
) -> bool {
    let Some(current) = current else {
        return false;
    };
    match behaviour {
        LmsBehaviour::Standard => {
            OffsetDateTime::parse(&current.timestamp, &Rfc3339).is_ok_and(|last| at <= last)
        }
        // Both sides in whole seconds: Moodle stores its save time as a Unix time and reads
        // the tool's timestamp with strtotime().
        LmsBehaviour::Moodle => at.unix_timestamp() <= current.received_at.unix_timestamp(),
    }
}

/// The grade the platform holds after `score`, rescaled to the line item's maximum.
pub(super) fn stored_result(
    behaviour: LmsBehaviour,
    score: &RecordedScore,
    line_item_maximum: f64,
) -> Option<f64> {
    let rescaled = match (score.score_given, score.score_maximum) {
        (Some(given), Some(max)) if max > 0.0 => Some(given / max * line_item_maximum),
        _ => None,
    };
    match behaviour {
        LmsBehaviour::Standard => rescaled,
        LmsBehaviour::Moodle if score.grading_progress != "FullyGraded" => None,
        LmsBehaviour::Moodle => rescaled.map(|r| r.min(line_item_maximum)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(timestamp: &str, received_at: OffsetDateTime, progress: &str) -> RecordedScore {
        RecordedScore {
            line_item_id: "1".into(),
            user_id: "student-1".into(),
            score_given: Some(12.0),
            score_maximum: Some(10.0),
            comment: None,
            timestamp: timestamp.into(),
            activity_progress: "Completed".into(),
            grading_progress: progress.into(),
            received_at,
        }
    }

    #[test]
    fn moodle_compares_with_its_save_time_in_whole_seconds() {
        let saved = OffsetDateTime::parse("2026-03-01T10:00:05.900Z", &Rfc3339).unwrap();
        let current = score("2026-03-01T10:00:05.100Z", saved, "FullyGraded");
        let newer = OffsetDateTime::parse("2026-03-01T10:00:05.950Z", &Rfc3339).unwrap();
        let next_second = OffsetDateTime::parse("2026-03-01T10:00:06.000Z", &Rfc3339).unwrap();
        // Later than the tool's timestamp and than the save itself, but in the same second.
        assert!(!refuses_as_stale(
            LmsBehaviour::Standard,
            Some(&current),
            newer
        ));
        assert!(refuses_as_stale(
            LmsBehaviour::Moodle,
            Some(&current),
            newer
        ));
        assert!(!refuses_as_stale(
            LmsBehaviour::Moodle,
            Some(&current),
            next_second
        ));
        assert!(!refuses_as_stale(LmsBehaviour::Moodle, None, newer));
    }

    #[test]
    fn moodle_erases_on_progress_scores_and_caps() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let over = score("1970-01-01T00:00:00Z", at, "FullyGraded");
        assert_eq!(
            stored_result(LmsBehaviour::Standard, &over, 100.0),
            Some(120.0)
        );
        assert_eq!(
            stored_result(LmsBehaviour::Moodle, &over, 100.0),
            Some(100.0)
        );
        let pending = score("1970-01-01T00:00:00Z", at, "Pending");
        assert_eq!(
            stored_result(LmsBehaviour::Standard, &pending, 100.0),
            Some(120.0)
        );
        assert_eq!(stored_result(LmsBehaviour::Moodle, &pending, 100.0), None);
    }
}
