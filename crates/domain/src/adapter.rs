//! The one seam between lmsbridge and an LMS.
//!
//! The passback worker and roster sync speak only to [`LmsAdapter`]. Each implementation maps
//! its platform's answers into [`DeliveryError`] so that retry policy is decided once, here,
//! and never by branching on the platform.

use crate::model::{EnrollmentStatus, PlatformKind, Role};
use crate::score::{ActivityProgress, GradingProgress};
use async_trait::async_trait;
use std::time::Duration;
use time::OffsetDateTime;
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
    /// A Classroom add-on attachment: `pointsEarned` on the student's attachment submission.
    ClassroomAddOnAttachment {
        course_id: String,
        item_id: String,
        attachment_id: String,
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
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryReceipt {
    pub status: u16,
    /// The start of the platform's answer, for the admin view.
    pub detail: String,
    /// What is left of the platform's own rate budget after this request, when it says
    /// (Canvas's `X-Rate-Limit-Remaining`). The limiter slows down before the budget runs out.
    pub rate_limit_remaining: Option<f64>,
}

impl DeliveryReceipt {
    /// A receipt without a rate budget reading.
    pub fn new(status: u16, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            rate_limit_remaining: None,
        }
    }
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

/// A gradebook column's fields as the product sets them: an AGS line item (a Classroom
/// courseWork's title and maximum points when that adapter lands).
#[derive(Clone, Debug, PartialEq)]
pub struct LineItemFields {
    pub label: String,
    /// Greater than 0.
    pub score_maximum: f64,
    /// The product's own id for the activity this column grades (AGS `resourceId`).
    pub resource_id: Option<String>,
    /// The platform's resource link the column is bound to (AGS `resourceLinkId`).
    pub resource_link_id: Option<String>,
    /// A product-chosen qualifier such as `final` (AGS `tag`).
    pub tag: Option<String>,
    pub start_date_time: Option<OffsetDateTime>,
    pub end_date_time: Option<OffsetDateTime>,
    /// Whether learners may see the grades, where the platform supports it.
    pub grades_released: Option<bool>,
}

/// A change to some of a line item's fields: `None` keeps a field as the platform holds it,
/// `Some(None)` clears it. Whatever the platform holds beyond these fields is kept too.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LineItemChanges {
    pub label: Option<String>,
    pub score_maximum: Option<f64>,
    pub resource_id: Option<Option<String>>,
    pub resource_link_id: Option<Option<String>>,
    pub tag: Option<Option<String>>,
    pub start_date_time: Option<Option<OffsetDateTime>>,
    pub end_date_time: Option<Option<OffsetDateTime>>,
    pub grades_released: Option<Option<bool>>,
}

impl LineItemChanges {
    /// True when the change touches nothing.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// The fields after this change.
    pub fn apply(&self, current: &LineItemFields) -> LineItemFields {
        fn pick<T: Clone>(change: &Option<T>, current: &T) -> T {
            change.clone().unwrap_or_else(|| current.clone())
        }
        LineItemFields {
            label: pick(&self.label, &current.label),
            score_maximum: pick(&self.score_maximum, &current.score_maximum),
            resource_id: pick(&self.resource_id, &current.resource_id),
            resource_link_id: pick(&self.resource_link_id, &current.resource_link_id),
            tag: pick(&self.tag, &current.tag),
            start_date_time: pick(&self.start_date_time, &current.start_date_time),
            end_date_time: pick(&self.end_date_time, &current.end_date_time),
            grades_released: pick(&self.grades_released, &current.grades_released),
        }
    }
}

/// A line item as the platform holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlatformLineItem {
    /// Where the platform keeps it: the AGS line item URL, exactly as given.
    pub location: Url,
    pub fields: LineItemFields,
}

/// Which line items of a context to list; unset filters match everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineItemsRequest {
    pub platform: PlatformEndpoints,
    /// The context's line item container (AGS `lineitems`).
    pub container: Url,
    pub resource_link_id: Option<String>,
    pub resource_id: Option<String>,
    pub tag: Option<String>,
}

