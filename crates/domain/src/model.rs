//! Tenants, platforms, people, contexts, resources, enrolments and grade targets.

use crate::ids::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use url::Url;

/// Which LMS a platform is. Adapters differ in quirks, not in what they offer the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformKind {
    /// Instructure Canvas over LTI 1.3.
    Canvas,
    /// Moodle's mod_lti over LTI 1.3 (plus the lmsbridge local plugin).
    Moodle,
    /// Any other LTI 1.3 platform (Blackboard, Brightspace, Schoology, Sakai, ...).
    Lti,
    /// Google Classroom through its REST and Add-ons APIs.
    GoogleClassroom,
}

impl PlatformKind {
    /// The name used in storage, the CLI and the API.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Canvas => "canvas",
            Self::Moodle => "moodle",
            Self::Lti => "lti",
            Self::GoogleClassroom => "google_classroom",
        }
    }

    /// True for the platforms reached through LTI 1.3.
    pub const fn speaks_lti(&self) -> bool {
        matches!(self, Self::Canvas | Self::Moodle | Self::Lti)
    }
}

impl fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown platform kind name.
#[derive(Debug, thiserror::Error)]
#[error("unknown platform kind {0:?}: expected canvas, moodle, lti or google_classroom")]
pub struct UnknownPlatformKind(pub String);

impl FromStr for PlatformKind {
    type Err = UnknownPlatformKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "canvas" => Ok(Self::Canvas),
            "moodle" => Ok(Self::Moodle),
            "lti" => Ok(Self::Lti),
            "google_classroom" | "google-classroom" | "classroom" => Ok(Self::GoogleClassroom),
            other => Err(UnknownPlatformKind(other.to_owned())),
        }
    }
}

/// A customer of lmsbridge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    /// The product page that receives launch handoffs; `None` shows lmsbridge's own summary.
    pub launch_url: Option<Url>,
    pub created_at: i64,
}

/// A registration of the tool with one LMS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub id: PlatformId,
    pub tenant_id: TenantId,
    pub kind: PlatformKind,
    /// The LTI `iss`, compared exactly as the platform sends it.
    pub issuer: String,
    pub client_id: String,
    pub auth_url: Url,
    pub token_url: Url,
    pub jwks_url: Url,
    /// The `aud` of our client assertions when the platform wants something other than the token URL.
    pub token_audience: Option<String>,
    /// Record launches from unknown deployments as pending for an admin to approve, instead
    /// of refusing them outright (Canvas creates a deployment per install).
    pub accept_new_deployments: bool,
    /// Launches are accepted only from enabled registrations. Dynamic registrations start
    /// disabled until an admin enables them.
    pub enabled: bool,
    pub created_at: i64,
}

/// An LTI deployment of a platform registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: DeploymentId,
    pub tenant_id: TenantId,
    pub platform_id: PlatformId,
    /// The platform's `deployment_id`.
    pub deployment_id: String,
    pub status: DeploymentStatus,
    pub last_seen_at: Option<i64>,
}

/// Whether launches from a deployment are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    Active,
    /// Seen in a launch, waiting for an admin to approve it.
    Pending,
}

impl DeploymentStatus {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Pending => "pending",
        }
    }
}

/// The role a person holds in a context, normalised across platforms.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Learner,
    Instructor,
    TeachingAssistant,
    ContentDeveloper,
    Mentor,
    Administrator,
    /// A role the platform sent that has no normalised equivalent, kept verbatim.
    Other(String),
}

/// A person as known to one platform of one tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub id: PersonId,
    pub tenant_id: TenantId,
    pub platform_id: PlatformId,
    /// The platform's stable user id (LTI `sub`, Google account id).
    pub platform_user_id: String,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub email: Option<String>,
}

/// A course or other context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    pub id: ContextId,
    pub tenant_id: TenantId,
    pub platform_id: PlatformId,
    pub platform_context_id: String,
    pub title: Option<String>,
    pub label: Option<String>,
}

/// An activity placed in a context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    pub id: ResourceId,
    pub tenant_id: TenantId,
    pub context_id: ContextId,
    pub platform_resource_id: String,
    pub title: Option<String>,
}

/// Whether an enrolment is current.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentStatus {
    Active,
    Inactive,
    Deleted,
}

impl EnrollmentStatus {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
            Self::Deleted => "deleted",
        }
    }
}

/// A person's membership of a context.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub tenant_id: TenantId,
    pub context_id: ContextId,
    pub person_id: PersonId,
    pub roles: Vec<Role>,
    pub status: EnrollmentStatus,
    /// Where we learnt of it: `launch`, `nrps`, `classroom`, `moodle_event`.
    pub source: String,
}

/// Where a grade goes on the platform side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GradeTargetLocation {
    /// An AGS line item, by its URL exactly as the platform gave it.
    LtiLineItem { line_item_url: Url },
    /// A Classroom courseWork item.
    ClassroomCourseWork {
        course_id: String,
        course_work_id: String,
    },
    /// A Classroom add-on attachment on a post (`itemId`), graded through its
    /// `addOnAttachments.studentSubmissions` with `pointsEarned`.
    ClassroomAddOnAttachment {
        course_id: String,
        item_id: String,
        attachment_id: String,
    },
}

/// A gradebook column in some context.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GradeTarget {
    pub id: GradeTargetId,
    pub tenant_id: TenantId,
    pub platform_id: PlatformId,
    pub context_id: ContextId,
    pub resource_id: Option<ResourceId>,
    pub location: GradeTargetLocation,
    pub label: Option<String>,
    pub score_maximum: Option<f64>,
}
