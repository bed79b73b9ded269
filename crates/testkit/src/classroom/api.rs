//! The Classroom API v1 methods the fake serves, behind one handler that does what Google's
//! front end does first: find the method by path, authenticate the bearer token, apply any
//! injected fault, validate parameters and body against the discovery document, and check the
//! token carries one of the method's scopes. Every request is recorded.

use super::data::{self, ClassroomUser, Course, CourseWork, Submission};
use super::discovery::ValidatedRequest;
use super::faults::{ClassroomFault, RetryAfter};
use super::{RecordedRequest, SimulatedClassroom, State, now, rfc3339};
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::SystemTime;
use url::Url;

/// Page size when the request names none (or zero), as `courses.students.list` documents.
const DEFAULT_PAGE_SIZE: usize = 30;
/// Largest page served whatever is asked.
const MAX_PAGE_SIZE: usize = 1000;
/// Query parameters that change the answer's form, not its content; a page token stays
/// valid across them.
const FORM_PARAMS: &[&str] = &[
    "$.xgafv",
    "access_token",
    "alt",
    "callback",
    "fields",
    "key",
    "oauth_token",
    "prettyPrint",
    "quotaUser",
    "uploadType",
    "upload_protocol",
    "pageToken",
];
/// Query values that are bearer secrets and are not kept in the record.
const SECRET_PARAMS: &[&str] = &["access_token", "oauth_token", "key", "addOnToken"];

/// A Google error answer (AIP-193).
fn google_error(code: u16, status: &str, message: &str) -> Response {
    google_error_with(code, status, message, Vec::new())
}

fn google_error_with(code: u16, status: &str, message: &str, details: Vec<Value>) -> Response {
    let mut error = json!({"code": code, "message": message, "status": status});
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(json!({ "error": error }))).into_response()
}

/// A refusal on its way out of a handler; boxed so the happy path's `Result` stays small.
type Fail = Box<Response>;

fn fail(code: u16, status: &str, message: &str) -> Fail {
    Box::new(google_error(code, status, message))
}

fn not_found() -> Fail {
    fail(404, "NOT_FOUND", "Requested entity was not found.")
}

fn permission_denied(message: &str) -> Fail {
    fail(403, "PERMISSION_DENIED", message)
}

fn invalid_argument(message: &str) -> Fail {
    fail(400, "INVALID_ARGUMENT", message)
}

fn no_permission() -> Fail {
    permission_denied("The caller does not have permission")
}

fn project_permission_denied() -> Fail {
    permission_denied(
        "@ProjectPermissionDenied The Developer Project is not permitted to make this request.",
    )
}

/// Who is calling: the grant's user and the Cloud project of its OAuth client.
struct Caller {
    user_id: String,
    project: String,
    scopes: BTreeSet<String>,
}

type Answer = Result<Value, Fail>;

/// `/v1/{*rest}`, every verb.
pub(super) async fn handle(
    AxState(fake): AxState<SimulatedClassroom>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let discovery = fake.inner.discovery.clone();
    let validation = discovery.validate(method.as_str(), &path, &query, &body);
    let method_id = discovery
        .match_path(method.as_str(), &path)
        .ok()
        .map(|(m, _)| m.id.clone());
    let mut state = fake.state();
    state.stats.api_requests += 1;
    let response = fake.answer(
        &mut state,
        &method,
        &path,
        &headers,
        method_id.as_deref(),
        &validation,
    );
    state.requests.push(RecordedRequest {
        method: method.as_str().to_owned(),
        path,
        query: query
            .into_iter()
            .map(|(k, v)| {
                let v = if SECRET_PARAMS.contains(&k.as_str()) {
                    "[redacted]".to_owned()
                } else {
                    v
                };
                (k, v)
            })
            .collect(),
        body: (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned()),
        method_id,
        status: response.status().as_u16(),
        invalid: validation.as_ref().err().map(ToString::to_string),
    });
    response
}

