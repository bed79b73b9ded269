//! Scores and the actors who set them.

use crate::ids::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Who set a grade. Every score and every audit entry names one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A teacher acting in the product.
    Instructor,
    /// The product's automated grading engine.
    AiGrader,
    /// lmsbridge itself or an operator's tooling.
    System,
}

impl ActorKind {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Instructor => "instructor",
            Self::AiGrader => "ai_grader",
            Self::System => "system",
        }
    }
}

impl FromStr for ActorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "instructor" => Ok(Self::Instructor),
            "ai_grader" => Ok(Self::AiGrader),
            "system" => Ok(Self::System),
            other => Err(format!("unknown actor kind {other:?}")),
        }
    }
}

/// The actor of a change: its kind and the product's identifier for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
}

impl Actor {
    /// lmsbridge acting on its own behalf (start-up, workers, CLI).
    pub fn system(id: impl Into<String>) -> Self {
        Self {
            kind: ActorKind::System,
            id: id.into(),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.id)
    }
}

/// How far the learner got (LTI AGS `activityProgress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ActivityProgress {
    Initialized,
    Started,
    InProgress,
    Submitted,
    #[default]
    Completed,
}

impl ActivityProgress {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Initialized => "Initialized",
            Self::Started => "Started",
            Self::InProgress => "InProgress",
            Self::Submitted => "Submitted",
            Self::Completed => "Completed",
        }
    }
}

/// How far grading got (LTI AGS `gradingProgress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum GradingProgress {
    #[default]
    FullyGraded,
    Pending,
    PendingManual,
    Failed,
    NotReady,
}

impl GradingProgress {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::FullyGraded => "FullyGraded",
            Self::Pending => "Pending",
            Self::PendingManual => "PendingManual",
            Self::Failed => "Failed",
            Self::NotReady => "NotReady",
        }
    }
}

/// A score as the product submits it, before it is queued.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewScore {
    pub grade_target_id: GradeTargetId,
    pub person_id: PersonId,
    pub score_given: Option<f64>,
    pub score_maximum: Option<f64>,
    pub comment: Option<String>,
    pub activity_progress: ActivityProgress,
    pub grading_progress: GradingProgress,
    pub actor: Actor,
}

/// Errors in a score the product sent, found before anything is queued.
#[derive(Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ScoreInvalid {
    #[error("score_given must be a finite number of at least 0")]
    GivenOutOfRange,
    #[error("score_maximum must be a finite number greater than 0")]
    MaximumOutOfRange,
    #[error("score_given needs score_maximum")]
    GivenWithoutMaximum,
    #[error("comment is longer than 10000 characters")]
    CommentTooLong,
    #[error("actor id must be 1 to 200 characters")]
    ActorId,
}

impl NewScore {
    /// Checks what every platform would refuse anyway, so the product hears it at once
    /// rather than from a dead letter later.
    pub fn validate(&self) -> Result<(), ScoreInvalid> {
        if let Some(given) = self.score_given
            && (!given.is_finite() || given < 0.0)
        {
            return Err(ScoreInvalid::GivenOutOfRange);
        }
        match self.score_maximum {
            Some(max) if !max.is_finite() || max <= 0.0 => {
                return Err(ScoreInvalid::MaximumOutOfRange);
            }
            None if self.score_given.is_some() => return Err(ScoreInvalid::GivenWithoutMaximum),
            _ => {}
        }
        if self
            .comment
            .as_ref()
            .is_some_and(|c| c.chars().count() > 10_000)
        {
            return Err(ScoreInvalid::CommentTooLong);
        }
        if self.actor.id.is_empty() || self.actor.id.chars().count() > 200 {
            return Err(ScoreInvalid::ActorId);
        }
        Ok(())
    }
}

/// Delivery state of a queued score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreState {
    Queued,
    Sending,
    Retrying,
    Delivered,
    Dead,
    /// A newer score for the same target and person was queued before this one was sent.
    Superseded,
    /// Not sent, on purpose: the platform would have lost a grade by it (a progress-only
    /// score erases Moodle's final grade). `last_error` says why; later scores for the same
    /// target and person are sent as usual.
    Held,
}

impl ScoreState {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Retrying => "retrying",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
            Self::Superseded => "superseded",
            Self::Held => "held",
        }
    }
}

impl FromStr for ScoreState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => Self::Queued,
            "sending" => Self::Sending,
            "retrying" => Self::Retrying,
            "delivered" => Self::Delivered,
            "dead" => Self::Dead,
            "superseded" => Self::Superseded,
            "held" => Self::Held,
            other => return Err(format!("unknown score state {other:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score() -> NewScore {
        NewScore {
            grade_target_id: GradeTargetId::generate(),
            person_id: PersonId::generate(),
            score_given: Some(7.0),
            score_maximum: Some(10.0),
            comment: None,
            activity_progress: ActivityProgress::Completed,
            grading_progress: GradingProgress::FullyGraded,
            actor: Actor {
                kind: ActorKind::AiGrader,
                id: "grader-v2".into(),
            },
        }
    }

    #[test]
    fn validation_refuses_what_platforms_refuse() {
        assert_eq!(score().validate(), Ok(()));
        let mut s = score();
        s.score_given = Some(f64::NAN);
        assert_eq!(s.validate(), Err(ScoreInvalid::GivenOutOfRange));
        let mut s = score();
        s.score_given = Some(-1.0);
        assert_eq!(s.validate(), Err(ScoreInvalid::GivenOutOfRange));
        let mut s = score();
        s.score_maximum = None;
        assert_eq!(s.validate(), Err(ScoreInvalid::GivenWithoutMaximum));
        let mut s = score();
        s.score_maximum = Some(0.0);
        assert_eq!(s.validate(), Err(ScoreInvalid::MaximumOutOfRange));
        let mut s = score();
        s.actor.id.clear();
        assert_eq!(s.validate(), Err(ScoreInvalid::ActorId));
        let mut s = score();
        s.score_given = None;
        s.score_maximum = None;
        assert_eq!(
            s.validate(),
            Ok(()),
            "a progress-only score carries no numbers"
        );
    }

    #[test]
    fn progress_names_match_the_ags_wire_names() {
        assert_eq!(
            serde_json::to_string(&GradingProgress::PendingManual).unwrap(),
            "\"PendingManual\""
        );
        assert_eq!(ActivityProgress::InProgress.as_str(), "InProgress");
        assert_eq!(
            serde_json::to_string(&ActorKind::AiGrader).unwrap(),
            "\"ai_grader\""
        );
    }
}
