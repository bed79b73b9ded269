//! The simulated school: people, courses, a courseWork made by another Cloud project, and
//! the records the fake keeps (what tests read back).

use serde::Serialize;
use std::collections::BTreeSet;

/// The Workspace domain of the simulated school (`hd` in userinfo).
pub const DOMAIN: &str = "school.example";
/// The Cloud project behind assignments teachers make in the Classroom web app.
pub const CLASSROOM_UI_PROJECT: &str = "classroom-web-ui";

/// A person at the school.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClassroomUser {
    /// Numeric, as Google's are; also the OpenID `sub`.
    pub id: String,
    pub email: String,
    pub given_name: String,
    pub family_name: String,
}

impl ClassroomUser {
    pub fn full_name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name)
    }
}

/// A course as tests see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CourseView {
    pub id: String,
    pub name: String,
    pub state: String,
    pub owner_id: String,
    pub teachers: Vec<String>,
    pub students: Vec<String>,
}

/// A courseWork as tests see it, with the project that created it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CourseWorkView {
    pub id: String,
    pub course_id: String,
    pub title: String,
    pub state: String,
    pub work_type: String,
    pub max_points: Option<f64>,
    pub project: String,
}

/// A submission as tests see it: both grades and whether it was returned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubmissionView {
    pub id: String,
    pub course_work_id: String,
    pub user_id: String,
    pub state: String,
    pub draft_grade: Option<f64>,
    pub assigned_grade: Option<f64>,
}

/// An add-on attachment as tests see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttachmentView {
    pub id: String,
    pub course_id: String,
    pub item_id: String,
    pub title: String,
    pub project: String,
    pub max_points: Option<f64>,
    pub grade_sync_enabled: bool,
    /// `pointsEarned` per submission id.
    pub points: Vec<(String, f64)>,
}

/// A push-notification registration as tests see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrationView {
    pub id: String,
    pub feed_type: String,
    pub course_id: String,
    pub topic: String,
    pub user_id: String,
    pub project: String,
    pub expiry_time: String,
}

#[derive(Debug, Clone)]
pub(super) struct Course {
    pub id: String,
    pub name: String,
    pub section: Option<String>,
    pub state: String,
    pub owner_id: String,
    pub teachers: Vec<String>,
    pub students: Vec<String>,
    /// Creation order; lists show the newest first.
    pub seq: u64,
}

#[derive(Debug, Clone)]
pub(super) struct CourseWork {
    pub id: String,
    pub course_id: String,
    pub title: String,
    pub description: Option<String>,
    pub state: String,
    pub work_type: String,
    pub max_points: Option<f64>,
    pub project: String,
    pub creator: String,
    pub created: String,
}

#[derive(Debug, Clone)]
pub(super) struct Submission {
    pub id: String,
    pub course_id: String,
    pub course_work_id: String,
    pub user_id: String,
    pub state: String,
    pub draft_grade: Option<f64>,
    pub assigned_grade: Option<f64>,
    pub created: String,
    pub updated: String,
}

#[derive(Debug, Clone)]
pub(super) struct Attachment {
    pub id: String,
    pub course_id: String,
    pub item_id: String,
    pub title: String,
    pub project: String,
    pub max_points: Option<f64>,
    pub grade_sync_enabled: bool,
    pub teacher_view_uri: String,
    pub student_view_uri: String,
    pub student_work_review_uri: Option<String>,
    pub points: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Clone)]
pub(super) struct RegistrationRec {
    pub id: String,
    pub feed_type: String,
    pub course_id: String,
    pub topic: String,
    pub user_id: String,
    pub project: String,
    pub expiry_time: String,
}

fn user(id: &str, given: &str, family: &str, email: &str) -> ClassroomUser {
    ClassroomUser {
        id: id.to_owned(),
        email: email.to_owned(),
        given_name: given.to_owned(),
        family_name: family.to_owned(),
    }
}

/// Two teachers, then seven students.
pub(super) fn users() -> Vec<ClassroomUser> {
    vec![
        user(
            "100000000001",
            "Ada",
            "Lovelace",
            "ada.lovelace@school.example",
        ),
        user(
            "100000000002",
            "Grace",
            "Hopper",
            "grace.hopper@school.example",
        ),
        user(
            "200000000001",
            "Alan",
            "Turing",
            "alan.turing@school.example",
        ),
        user(
            "200000000002",
            "Katherine",
            "Johnson",
            "katherine.johnson@school.example",
        ),
        user(
            "200000000003",
            "Edsger",
            "Dijkstra",
            "edsger.dijkstra@school.example",
        ),
        user(
            "200000000004",
            "Barbara",
            "Liskov",
            "barbara.liskov@school.example",
        ),
        user(
            "200000000005",
            "Donald",
            "Knuth",
            "donald.knuth@school.example",
        ),
        user(
            "200000000006",
            "Frances",
            "Allen",
            "frances.allen@school.example",
        ),
        user(
            "200000000007",
            "Radia",
            "Perlman",
            "radia.perlman@school.example",
        ),
    ]
}

pub(super) const ADA: &str = "100000000001";
pub(super) const GRACE: &str = "100000000002";
/// Algebra 1: Ada and Grace teach, all seven students attend.
pub(super) const ALGEBRA: &str = "300000000001";
/// The seeded courseWork in Algebra 1 that a teacher made in the Classroom web app.
pub(super) const READING_LOG: &str = "400000000001";

pub(super) fn courses() -> Vec<Course> {
    let students: Vec<String> = (1..=7).map(|i| format!("20000000000{i}")).collect();
    let course = |id: &str,
                  name: &str,
                  state: &str,
                  owner: &str,
                  teachers: &[&str],
                  students: &[String],
                  seq| Course {
        id: id.to_owned(),
        name: name.to_owned(),
        section: Some("Period 2".to_owned()),
        state: state.to_owned(),
        owner_id: owner.to_owned(),
        teachers: teachers.iter().map(|t| (*t).to_owned()).collect(),
        students: students.to_vec(),
        seq,
    };
    vec![
        course(
            ALGEBRA,
            "Algebra 1",
            "ACTIVE",
            ADA,
            &[ADA, GRACE],
            &students,
            1,
        ),
        course(
            "300000000002",
            "Geometry",
            "ARCHIVED",
            ADA,
            &[ADA],
            &students[..2],
            2,
        ),
        course(
            "300000000003",
            "Chemistry",
            "ACTIVE",
            GRACE,
            &[GRACE],
            &students[2..4],
            3,
        ),
        course(
            "300000000004",
            "Statistics",
            "PROVISIONED",
            ADA,
            &[ADA],
            &[],
            4,
        ),
    ]
}

/// Scopes Google's own sign-in adds beside an API's scopes.
pub(super) fn sign_in_scopes() -> BTreeSet<&'static str> {
    ["openid", "email", "profile"].into_iter().collect()
}