impl SimulatedClassroom {
    fn answer(
        &self,
        state: &mut State,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        method_id: Option<&str>,
        validation: &Result<ValidatedRequest<'_>, super::RequestInvalid>,
    ) -> Response {
        let Some(method_id) = method_id else {
            // Google's front end answers an unknown URL before looking at credentials.
            return google_error(
                404,
                "NOT_FOUND",
                &format!(
                    "The requested URL {} {} was not found on this server.",
                    method.as_str(),
                    path
                ),
            );
        };
        let caller = self
            .bearer_grant(state, headers)
            .and_then(|g| SimulatedClassroom::grant_info(state, g))
            .and_then(|(user_id, client_id, scopes)| {
                let project = state
                    .clients
                    .iter()
                    .find(|c| c.client_id == client_id)?
                    .project
                    .clone();
                Some(Caller {
                    user_id,
                    project,
                    scopes,
                })
            });
        let Some(caller) = caller else {
            state.stats.api_unauthorized += 1;
            let mut r = google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(
                    "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
                ),
            );
            return r;
        };
        if let Some(fault) = self.faults().take() {
            return fault_response(fault);
        }
        let req = match validation {
            Ok(r) => r,
            Err(e) => {
                let detail = json!({"@type": "type.googleapis.com/google.rpc.BadRequest",
                                    "fieldViolations": [{"description": e.to_string()}]});
                let status = if e.http_status() == 404 {
                    "NOT_FOUND"
                } else {
                    "INVALID_ARGUMENT"
                };
                return google_error_with(e.http_status(), status, &e.to_string(), vec![detail]);
            }
        };
        if !req.method.scopes.iter().any(|s| caller.scopes.contains(s)) {
            return google_error_with(
                403,
                "PERMISSION_DENIED",
                "Request had insufficient authentication scopes.",
                vec![json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                            "domain": "googleapis.com",
                            "metadata": {"service": "classroom.googleapis.com", "method": method_id}})],
            );
        }
        let answer = match method_id {
            "classroom.courses.list" => self.courses_list(state, &caller, req),
            "classroom.courses.students.list" => self.roster(state, &caller, req, Roster::Students),
            "classroom.courses.teachers.list" => self.roster(state, &caller, req, Roster::Teachers),
            "classroom.courses.courseWork.create" => course_work_create(state, &caller, req),
            "classroom.courses.courseWork.get" => course_work_get(state, &caller, req),
            "classroom.courses.courseWork.studentSubmissions.list" => {
                self.submissions_list(state, &caller, req)
            }
            "classroom.courses.courseWork.studentSubmissions.get" => {
                submission_get(state, &caller, req)
            }
            "classroom.courses.courseWork.studentSubmissions.patch" => {
                submission_patch(state, &caller, req)
            }
            "classroom.courses.courseWork.studentSubmissions.return" => {
                submission_return(state, &caller, req)
            }
            "classroom.courses.courseWork.addOnAttachments.create" => {
                attachment_create(state, &caller, req)
            }
            "classroom.courses.courseWork.addOnAttachments.studentSubmissions.get" => {
                attachment_submission(state, &caller, req, false)
            }
            "classroom.courses.courseWork.addOnAttachments.studentSubmissions.patch" => {
                attachment_submission(state, &caller, req, true)
            }
            "classroom.courses.courseWork.getAddOnContext" => add_on_context(state, &caller, req),
            "classroom.registrations.create" => self.registration_create(state, &caller, req),
            other => Err(fail(
                501,
                "UNIMPLEMENTED",
                &format!("The simulated Classroom does not implement {other}."),
            )),
        };
        match answer {
            Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
            Err(r) => *r,
        }
    }

    /// A person named by id, email or `me`.
    fn resolve_user(&self, caller: &Caller, reference: &str) -> Result<String, Fail> {
        if reference == "me" {
            return Ok(caller.user_id.clone());
        }
        self.find_user(reference)
            .map(|u| u.id.clone())
            .ok_or_else(not_found)
    }

    fn courses_list(
        &self,
        state: &mut State,
        caller: &Caller,
        req: &ValidatedRequest<'_>,
    ) -> Answer {
        let teacher = req.query_one("teacherId").filter(|s| !s.is_empty());
        let student = req.query_one("studentId").filter(|s| !s.is_empty());
        if teacher.is_some() && student.is_some() {
            return Err(invalid_argument(
                "Only one of teacherId and studentId may be specified.",
            ));
        }
        let teacher = teacher.map(|t| self.resolve_user(caller, t)).transpose()?;
        let student = student.map(|s| self.resolve_user(caller, s)).transpose()?;
        let states = req.query_all("courseStates");
        let mut courses: Vec<&Course> = state
            .courses
            .values()
            .filter(|c| role(c, &caller.user_id).is_some())
            .filter(|c| teacher.as_ref().is_none_or(|t| c.teachers.contains(t)))
            .filter(|c| student.as_ref().is_none_or(|s| c.students.contains(s)))
            .filter(|c| states.is_empty() || states.contains(&c.state))
            .collect();
        courses.sort_by_key(|c| std::cmp::Reverse(c.seq));
        let items: Vec<Value> = courses.into_iter().map(course_json).collect();
        let (items, next) = paginate(state, caller, req, items)?;
        Ok(list("courses", items, next))
    }

    fn roster(
        &self,
        state: &mut State,
        caller: &Caller,
        req: &ValidatedRequest<'_>,
        which: Roster,
    ) -> Answer {
        let course = find_course(state, req.path("courseId"))?;
        if role(course, &caller.user_id).is_none() {
            return Err(no_permission());
        }
        let ids = match which {
            Roster::Students => &course.students,
            Roster::Teachers => &course.teachers,
        };
        let course_id = course.id.clone();
        let items: Vec<Value> = ids
            .iter()
            .filter_map(|id| self.user(id))
            .map(|u| member_json(&course_id, &u, &caller.scopes))
            .collect();
        let (items, next) = paginate(state, caller, req, items)?;
        let key = match which {
            Roster::Students => "students",
            Roster::Teachers => "teachers",
        };
        Ok(list(key, items, next))
    }

    fn submissions_list(
        &self,
        state: &mut State,
        caller: &Caller,
        req: &ValidatedRequest<'_>,
    ) -> Answer {
        let course = find_course(state, req.path("courseId"))?;
        let role = role(course, &caller.user_id).ok_or_else(no_permission)?;
        let work_id = req.path("courseWorkId");
        if work_id != "-" {
            find_work(state, course, work_id)?;
        }
        let user = req
            .query_one("userId")
            .filter(|s| !s.is_empty())
            .map(|u| self.resolve_user(caller, u))
            .transpose()?;
        // Students may only view their own work.
        if role == Role::Student && user.as_ref().is_some_and(|u| *u != caller.user_id) {
            return Err(no_permission());
        }
        let states = req.query_all("states");
        let course_id = course.id.clone();
        let items: Vec<Value> = state
            .submissions
            .values()
            .filter(|s| s.course_id == course_id && (work_id == "-" || s.course_work_id == work_id))
            .filter(|s| role == Role::Teacher || s.user_id == caller.user_id)
            .filter(|s| user.as_ref().is_none_or(|u| s.user_id == *u))
            .filter(|s| states.is_empty() || states.contains(&s.state))
            .filter_map(|s| {
                let work = state.course_work.get(&s.course_work_id)?;
                (role == Role::Teacher || work.state == "PUBLISHED")
                    .then(|| submission_json(s, work, &caller.project))
            })
            .collect();
        let (items, next) = paginate(state, caller, req, items)?;
        Ok(list("studentSubmissions", items, next))
    }

    fn registration_create(
        &self,
        state: &mut State,
        caller: &Caller,
        req: &ValidatedRequest<'_>,
    ) -> Answer {
        let body = req.body.clone().unwrap_or_else(|| json!({}));
        let Some(feed) = body.get("feed").filter(|f| f.is_object()) else {
            return Err(invalid_argument("feed: A feed is required."));
        };
        let feed_type = feed
            .get("feedType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let info_key = match feed_type {
            "COURSE_ROSTER_CHANGES" => "courseRosterChangesInfo",
            "COURSE_WORK_CHANGES" => "courseWorkChangesInfo",
            "DOMAIN_ROSTER_CHANGES" => {
                return Err(permission_denied(
                    "Only domain administrators may receive domain roster changes.",
                ));
            }
            _ => return Err(invalid_argument("feed.feedType: A feed type is required.")),
        };
        let course_id = feed
            .pointer(&format!("/{info_key}/courseId"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let course = find_course(state, &course_id)?;
        if role(course, &caller.user_id) != Some(Role::Teacher) {
            return Err(no_permission());
        }
        let topic = body
            .pointer("/cloudPubsubTopic/topicName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let parts: Vec<&str> = topic.split('/').collect();
        if !(parts.len() == 4
            && parts[0] == "projects"
            && parts[2] == "topics"
            && !parts[1].is_empty()
            && !parts[3].is_empty())
        {
            return Err(invalid_argument(
                "cloudPubsubTopic.topicName: The topic name is not valid.",
            ));
        }
        let id = format!("reg-{}", &super::random_urlsafe()[..16]);
        let expiry = rfc3339(now() + time::Duration::days(7));
        state.registrations.push(data::RegistrationRec {
            id: id.clone(),
            feed_type: feed_type.to_owned(),
            course_id,
            topic: topic.to_owned(),
            user_id: caller.user_id.clone(),
            project: caller.project.clone(),
            expiry_time: expiry.clone(),
        });
        Ok(json!({
            "registrationId": id,
            "feed": feed,
            "cloudPubsubTopic": {"topicName": topic},
            "expiryTime": expiry,
        }))
    }
}

#[derive(Clone, Copy)]
enum Roster {
    Students,
    Teachers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Teacher,
    Student,
}

fn role(course: &Course, user: &str) -> Option<Role> {
    if course.teachers.iter().any(|t| t == user) {
        Some(Role::Teacher)
    } else if course.students.iter().any(|s| s == user) {
        Some(Role::Student)
    } else {
        None
    }
}

fn find_course<'a>(state: &'a State, id: &str) -> Result<&'a Course, Fail> {
    state.courses.get(id).ok_or_else(not_found)
}

