//! The OAuth scopes lmsbridge asks Google for, the fewest each feature needs (Classroom API
//! v1 discovery document, `auth.oauth2.scopes`, and the per-method `scopes` lists).
//!
//! | feature | scopes |
//! |---|---|
//! | sign-in (who connected) | [`OPENID`], [`EMAIL`], [`PROFILE`] |
//! | roster, read-only | [`COURSES_READONLY`], [`ROSTERS_READONLY`], [`PROFILE_EMAILS`] |
//! | courseWork and grades | [`COURSEWORK_STUDENTS`] |
//! | add-ons | [`ADDONS_TEACHER`], [`ADDONS_STUDENT`] |
//! | push notifications | [`PUSH_NOTIFICATIONS`] |
//!
//! Ask for each set when the feature is first used (incremental authorization with
//! `include_granted_scopes=true`), not all at once: teachers and domain admins see the list,
//! and a shorter one is approved more often.

pub const OPENID: &str = "openid";
pub const EMAIL: &str = "email";
pub const PROFILE: &str = "profile";

/// `courses.list`, `courses.get`.
pub const COURSES_READONLY: &str = "https://www.googleapis.com/auth/classroom.courses.readonly";
/// `courses.students.list`, `courses.teachers.list`.
pub const ROSTERS_READONLY: &str = "https://www.googleapis.com/auth/classroom.rosters.readonly";
/// Fills `UserProfile.emailAddress` in roster answers; without it the field is absent.
pub const PROFILE_EMAILS: &str = "https://www.googleapis.com/auth/classroom.profile.emails";
/// `courseWork.create`/`get`, `studentSubmissions.list`/`patch`/`return`.
pub const COURSEWORK_STUDENTS: &str =
    "https://www.googleapis.com/auth/classroom.coursework.students";
/// Add-on attachments and their submissions, `getAddOnContext` as a teacher.
pub const ADDONS_TEACHER: &str = "https://www.googleapis.com/auth/classroom.addons.teacher";
/// `getAddOnContext` as a student.
pub const ADDONS_STUDENT: &str = "https://www.googleapis.com/auth/classroom.addons.student";
/// `registrations.create` for roster change notifications.
pub const PUSH_NOTIFICATIONS: &str = "https://www.googleapis.com/auth/classroom.push-notifications";

/// Knowing which Google account connected.
pub const SIGN_IN: &[&str] = &[OPENID, EMAIL, PROFILE];
/// Reading courses and their members, with email addresses.
pub const ROSTER: &[&str] = &[COURSES_READONLY, ROSTERS_READONLY, PROFILE_EMAILS];
/// Creating assignments and passing grades back to them.
pub const COURSEWORK: &[&str] = &[COURSEWORK_STUDENTS];
/// A Classroom add-on's teacher and student iframes and grade passback through attachments.
pub const ADDONS: &[&str] = &[ADDONS_TEACHER, ADDONS_STUDENT];
/// Roster change notifications through Cloud Pub/Sub.
pub const PUSH: &[&str] = &[PUSH_NOTIFICATIONS];
