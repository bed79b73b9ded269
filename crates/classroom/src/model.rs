//! The Classroom API v1 resources lmsbridge reads and writes, as the discovery document's
//! schemas define them (`Course`, `UserProfile`, `Student`, `Teacher`, `CourseWork`,
//! `StudentSubmission`, `AddOnAttachment`, `AddOnAttachmentStudentSubmission`,
//! `AddOnContext`, `Registration`). Only the fields we use are typed; unknown ones are
//! ignored so that Google adding fields breaks nothing.

use crate::ids::{AttachmentId, CourseId, CourseWorkId, RegistrationId, SubmissionId, UserId};
use serde::{Deserialize, Serialize};

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $wire:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum $name {
            $(#[serde(rename = $wire)] $variant,)*
            /// A value Google added after this was written.
            #[serde(other)]
            Unknown,
        }

        impl $name {
            pub const fn as_str(&self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)*
                    Self::Unknown => "UNKNOWN",
                }
            }
        }
    };
}

wire_enum!(
    /// `Course.courseState`.
    CourseState {
        Active = "ACTIVE",
        Archived = "ARCHIVED",
        Provisioned = "PROVISIONED",
        Declined = "DECLINED",
        Suspended = "SUSPENDED",
    }
);

wire_enum!(
    /// `CourseWork.state`.
    CourseWorkState {
        Published = "PUBLISHED",
        Draft = "DRAFT",
        Deleted = "DELETED",
    }
);

wire_enum!(
    /// `CourseWork.workType`.
    WorkType {
        Assignment = "ASSIGNMENT",
        ShortAnswerQuestion = "SHORT_ANSWER_QUESTION",
        MultipleChoiceQuestion = "MULTIPLE_CHOICE_QUESTION",
    }
);

wire_enum!(
    /// `StudentSubmission.state`.
    SubmissionState {
        New = "NEW",
        Created = "CREATED",
        TurnedIn = "TURNED_IN",
        Returned = "RETURNED",
        ReclaimedByStudent = "RECLAIMED_BY_STUDENT",
    }
);

/// A person named in a filter: the numeric id, an email address, or the caller (`"me"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Me,
    Id(UserId),
    Email(String),
}

impl UserRef {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Me => "me",
            Self::Id(id) => id.as_str(),
            Self::Email(e) => e,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Course {
    pub id: CourseId,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub section: Option<String>,
    #[serde(default)]
    pub owner_id: Option<UserId>,
    #[serde(default)]
    pub course_state: Option<CourseState>,
    #[serde(default)]
    pub alternate_link: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Name {
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub full_name: Option<String>,
}

/// A person as Classroom shows them to the caller. `email_address` is present only when the
/// token carries `classroom.profile.emails`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    pub id: UserId,
    #[serde(default)]
    pub name: Option<Name>,
    #[serde(default)]
    pub email_address: Option<String>,
    #[serde(default)]
    pub photo_url: Option<String>,
}

/// A student or teacher of a course (`Student`, `Teacher`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CourseMember {
    pub course_id: CourseId,
    pub user_id: UserId,
    #[serde(default)]
    pub profile: Option<UserProfile>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CourseWork {
    pub id: CourseWorkId,
    pub course_id: CourseId,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub state: Option<CourseWorkState>,
    #[serde(default)]
    pub work_type: Option<WorkType>,
    /// Zero or absent: ungraded.
    #[serde(default)]
    pub max_points: Option<f64>,
    /// Whether our Cloud project created it, and so may change its grades.
    #[serde(default)]
    pub associated_with_developer: Option<bool>,
    #[serde(default)]
    pub alternate_link: Option<String>,
}

/// An assignment to create: always `ASSIGNMENT`, `PUBLISHED`, graded out of `max_points`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCourseWork {
    pub title: String,
    pub description: Option<String>,
    /// Classroom requires a whole, non-negative number; zero makes an ungraded assignment.
    pub max_points: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CourseWorkBody<'a> {
    pub title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    pub work_type: WorkType,
    pub state: CourseWorkState,
    pub max_points: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StudentSubmission {
    pub id: SubmissionId,
    pub course_id: CourseId,
    pub course_work_id: CourseWorkId,
    pub user_id: UserId,
    #[serde(default)]
    pub state: Option<SubmissionState>,
    /// Teacher-only pending grade.
    #[serde(default)]
    pub draft_grade: Option<f64>,
    /// The grade the student sees once the submission is returned.
    #[serde(default)]
    pub assigned_grade: Option<f64>,
    #[serde(default)]
    pub late: Option<bool>,
    #[serde(default)]
    pub associated_with_developer: Option<bool>,
}

/// Which grades a patch sets. At least one must be given.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GradeUpdate {
    pub draft_grade: Option<f64>,
    pub assigned_grade: Option<f64>,
}