fn find_work<'a>(state: &'a State, course: &Course, id: &str) -> Result<&'a CourseWork, Fail> {
    state
        .course_work
        .get(id)
        .filter(|w| w.course_id == course.id)
        .ok_or_else(not_found)
}

fn find_submission<'a>(
    state: &'a State,
    work: &CourseWork,
    id: &str,
) -> Result<&'a Submission, Fail> {
    state
        .submissions
        .get(id)
        .filter(|s| s.course_work_id == work.id)
        .ok_or_else(not_found)
}

/// The course, courseWork and (when asked) submission a teacher request names, with the
/// teacher check done.
fn teacher_target(
    state: &State,
    caller: &Caller,
    req: &ValidatedRequest<'_>,
    work_param: &str,
) -> Result<(Course, CourseWork), Fail> {
    let course = find_course(state, req.path("courseId"))?;
    let work = find_work(state, course, req.path(work_param))?;
    if role(course, &caller.user_id) != Some(Role::Teacher) {
        return Err(no_permission());
    }
    Ok((course.clone(), work.clone()))
}

/// Whether `project` may change the grades of `work`: it created the work, or it has an
/// add-on attachment with grade sync on it.
fn may_grade(state: &State, work: &CourseWork, project: &str) -> bool {
    work.project == project
        || state
            .attachments
            .values()
            .any(|a| a.item_id == work.id && a.project == project && a.grade_sync_enabled)
}

