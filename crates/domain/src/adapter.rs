//! The one seam between lmsbridge and an LMS.
//!
//! The passback worker and roster sync speak only to [`LmsAdapter`]. Each implementation maps
//! its platform's answers into [`DeliveryError`] so that retry policy is decided once, here,
//! and never by branching on the platform.

use crate::model::{EnrollmentStatus, PlatformKind, Role};
use crate::score::{ActivityProgress, GradingProgress};
use async_trait::async_trait;
use std::time::Duration;
use url::Url;

/// How to reach a platform's services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformEndpoints {
    pub kind: PlatformKind,
    pub issuer: String,
    pub client_id: String,
    pub token_url: Url,
    /// `aud` for client assertions when it differs from the token URL.
    pub token_audience: Option<String>,
}

/// Where on the platform a score goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetLocation {
    LtiLineItem(Url),
    ClassroomCourseWork {
        course_id: String,
        course_work_id: String,
    },
}

/// One score, resolved to platform identifiers, ready to send.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreDelivery {
    pub platform: PlatformEndpoints,
    pub target: TargetLocation,
    /// The platform's own user id (LTI `sub`).
    pub platform_user_id: String,
    pub score_given: Option<f64>,
    pub score_maximum: Option<f64>,
    pub comment: Option<String>,
    pub activity_progress: ActivityProgress,
    pub grading_progress: GradingProgress,
    /// When the score was set, in microseconds since the epoch. Platforms order scores by it.
    pub timestamp_micros: i64,
}

/// What the platform said when it accepted a score.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryReceipt {
    pub status: u16,
    /// The start of the platform's answer, for the admin view.
    pub detail: String,
}

/// Why a call to a platform failed, classified for the retry policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The platform is throttling us: slow down, then retry.
    #[error("rate limited by the platform ({detail})")]
    RateLimited {
        retry_after: Option<Duration>,
        detail: String,
    },
    /// Worth retrying: 5xx, timeouts, dropped connections, an expired token.
    #[error("temporary failure: {detail}")]
    Transient {
        status: Option<u16>,
        retry_after: Option<Duration>,
        detail: String,
    },
    /// The platform refused this request and will refuse it again (400, 404, 422, ...).
    #[error("refused by the platform (HTTP {status}): {detail}")]
    Rejected { status: u16, detail: String },
    /// Our configuration is wrong for this platform (missing scope, bad key): an admin must act.
    #[error("configuration problem: {detail}")]
    Misconfigured { detail: String },
}

impl DeliveryError {
    /// True when sending the same request later may succeed.
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Transient { .. })
    }

    /// The wait the platform asked for, if it asked.
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Transient { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

/// Which roster to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterRequest {
    pub platform: PlatformEndpoints,
    /// The NRPS `context_memberships_url`, or a Classroom course id.
    pub roster_url: Url,
    /// The page to fetch; `None` for the first.
    pub page: Option<Url>,
}

/// One member of a roster, normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterMember {
    pub platform_user_id: String,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email: Option<String>,
    pub roles: Vec<Role>,
    pub status: EnrollmentStatus,
}

/// One page of a roster and where the next one is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterPage {
    pub members: Vec<RosterMember>,
    pub next: Option<Url>,
}

/// A platform implementation: LTI Advantage, Google Classroom.
#[async_trait]
pub trait LmsAdapter: Send + Sync + std::fmt::Debug {
    /// Sends one score. Must be safe to repeat: the worker resends after a crash.
    async fn send_score(&self, score: &ScoreDelivery) -> Result<DeliveryReceipt, DeliveryError>;

    /// Reads one page of a roster.
    async fn roster_page(&self, request: &RosterRequest) -> Result<RosterPage, DeliveryError>;
}
