//! Scaling a score to a courseWork's points.
//!
//! A product reports `score_given` out of `score_maximum` (LTI AGS §3.4 style); Classroom
//! stores grades as points out of the courseWork's `maxPoints`, rounded to two decimal places
//! (`StudentSubmission.draftGrade` in the discovery document).

/// Why a score cannot become a Classroom grade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScaleError {
    #[error("the score is not a finite number")]
    NotFinite,
    #[error("the score is negative; Classroom grades must not be")]
    Negative,
    #[error("the score's maximum must be greater than zero")]
    NoMaximum,
    #[error("the assignment is ungraded (its maxPoints is zero or unset)")]
    Ungraded,
}

/// `score_given / score_maximum` of `max_points`, rounded half away from zero to two
/// decimals. A score above its maximum (extra credit) stays above `max_points`: Classroom
/// accepts that, and capping would lose what the product said.
pub fn scale_to_max_points(
    score_given: f64,
    score_maximum: f64,
    max_points: Option<f64>,
) -> Result<f64, ScaleError> {
    if !score_given.is_finite() || !score_maximum.is_finite() {
        return Err(ScaleError::NotFinite);
    }
    if score_given < 0.0 {
        return Err(ScaleError::Negative);
    }
    if score_maximum <= 0.0 {
        return Err(ScaleError::NoMaximum);
    }
    let max_points = match max_points {
        Some(m) if m.is_finite() && m > 0.0 => m,
        _ => return Err(ScaleError::Ungraded),
    };
    Ok(round2(score_given / score_maximum * max_points))
}

/// Rounds to two decimals as Classroom does.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_and_rounds() {
        assert_eq!(scale_to_max_points(8.5, 10.0, Some(40.0)), Ok(34.0));
        assert_eq!(scale_to_max_points(1.0, 3.0, Some(100.0)), Ok(33.33));
        assert_eq!(scale_to_max_points(2.0, 3.0, Some(100.0)), Ok(66.67));
        assert_eq!(scale_to_max_points(0.0, 5.0, Some(20.0)), Ok(0.0));
        assert_eq!(scale_to_max_points(12.0, 10.0, Some(50.0)), Ok(60.0));
    }

    #[test]
    fn refuses_what_is_not_a_grade() {
        assert_eq!(
            scale_to_max_points(f64::NAN, 1.0, Some(1.0)),
            Err(ScaleError::NotFinite)
        );
        assert_eq!(
            scale_to_max_points(-1.0, 1.0, Some(1.0)),
            Err(ScaleError::Negative)
        );
        assert_eq!(
            scale_to_max_points(1.0, 0.0, Some(1.0)),
            Err(ScaleError::NoMaximum)
        );
        assert_eq!(
            scale_to_max_points(1.0, 1.0, Some(0.0)),
            Err(ScaleError::Ungraded)
        );
        assert_eq!(
            scale_to_max_points(1.0, 1.0, None),
            Err(ScaleError::Ungraded)
        );
    }
}