/// Adds a published assignment of `project`, with a new submission for every student.
pub(super) fn insert_course_work(
    state: &mut State,
    id: String,
    course_id: &str,
    title: &str,
    max_points: Option<f64>,
    project: &str,
    creator: &str,
) {
    add_course_work(
        state,
        CourseWork {
            id,
            course_id: course_id.to_owned(),
            title: title.to_owned(),
            description: None,
            state: "PUBLISHED".to_owned(),
            work_type: "ASSIGNMENT".to_owned(),
            max_points,
            project: project.to_owned(),
            creator: creator.to_owned(),
            created: rfc3339(now()),
        },
    );
}

fn add_course_work(state: &mut State, work: CourseWork) {
    // Students get their submission when the work is published.
    if work.state == "PUBLISHED" {
        let students = state
            .courses
            .get(&work.course_id)
            .map(|c| c.students.clone())
            .unwrap_or_default();
        for user_id in students {
            let id = state.id(5);
            state.submissions.insert(
                id.clone(),
                Submission {
                    id,
                    course_id: work.course_id.clone(),
                    course_work_id: work.id.clone(),
                    user_id,
                    state: "NEW".to_owned(),
                    draft_grade: None,
                    assigned_grade: None,
                    created: work.created.clone(),
                    updated: work.created.clone(),
                },
            );
        }
    }
    state.course_work.insert(work.id.clone(), work);
}

fn course_work_create(state: &mut State, caller: &Caller, req: &ValidatedRequest<'_>) -> Answer {
    let course = find_course(state, req.path("courseId"))?.clone();
    if role(&course, &caller.user_id) != Some(Role::Teacher) {
        return Err(no_permission());
    }
    if course.state != "ACTIVE" && course.state != "PROVISIONED" {
        return Err(fail(
            400,
            "FAILED_PRECONDITION",
            "@CourseNotModifiable The course is not modifiable in its current state.",
        ));
    }
    let body = req.body.clone().unwrap_or_else(|| json!({}));
    let title = body
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_owned();
    if title.is_empty() {
        return Err(invalid_argument("title: A title is required."));
    }
    let work_type = body
        .get("workType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if work_type.is_empty() || work_type == "COURSE_WORK_TYPE_UNSPECIFIED" {
        return Err(invalid_argument("workType: A work type is required."));
    }
    let max_points = body.get("maxPoints").and_then(Value::as_f64);
    if max_points.is_some_and(|m| m < 0.0 || m.fract() != 0.0) {
        return Err(invalid_argument(
            "maxPoints: The maximum grade must be a non-negative integer.",
        ));
    }
    let work_state = body.get("state").and_then(Value::as_str).unwrap_or("DRAFT");
    if work_state != "DRAFT" && work_state != "PUBLISHED" {
        return Err(invalid_argument(
            "state: Course work can only be created as DRAFT or PUBLISHED.",
        ));
    }
    let id = state.id(4);
    let work = CourseWork {
        id: id.clone(),
        course_id: course.id.clone(),
        title,
        description: body
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        state: work_state.to_owned(),
        work_type: work_type.to_owned(),
        max_points: max_points.filter(|m| *m > 0.0),
        project: caller.project.clone(),
        creator: caller.user_id.clone(),
        created: rfc3339(now()),
    };
    add_course_work(state, work);
    let work = state.course_work.get(&id).ok_or_else(not_found)?;
    Ok(course_work_json(work, &caller.project))
}