impl GradeUpdate {
    pub fn draft(grade: f64) -> Self {
        Self {
            draft_grade: Some(grade),
            assigned_grade: None,
        }
    }

    pub fn assigned(grade: f64) -> Self {
        Self {
            draft_grade: None,
            assigned_grade: Some(grade),
        }
    }

    pub fn both(grade: f64) -> Self {
        Self {
            draft_grade: Some(grade),
            assigned_grade: Some(grade),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbedUri {
    pub uri: String,
}

/// An add-on attachment on a post.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddOnAttachment {
    pub id: AttachmentId,
    pub course_id: CourseId,
    pub item_id: CourseWorkId,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub max_points: Option<f64>,
    #[serde(default)]
    pub grade_sync_enabled: Option<bool>,
    #[serde(default)]
    pub teacher_view_uri: Option<EmbedUri>,
    #[serde(default)]
    pub student_view_uri: Option<EmbedUri>,
    #[serde(default)]
    pub student_work_review_uri: Option<EmbedUri>,
}

/// An attachment to create. Classroom checks each URI against the allowed prefixes in the
/// add-on's Marketplace listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAddOnAttachment {
    pub title: String,
    pub teacher_view_uri: url::Url,
    pub student_view_uri: url::Url,
    /// Required for an activity-type attachment, and for grades.
    pub student_work_review_uri: Option<url::Url>,
    /// Positive for grade passback; needs `student_work_review_uri`.
    pub max_points: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AttachmentBody<'a> {
    pub title: &'a str,
    pub teacher_view_uri: EmbedUri,
    pub student_view_uri: EmbedUri,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub student_work_review_uri: Option<EmbedUri>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_points: Option<u32>,
}

/// A student's work on one add-on attachment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddOnAttachmentStudentSubmission {
    #[serde(default)]
    pub id: Option<SubmissionId>,
    #[serde(default)]
    pub user_id: Option<UserId>,
    #[serde(default)]
    pub points_earned: Option<f64>,
    #[serde(default)]
    pub post_submission_state: Option<SubmissionState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StudentContext {
    #[serde(default)]
    pub submission_id: Option<SubmissionId>,
}

/// What `getAddOnContext` says about the person in the iframe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddOnContext {
    pub course_id: CourseId,
    #[serde(default)]
    pub item_id: Option<CourseWorkId>,
    #[serde(default)]
    pub supports_student_work: Option<bool>,
    #[serde(default)]
    pub student_context: Option<StudentContext>,
    #[serde(default)]
    pub teacher_context: Option<serde_json::Value>,
}

/// The role an add-on iframe is opened in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOnRole {
    Teacher,
    /// A student, with their submission when the post takes student work.
    Student {
        submission_id: Option<SubmissionId>,
    },
}

impl AddOnContext {
    /// The caller's role; `None` when Classroom gave neither context, which the add-on must
    /// treat as no access.
    pub fn role(&self) -> Option<AddOnRole> {
        match (&self.teacher_context, &self.student_context) {
            (Some(_), _) => Some(AddOnRole::Teacher),
            (None, Some(s)) => Some(AddOnRole::Student {
                submission_id: s.submission_id.clone(),
            }),
            (None, None) => None,
        }
    }
}

/// A Cloud Pub/Sub topic, `projects/{project}/topics/{topic}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubTopic(String);

impl PubSubTopic {
    /// Checks the resource-name shape Classroom requires; Classroom itself only checks the
    /// topic exists on a best-effort basis.
    pub fn new(name: &str) -> Option<Self> {
        let parts: Vec<&str> = name.split('/').collect();
        let ok = parts.len() == 4
            && parts[0] == "projects"
            && parts[2] == "topics"
            && !parts[1].is_empty()
            && !parts[3].is_empty();
        ok.then(|| Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A push-notification registration. It lapses at `expiry_time` (a week after creation) and
/// must be created again before then.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub registration_id: RegistrationId,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expiry_time: Option<time::OffsetDateTime>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}
