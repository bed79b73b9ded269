//! What the simulated LMS knows: its course, people, activities and line items, and the
//! scores tools have sent it.
//!
//! The seed data is fixed so that tests, snapshots and the demo can name ids without looking
//! them up first.

use lti::roles::LtiRole;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

/// The one course of the simulated LMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimCourse {
    pub id: String,
    pub label: String,
    pub title: String,
}

/// A person enrolled in the course.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimUser {
    pub id: String,
    pub name: String,
    pub given_name: String,
    pub family_name: String,
    pub email: String,
    pub role: LtiRole,
}

impl SimUser {
    /// Only learners can be graded; AGS score posts for anyone else are refused.
    pub fn is_learner(&self) -> bool {
        self.role == LtiRole::Learner
    }
}

/// An activity (resource link) in the course that launches the tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimResource {
    /// The resource link id sent in the launch.
    pub id: String,
    pub title: String,
    /// The id of the line item created with the activity.
    pub line_item_id: String,
}

/// A gradebook column (AGS §3.2), as the platform holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimLineItem {
    pub id: String,
    /// The line item URL, which is also its id on the wire.
    pub url: Url,
    pub label: String,
    pub score_maximum: f64,
    pub resource_link_id: Option<String>,
    pub resource_id: Option<String>,
    pub tag: Option<String>,
    pub start_date_time: Option<String>,
    pub end_date_time: Option<String>,
}

/// One score the platform accepted, exactly as the tool sent it, in arrival order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedScore {
    pub line_item_id: String,
    pub user_id: String,
    pub score_given: Option<f64>,
    pub score_maximum: Option<f64>,
    pub comment: Option<String>,
    /// The tool's timestamp, verbatim.
    pub timestamp: String,
    pub activity_progress: String,
    pub grading_progress: String,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
}

/// The grade a teacher would see for one learner in one column: the score with the latest
/// timestamp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradebookEntry {
    pub line_item_id: String,
    pub line_item_label: String,
    pub user_id: String,
    pub score_given: Option<f64>,
    pub score_maximum: Option<f64>,
    /// `score_given` rescaled to the line item's own maximum (AGS §3.5: resultScore), when
    /// both scores were given.
    pub result_score: Option<f64>,
    pub comment: Option<String>,
    pub activity_progress: String,
    pub grading_progress: String,
    pub timestamp: String,
}

/// A line item as stored, before it gets its URL.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LineItem {
    pub id: u64,
    pub label: String,
    pub score_maximum: f64,
    pub resource_link_id: Option<String>,
    pub resource_id: Option<String>,
    pub tag: Option<String>,
    pub start_date_time: Option<String>,
    pub end_date_time: Option<String>,
}

pub(super) fn course() -> SimCourse {
    SimCourse {
        id: "course-1".into(),
        label: "BIO101".into(),
        title: "Introduction to Biology".into(),
    }
}

pub(super) fn users() -> Vec<SimUser> {
    let user = |id: &str, given: &str, family: &str, email: &str, role| SimUser {
        id: id.into(),
        name: format!("{given} {family}"),
        given_name: given.into(),
        family_name: family.into(),
        email: format!("{email}@example.edu"),
        role,
    };
    vec![
        user(
            "student-1",
            "Ada",
            "Lovelace",
            "ada.lovelace",
            LtiRole::Learner,
        ),
        user(
            "student-2",
            "Alan",
            "Turing",
            "alan.turing",
            LtiRole::Learner,
        ),
        user(
            "teacher-1",
            "Grace",
            "Hopper",
            "grace.hopper",
            LtiRole::Instructor,
        ),
    ]
}

pub(super) fn resources() -> Vec<SimResource> {
    vec![
        SimResource {
            id: "resource-1".into(),
            title: "Cell structure quiz".into(),
            line_item_id: "1".into(),
        },
        SimResource {
            id: "resource-2".into(),
            title: "Photosynthesis essay".into(),
            line_item_id: "2".into(),
        },
    ]
}

/// One line item per activity, created with it as an LMS does when a graded activity is added.
pub(super) fn line_items() -> Vec<LineItem> {
    resources()
        .into_iter()
        .enumerate()
        .map(|(i, r)| LineItem {
            id: i as u64 + 1,
            label: r.title,
            score_maximum: 100.0,
            resource_link_id: Some(r.id),
            resource_id: None,
            tag: None,
            start_date_time: None,
            end_date_time: None,
        })
        .collect()
}