fn course_work_get(state: &mut State, caller: &Caller, req: &ValidatedRequest<'_>) -> Answer {
    let course = find_course(state, req.path("courseId"))?;
    let work = find_work(state, course, req.path("id"))?;
    match role(course, &caller.user_id) {
        Some(Role::Teacher) => Ok(course_work_json(work, &caller.project)),
        Some(Role::Student) if work.state == "PUBLISHED" => {
            Ok(course_work_json(work, &caller.project))
        }
        Some(Role::Student) => Err(not_found()),
        None => Err(no_permission()),
    }
}

fn submission_get(state: &mut State, caller: &Caller, req: &ValidatedRequest<'_>) -> Answer {
    let course = find_course(state, req.path("courseId"))?;
    let work = find_work(state, course, req.path("courseWorkId"))?;
    let sub = find_submission(state, work, req.path("id"))?;
    match role(course, &caller.user_id) {
        Some(Role::Teacher) => Ok(submission_json(sub, work, &caller.project)),
        Some(Role::Student) if sub.user_id == caller.user_id => {
            Ok(submission_json(sub, work, &caller.project))
        }
        _ => Err(no_permission()),
    }
}

/// The fields of an `updateMask`, each as camelCase; snake_case paths are accepted as Google
/// accepts them.
fn mask_fields(req: &ValidatedRequest<'_>) -> Result<Vec<String>, Fail> {
    let mask = req.query_one("updateMask").unwrap_or_default();
    if mask.trim().is_empty() {
        return Err(invalid_argument("updateMask: An update mask is required."));
    }
    Ok(mask
        .split(',')
        .map(|f| {
            let mut out = String::new();
            let mut upper = false;
            for c in f.trim().chars() {
                if c == '_' {
                    upper = true;
                } else if upper {
                    out.push(c.to_ascii_uppercase());
                    upper = false;
                } else {
                    out.push(c);
                }
            }
            out
        })
        .collect())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A grade from the body: absent or null clears it; otherwise non-negative.
fn grade(body: &Value, field: &str) -> Result<Option<f64>, Fail> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(g) if g >= 0.0 => Ok(Some(round2(g))),
            _ => Err(invalid_argument(&format!(
                "{field}: A grade must be a non-negative number."
            ))),
        },
    }
}

fn submission_patch(state: &mut State, caller: &Caller, req: &ValidatedRequest<'_>) -> Answer {
    let (_, work) = teacher_target(state, caller, req, "courseWorkId")?;
    let sub_id = find_submission(state, &work, req.path("id"))?.id.clone();
    let fields = mask_fields(req)?;
    if let Some(f) = fields
        .iter()
        .find(|f| *f != "draftGrade" && *f != "assignedGrade")
    {
        return Err(invalid_argument(&format!(
            "updateMask: Teachers may not update the field {f}."
        )));
    }
    if !may_grade(state, &work, &caller.project) {
        return Err(project_permission_denied());
    }
    let body = req.body.clone().unwrap_or_else(|| json!({}));
    let draft = fields
        .iter()
        .any(|f| f == "draftGrade")
        .then(|| grade(&body, "draftGrade"))
        .transpose()?;
    let assigned = fields
        .iter()
        .any(|f| f == "assignedGrade")
        .then(|| grade(&body, "assignedGrade"))
        .transpose()?;
    let sub = state.submissions.get_mut(&sub_id).ok_or_else(not_found)?;
    if let Some(d) = draft {
        sub.draft_grade = d;
    }
    if let Some(a) = assigned {
        sub.assigned_grade = a;
    }
    sub.updated = rfc3339(now());
    Ok(submission_json(sub, &work, &caller.project))
}