/// One learner's current grade in a line item, as the platform holds it (an instructor
/// may have changed it since the last score was sent).
#[derive(Clone, Debug, PartialEq)]
pub struct PlatformResult {
    /// The platform's own user id (LTI `sub`).
    pub platform_user_id: String,
    pub result_score: Option<f64>,
    pub result_maximum: Option<f64>,
    pub comment: Option<String>,
}

/// Which page of a line item's results to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultsRequest {
    pub platform: PlatformEndpoints,
    pub line_item: Url,
    /// Only this learner's result.
    pub platform_user_id: Option<String>,
    /// Page size to ask for; the platform may send fewer.
    pub limit: Option<u32>,
    /// The page to fetch (a `next` of an earlier page, on the platform's host); `None` for
    /// the first.
    pub page: Option<Url>,
}

/// One page of results and where the next one is.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultsPage {
    pub results: Vec<PlatformResult>,
    pub next: Option<Url>,
}

/// Gradebook columns and their results: what the product manages through lmsbridge beside
/// scores. Implemented next to [`LmsAdapter`] by each platform adapter.
#[async_trait]
pub trait GradebookAdapter: Send + Sync + std::fmt::Debug {
    /// Every line item of a context matching the request's filters (all pages).
    async fn list_line_items(
        &self,
        request: &LineItemsRequest,
    ) -> Result<Vec<PlatformLineItem>, DeliveryError>;

    /// One line item.
    async fn get_line_item(
        &self,
        platform: &PlatformEndpoints,
        location: &Url,
    ) -> Result<PlatformLineItem, DeliveryError>;

    /// Creates a line item in a context's container.
    async fn create_line_item(
        &self,
        platform: &PlatformEndpoints,
        container: &Url,
        fields: &LineItemFields,
    ) -> Result<PlatformLineItem, DeliveryError>;

    /// Changes some fields of a line item, keeping everything else the platform holds.
    async fn update_line_item(
        &self,
        platform: &PlatformEndpoints,
        location: &Url,
        changes: &LineItemChanges,
    ) -> Result<PlatformLineItem, DeliveryError>;

    /// Deletes a line item (and, on the platform, its grades).
    async fn delete_line_item(
        &self,
        platform: &PlatformEndpoints,
        location: &Url,
    ) -> Result<(), DeliveryError>;

    /// Reads one page of a line item's results.
    async fn results_page(&self, request: &ResultsRequest) -> Result<ResultsPage, DeliveryError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_keep_clear_or_replace_each_field() {
        let current = LineItemFields {
            label: "Quiz".into(),
            score_maximum: 10.0,
            resource_id: Some("quiz-1".into()),
            resource_link_id: Some("rl-1".into()),
            tag: Some("final".into()),
            start_date_time: None,
            end_date_time: Some(OffsetDateTime::UNIX_EPOCH),
            grades_released: Some(true),
        };
        assert!(LineItemChanges::default().is_empty());
        assert_eq!(LineItemChanges::default().apply(&current), current);
        let changes = LineItemChanges {
            label: Some("Quiz 2".into()),
            tag: Some(None),
            start_date_time: Some(Some(OffsetDateTime::UNIX_EPOCH)),
            ..Default::default()
        };
        assert!(!changes.is_empty());
        let after = changes.apply(&current);
        assert_eq!(after.label, "Quiz 2");
        assert_eq!(after.tag, None);
        assert_eq!(after.start_date_time, Some(OffsetDateTime::UNIX_EPOCH));
        assert_eq!(after.score_maximum, 10.0);
        assert_eq!(after.resource_id.as_deref(), Some("quiz-1"));
        assert_eq!(after.end_date_time, current.end_date_time);
        assert_eq!(after.grades_released, Some(true));
    }
}