fn submission_return(state: &mut State, caller: &Caller, req: &ValidatedRequest<'_>) -> Answer {
    let (_, work) = teacher_target(state, caller, req, "courseWorkId")?;
    let sub_id = find_submission(state, &work, req.path("id"))?.id.clone();
    if !may_grade(state, &work, &caller.project) {
        return Err(project_permission_denied());
    }
    let sub = state.submissions.get_mut(&sub_id).ok_or_else(not_found)?;
    // Unlike the Classroom web app, the API does not copy draftGrade into assignedGrade.
    sub.state = "RETURNED".to_owned();
    sub.updated = rfc3339(now());
    Ok(json!({}))
}

/// Whether an add-on call about `work` is authorised: a valid `addOnToken` for the post, or,
/// without one, the project created the post or already has an attachment on it.
fn add_on_authorised(
    state: &State,
    caller: &Caller,
    req: &ValidatedRequest<'_>,
    work: &CourseWork,
) -> Result<(), Fail> {
    match req.query_one("addOnToken") {
        Some(token) => {
            let ok = state.add_on_tokens.get(token).is_some_and(|t| {
                t.course_id == work.course_id && t.item_id == work.id && t.expires_at > now()
            });
            if ok {
                Ok(())
            } else {
                Err(permission_denied(
                    "The add-on token is not valid for this post.",
                ))
            }
        }
        None => {
            let own = work.project == caller.project
                || state
                    .attachments
                    .values()
                    .any(|a| a.item_id == work.id && a.project == caller.project);
            if own {
                Ok(())
            } else {
                Err(permission_denied(
                    "An add-on token is required for this post.",
                ))
            }
        }
    }
}

fn attachment_create(state: &mut State, caller: &Caller, req: &ValidatedRequest<'_>) -> Answer {
    let (course, work) = teacher_target(state, caller, req, "itemId")?;
    add_on_authorised(state, caller, req, &work)?;
    let body = req.body.clone().unwrap_or_else(|| json!({}));
    let title = body
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_owned();
    if title.is_empty() {
        return Err(invalid_argument("title: A title is required."));
    }
    let uri = |k: &str| {
        body.pointer(&format!("/{k}/uri"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let (Some(teacher_view), Some(student_view)) = (uri("teacherViewUri"), uri("studentViewUri"))
    else {
        return Err(invalid_argument(
            "teacherViewUri and studentViewUri are required.",
        ));
    };
    let review = uri("studentWorkReviewUri");
    let allowed = state.allowed_uri_prefixes.clone();
    for u in [Some(&teacher_view), Some(&student_view), review.as_ref()]
        .into_iter()
        .flatten()
    {
        let parsed = Url::parse(u)
            .ok()
            .filter(|p| p.scheme() == "https" || p.scheme() == "http");
        if parsed.is_none()
            || (!allowed.is_empty() && !allowed.iter().any(|p| u.starts_with(p.as_str())))
        {
            return Err(invalid_argument(
                "The attachment URI is not under an allowed URI prefix of this add-on.",
            ));
        }
    }
    let max_points = body.get("maxPoints").and_then(Value::as_f64);
    if max_points.is_some_and(|m| m < 0.0 || m.fract() != 0.0) {
        return Err(invalid_argument(
            "maxPoints: The maximum grade must be a non-negative integer.",
        ));
    }
    let graded = max_points.is_some_and(|m| m > 0.0);
    if graded && review.is_none() {
        return Err(invalid_argument(
            "maxPoints can only be set if studentWorkReviewUri is set.",
        ));
    }
    // One attachment per post drives its grades.
    let grade_sync = graded
        && !state
            .attachments
            .values()
            .any(|a| a.item_id == work.id && a.grade_sync_enabled);
    let id = state.id(6);
    let attachment = data::Attachment {
        id: id.clone(),
        course_id: course.id.clone(),
        item_id: work.id.clone(),
        title,
        project: caller.project.clone(),
        max_points: max_points.filter(|m| *m > 0.0),
        grade_sync_enabled: grade_sync,
        teacher_view_uri: teacher_view,
        student_view_uri: student_view,
        student_work_review_uri: review,
        points: Default::default(),
    };
    let answer = attachment_json(&attachment);
    state.attachments.insert(id, attachment);
    Ok(answer)
}

fn attachment_submission(
    state: &mut State,
    caller: &Caller,
    req: &ValidatedRequest<'_>,
    patch: bool,
) -> Answer {
    let (_, work) = teacher_target(state, caller, req, "itemId")?;
    let attachment = state
        .attachments
        .get(req.path("attachmentId"))
        .filter(|a| a.item_id == work.id)
        .cloned()
        .ok_or_else(not_found)?;
    if attachment.project != caller.project {
        return Err(permission_denied(
            "Only the add-on that created the attachment may access its submissions.",
        ));
    }
    let sub = find_submission(state, &work, req.path("submissionId"))?.clone();
    if patch {
        if !attachment.max_points.is_some_and(|m| m > 0.0) {
            return Err(fail(
                400,
                "FAILED_PRECONDITION",
                "The attachment has no positive maxPoints, so it takes no grades.",
            ));
        }
        let fields = mask_fields(req)?;
        if fields.iter().any(|f| f != "pointsEarned") {
            return Err(invalid_argument(
                "updateMask: Only pointsEarned may be updated.",
            ));
        }
        let body = req.body.clone().unwrap_or_else(|| json!({}));
        let points = grade(&body, "pointsEarned")?;
        if let Some(a) = state.attachments.get_mut(&attachment.id) {
            match points {
                Some(p) => a.points.insert(sub.id.clone(), p),
                None => a.points.remove(&sub.id),
            };
        }
        // Grade sync: the points show in the gradebook as the submission's draft grade.
        if attachment.grade_sync_enabled
            && let Some(s) = state.submissions.get_mut(&sub.id)
        {
            s.draft_grade = points;
            s.updated = rfc3339(now());
        }
    }
    let points = state
        .attachments
        .get(&attachment.id)
        .and_then(|a| a.points.get(&sub.id).copied());
    let mut out = json!({
        "id": sub.id,
        "userId": sub.user_id,
        "postSubmissionState": sub.state,
    });
    if let Some(p) = points {
        out["pointsEarned"] = json!(p);
    }
    Ok(out)
}

fn add_on_context(state: &mut State, caller: &Caller, req: &ValidatedRequest<'_>) -> Answer {
    let course = find_course(state, req.path("courseId"))?;
    let work = find_work(state, course, req.path("itemId"))?;
    let role = role(course, &caller.user_id).ok_or_else(no_permission)?;
    add_on_authorised(state, caller, req, work)?;
    if let Some(a) = req.query_one("attachmentId")
        && state
            .attachments
            .get(a)
            .is_none_or(|a| a.item_id != work.id)
    {
        return Err(not_found());
    }
    let mut out = json!({
        "courseId": course.id,
        "itemId": work.id,
        "postId": work.id,
        "supportsStudentWork": work.work_type == "ASSIGNMENT",
    });
    match role {
        Role::Teacher => out["teacherContext"] = json!({}),
        Role::Student => {
            let submission = state
                .submissions
                .values()
                .find(|s| s.course_work_id == work.id && s.user_id == caller.user_id)
                .map(|s| s.id.clone());
            out["studentContext"] = match submission {
                Some(id) => json!({ "submissionId": id }),
                None => json!({}),
            };
        }
    }
    Ok(out)
}

/// Pages `items` by `pageSize` and `pageToken`. A token is bound to the caller and to every
/// other parameter of the request that produced it, as "the list request must be otherwise
/// identical" says.
fn paginate(
    state: &mut State,
    caller: &Caller,
    req: &ValidatedRequest<'_>,
    items: Vec<Value>,
) -> Result<(Vec<Value>, Option<String>), Fail> {
    let size = match req.query_one("pageSize").map(str::parse::<i64>) {
        None | Some(Ok(0)) => DEFAULT_PAGE_SIZE,
        Some(Ok(n)) if n > 0 => usize::try_from(n)
            .unwrap_or(MAX_PAGE_SIZE)
            .min(MAX_PAGE_SIZE),
        _ => {
            return Err(invalid_argument(
                "pageSize: The page size must not be negative.",
            ));
        }
    };
    let mut fingerprint = format!("{}|{}|", req.method.id, caller.user_id);
    for (k, v) in &req.path_params {
        fingerprint.push_str(&format!("{k}={v}|"));
    }
    for (k, vs) in &req.query {
        if !FORM_PARAMS.contains(&k.as_str()) && k != "pageSize" {
            fingerprint.push_str(&format!("{k}={}|", vs.join(",")));
        }
    }
    let offset = match req.query_one("pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => match state.page_tokens.get(t) {
            Some(c) if c.fingerprint == fingerprint => c.offset,
            _ => {
                return Err(invalid_argument(
                    "pageToken: The page token is not valid for this request.",
                ));
            }
        },
    };
    let page: Vec<Value> = items.iter().skip(offset).take(size).cloned().collect();
    let end = offset + page.len();
    let next = (end < items.len()).then(|| {
        let token = super::random_urlsafe();
        state.page_tokens.insert(
            token.clone(),
            super::PageCursor {
                fingerprint,
                offset: end,
            },
        );
        token
    });
    Ok((page, next))
}

/// A list answer; Google leaves the list out when it is empty.
fn list(key: &str, items: Vec<Value>, next: Option<String>) -> Value {
    let mut out = json!({});
    if !items.is_empty() {
        out[key] = Value::Array(items);
    }
    if let Some(n) = next {
        out["nextPageToken"] = json!(n);
    }
    out
}

fn course_json(c: &Course) -> Value {
    let mut v = json!({
        "id": c.id,
        "name": c.name,
        "ownerId": c.owner_id,
        "courseState": c.state,
        "alternateLink": format!("https://classroom.google.com/c/{}", c.id),
        "guardiansEnabled": false,
    });
    if let Some(s) = &c.section {
        v["section"] = json!(s);
    }
    v
}

fn member_json(course_id: &str, user: &ClassroomUser, scopes: &BTreeSet<String>) -> Value {
    let mut profile = json!({
        "id": user.id,
        "name": {
            "givenName": user.given_name,
            "familyName": user.family_name,
            "fullName": user.full_name(),
        },
    });
    if scopes.contains("https://www.googleapis.com/auth/classroom.profile.emails") {
        profile["emailAddress"] = json!(user.email);
    }
    if scopes.contains("https://www.googleapis.com/auth/classroom.profile.photos") {
        profile["photoUrl"] = json!(format!("https://lh3.googleusercontent.com/a/{}", user.id));
    }
    json!({"courseId": course_id, "userId": user.id, "profile": profile})
}

fn course_work_json(w: &CourseWork, project: &str) -> Value {
    let mut v = json!({
        "courseId": w.course_id,
        "id": w.id,
        "title": w.title,
        "state": w.state,
        "alternateLink": format!("https://classroom.google.com/c/{}/a/{}/details", w.course_id, w.id),
        "creationTime": w.created,
        "updateTime": w.created,
        "workType": w.work_type,
        "assigneeMode": "ALL_STUDENTS",
        "submissionModificationMode": "MODIFIABLE_UNTIL_TURNED_IN",
        "creatorUserId": w.creator,
        "associatedWithDeveloper": w.project == project,
    });
    if let Some(d) = &w.description {
        v["description"] = json!(d);
    }
    if let Some(m) = w.max_points {
        v["maxPoints"] = json!(m);
    }
    v
}

fn submission_json(s: &Submission, w: &CourseWork, project: &str) -> Value {
    let mut v = json!({
        "courseId": s.course_id,
        "courseWorkId": s.course_work_id,
        "id": s.id,
        "userId": s.user_id,
        "creationTime": s.created,
        "updateTime": s.updated,
        "state": s.state,
        "late": false,
        "alternateLink": format!("https://classroom.google.com/c/{}/a/{}/submissions/by-status/and-sort-last-name/student/{}", s.course_id, s.course_work_id, s.user_id),
        "courseWorkType": w.work_type,
        "associatedWithDeveloper": w.project == project,
    });
    if let Some(g) = s.draft_grade {
        v["draftGrade"] = json!(g);
    }
    if let Some(g) = s.assigned_grade {
        v["assignedGrade"] = json!(g);
    }
    v
}

fn attachment_json(a: &data::Attachment) -> Value {
    let mut v = json!({
        "courseId": a.course_id,
        "itemId": a.item_id,
        "postId": a.item_id,
        "id": a.id,
        "title": a.title,
        "teacherViewUri": {"uri": a.teacher_view_uri},
        "studentViewUri": {"uri": a.student_view_uri},
        "gradeSyncEnabled": a.grade_sync_enabled,
    });
    if let Some(r) = &a.student_work_review_uri {
        v["studentWorkReviewUri"] = json!({ "uri": r });
    }
    if let Some(m) = a.max_points {
        v["maxPoints"] = json!(m);
    }
    v
}

fn fault_response(fault: ClassroomFault) -> Response {
    match fault {
        ClassroomFault::ResourceExhausted { retry_after } => {
            let mut r = google_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute per user' of service 'classroom.googleapis.com'.",
            );
            let value = match retry_after {
                Some(RetryAfter::Seconds(s)) => Some(s.to_string()),
                Some(RetryAfter::HttpDate(after)) => {
                    Some(httpdate::fmt_http_date(SystemTime::now() + after))
                }
                None => None,
            };
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        ClassroomFault::Internal => google_error(500, "INTERNAL", "Internal error encountered."),
        ClassroomFault::Unavailable => {
            google_error(503, "UNAVAILABLE", "The service is currently unavailable.")
        }
        ClassroomFault::Error {
            http_status,
            status,
            message,
        } => google_error(http_status, &status, &message),
    }
}
