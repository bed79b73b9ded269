//! Typed calls to the Classroom API v1 (paths, parameters and bodies as the discovery
//! document defines them), with `nextPageToken` paging.
//!
//! Every call takes an access token from the shared [`TokenCache`]; when Google answers 401,
//! the token is dropped and the call is sent once more with a freshly refreshed one. Nothing
//! else is retried here: rate limits and server failures come back as [`ApiError`]s carrying
//! `Retry-After`, for the caller's queue to schedule.

use crate::error::ApiError;
use crate::grade::{ScaleError, scale_to_max_points};
use crate::ids::{AttachmentId, CourseId, CourseWorkId, SubmissionId};
use crate::model::{
    AddOnAttachment, AddOnAttachmentStudentSubmission, AddOnContext, AttachmentBody, Course,
    CourseMember, CourseState, CourseWork, CourseWorkBody, CourseWorkState, EmbedUri, GradeUpdate,
    NewAddOnAttachment, NewCourseWork, Page, PubSubTopic, Registration, StudentSubmission, UserRef,
    WorkType,
};
use crate::oauth::OAuthClient;
use crate::secret::{AccessToken, AddOnToken};
use crate::token::{Credentials, TokenCache};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use url::Url;

/// Largest answer read; a page of 1,000 students with profiles is well under this.
const BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Most pages followed in one listing, so a paging bug cannot keep a job busy forever.
pub const MAX_PAGES: usize = 2_000;

/// Filters of `courses.list`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CourseQuery {
    pub teacher_id: Option<UserRef>,
    pub student_id: Option<UserRef>,
    /// Empty: courses in every state.
    pub course_states: Vec<CourseState>,
    /// Zero or `None`: Google decides.
    pub page_size: Option<u32>,
}

/// The Classroom API client. Cheap to clone; clones share the token cache.
#[derive(Debug, Clone)]
pub struct ClassroomClient {
    http: reqwest::Client,
    api_base: Url,
    tokens: TokenCache,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListCourses {
    #[serde(default)]
    courses: Vec<Course>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListStudents {
    #[serde(default)]
    students: Vec<CourseMember>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListTeachers {
    #[serde(default)]
    teachers: Vec<CourseMember>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListSubmissions {
    #[serde(default)]
    student_submissions: Vec<StudentSubmission>,
    #[serde(default)]
    next_page_token: Option<String>,
}

fn page<T>(items: Vec<T>, next: Option<String>) -> Page<T> {
    Page {
        items,
        // Google sends an empty string on the last page of some lists.
        next_page_token: next.filter(|t| !t.is_empty()),
    }
}

impl ClassroomClient {
    /// A client with its own token cache.
    pub fn new(http: reqwest::Client, oauth: OAuthClient) -> Self {
        Self::with_token_cache(http, TokenCache::new(oauth))
    }

    /// A client sharing a token cache (one per process).
    pub fn with_token_cache(http: reqwest::Client, tokens: TokenCache) -> Self {
        let mut api_base = tokens.oauth().config().endpoints.api_base.clone();
        // Method paths are joined onto the base, which needs its trailing slash.
        if !api_base.path().ends_with('/') {
            let path = format!("{}/", api_base.path());
            api_base.set_path(&path);
        }
        Self {
            http,
            api_base,
            tokens,
        }
    }

    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    /// `{api_base}v1/{segments…}`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.api_base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("v1").extend(segments);
        }
        url
    }

    // ----- courses and rosters -----

    /// One page of `courses.list`.
    pub async fn courses_page(
        &self,
        creds: &Credentials,
        query: &CourseQuery,
        page_token: Option<&str>,
    ) -> Result<Page<Course>, ApiError> {
        let mut url = self.url(&["courses"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(t) = &query.teacher_id {
                q.append_pair("teacherId", t.as_str());
            }
            if let Some(s) = &query.student_id {
                q.append_pair("studentId", s.as_str());
            }
            for state in &query.course_states {
                q.append_pair("courseStates", state.as_str());
            }
            if let Some(n) = query.page_size.filter(|n| *n > 0) {
                q.append_pair("pageSize", &n.to_string());
            }
        }
        let r: ListCourses = self.get(creds, with_page_token(url, page_token)).await?;
        Ok(page(r.courses, r.next_page_token))
    }

    /// Every course matching `query`, all pages.
    pub async fn list_courses(
        &self,
        creds: &Credentials,
        query: &CourseQuery,
    ) -> Result<Vec<Course>, ApiError> {
        walk(|token| async move { self.courses_page(creds, query, token.as_deref()).await }).await
    }

    /// One page of `courses.students.list`.
    pub async fn students_page(
        &self,
        creds: &Credentials,
        course: &CourseId,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<Page<CourseMember>, ApiError> {
        let url = self.roster_url(course, "students", page_size, page_token);
        let r: ListStudents = self.get(creds, url).await?;
        Ok(page(r.students, r.next_page_token))
    }

    /// Every student of a course.
    pub async fn list_students(
        &self,
        creds: &Credentials,
        course: &CourseId,
        page_size: Option<u32>,
    ) -> Result<Vec<CourseMember>, ApiError> {
        walk(|token| async move {
            self.students_page(creds, course, page_size, token.as_deref())
                .await
        })
        .await
    }

    /// One page of `courses.teachers.list`.
    pub async fn teachers_page(
        &self,
        creds: &Credentials,
        course: &CourseId,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<Page<CourseMember>, ApiError> {
        let url = self.roster_url(course, "teachers", page_size, page_token);
        let r: ListTeachers = self.get(creds, url).await?;
        Ok(page(r.teachers, r.next_page_token))
    }

    /// Every teacher of a course.
    pub async fn list_teachers(
        &self,
        creds: &Credentials,
        course: &CourseId,
        page_size: Option<u32>,
    ) -> Result<Vec<CourseMember>, ApiError> {
        walk(|token| async move {
            self.teachers_page(creds, course, page_size, token.as_deref())
                .await
        })
        .await
    }

    fn roster_url(
        &self,
        course: &CourseId,
        which: &str,
        page_size: Option<u32>,
        page_token: Option<&str>,
    ) -> Url {
        let mut url = self.url(&["courses", course.as_str(), which]);
        if let Some(n) = page_size.filter(|n| *n > 0) {
            url.query_pairs_mut()
                .append_pair("pageSize", &n.to_string());
        }
        with_page_token(url, page_token)
    }

    // ----- courseWork and grades -----

    /// `courses.courseWork.create`: a published assignment graded out of `max_points`. It
    /// belongs to our Cloud project, which is what lets us grade it later.
    pub async fn create_course_work(
        &self,
        creds: &Credentials,
        course: &CourseId,
        work: &NewCourseWork,
    ) -> Result<CourseWork, ApiError> {
        if work.title.trim().is_empty() {
            return Err(ApiError::InvalidRequest("an assignment needs a title"));
        }
        let body = CourseWorkBody {
            title: &work.title,
            description: work.description.as_deref(),
            work_type: WorkType::Assignment,
            state: CourseWorkState::Published,
            max_points: work.max_points,
        };
        let url = self.url(&["courses", course.as_str(), "courseWork"]);
        self.send_json(creds, reqwest::Method::POST, url, Some(json(&body)?))
            .await
    }

    /// `courses.courseWork.get`.
    pub async fn get_course_work(
        &self,
        creds: &Credentials,
        course: &CourseId,
        course_work: &CourseWorkId,
    ) -> Result<CourseWork, ApiError> {
        let url = self.url(&[
            "courses",
            course.as_str(),
            "courseWork",
            course_work.as_str(),
        ]);
        self.get(creds, url).await
    }

    /// One page of `courses.courseWork.studentSubmissions.list`, optionally for one student.
    pub async fn submissions_page(
        &self,
        creds: &Credentials,
        course: &CourseId,
        course_work: &CourseWorkId,
        user: Option<&UserRef>,
        page_token: Option<&str>,
    ) -> Result<Page<StudentSubmission>, ApiError> {
        let mut url = self.submissions_url(course, course_work, &[]);
        if let Some(u) = user {
            url.query_pairs_mut().append_pair("userId", u.as_str());
        }
        let r: ListSubmissions = self.get(creds, with_page_token(url, page_token)).await?;
        Ok(page(r.student_submissions, r.next_page_token))
    }

    /// Every submission of a courseWork, optionally of one student only.
    pub async fn list_submissions(
        &self,
        creds: &Credentials,
        course: &CourseId,
        course_work: &CourseWorkId,
        user: Option<&UserRef>,
    ) -> Result<Vec<StudentSubmission>, ApiError> {
        walk(|token| async move {
            self.submissions_page(creds, course, course_work, user, token.as_deref())
                .await
        })
        .await
    }

    /// `studentSubmissions.patch` with `updateMask` naming exactly the grades given. Only
    /// the project that created the courseWork may do this
    /// ([`ApiError::ProjectPermissionDenied`] otherwise).
    pub async fn patch_grades(
        &self,
        creds: &Credentials,
        course: &CourseId,
        course_work: &CourseWorkId,
        submission: &SubmissionId,
        update: GradeUpdate,
    ) -> Result<StudentSubmission, ApiError> {
        let mut mask = Vec::new();
        let mut body = serde_json::Map::new();
        for (field, value) in [
            ("draftGrade", update.draft_grade),
            ("assignedGrade", update.assigned_grade),
        ] {
            if let Some(v) = value {
                if !v.is_finite() || v < 0.0 {
                    return Err(ApiError::InvalidRequest(
                        "a grade must be a finite, non-negative number",
                    ));
                }
                mask.push(field);
                body.insert(field.to_owned(), serde_json::json!(v));
            }
        }
        if mask.is_empty() {
            return Err(ApiError::InvalidRequest("a grade update must set a grade"));
        }
        let mut url = self.submissions_url(course, course_work, &[submission.as_str()]);
        url.query_pairs_mut()
            .append_pair("updateMask", &mask.join(","));
        let body = json(&serde_json::Value::Object(body))?;
        self.send_json(creds, reqwest::Method::PATCH, url, Some(body))
            .await
    }

    /// `studentSubmissions.return`: hands the work back, making `assignedGrade` visible to the
    /// student. It does not copy `draftGrade` into `assignedGrade`.
    pub async fn return_submission(
        &self,
        creds: &Credentials,
        course: &CourseId,
        course_work: &CourseWorkId,
        submission: &SubmissionId,
    ) -> Result<(), ApiError> {
        let action = format!("{}:return", submission.as_str());
        let url = self.submissions_url(course, course_work, &[&action]);
        let _: serde::de::IgnoredAny = self
            .send_json(creds, reqwest::Method::POST, url, Some(b"{}".to_vec()))
            .await?;
        Ok(())
    }

    fn submissions_url(&self, course: &CourseId, course_work: &CourseWorkId, rest: &[&str]) -> Url {
        let mut segments = vec![
            "courses",
            course.as_str(),
            "courseWork",
            course_work.as_str(),
            "studentSubmissions",
        ];
        segments.extend_from_slice(rest);
        self.url(&segments)
    }

    // ----- add-ons -----

    /// `courses.courseWork.getAddOnContext`: who is in the iframe, as Classroom sees it. Call
    /// it on every iframe open instead of trusting the query parameters.
    pub async fn get_add_on_context(
        &self,
        creds: &Credentials,
        course: &CourseId,
        item: &CourseWorkId,
        add_on_token: Option<&AddOnToken>,
        attachment: Option<&AttachmentId>,
    ) -> Result<AddOnContext, ApiError> {
        let mut url = self.url(&[
            "courses",
            course.as_str(),
            "courseWork",
            item.as_str(),
            "addOnContext",
        ]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(t) = add_on_token {
                q.append_pair("addOnToken", t.secret());
            }
            if let Some(a) = attachment {
                q.append_pair("attachmentId", a.as_str());
            }
        }
        self.get(creds, url).await
    }

    /// `courses.courseWork.addOnAttachments.create`.
    pub async fn create_add_on_attachment(
        &self,
        creds: &Credentials,
        course: &CourseId,
        item: &CourseWorkId,
        add_on_token: Option<&AddOnToken>,
        attachment: &NewAddOnAttachment,
    ) -> Result<AddOnAttachment, ApiError> {
        if attachment.max_points.is_some_and(|m| m > 0)
            && attachment.student_work_review_uri.is_none()
        {
            return Err(ApiError::InvalidRequest(
                "a graded attachment needs a student work review URI",
            ));
        }
        let body = AttachmentBody {
            title: &attachment.title,
            teacher_view_uri: embed(&attachment.teacher_view_uri),
            student_view_uri: embed(&attachment.student_view_uri),
            student_work_review_uri: attachment.student_work_review_uri.as_ref().map(embed),
            max_points: attachment.max_points,
        };
        let mut url = self.url(&[
            "courses",
            course.as_str(),
            "courseWork",
            item.as_str(),
            "addOnAttachments",
        ]);
        if let Some(t) = add_on_token {
            url.query_pairs_mut().append_pair("addOnToken", t.secret());
        }
        self.send_json(creds, reqwest::Method::POST, url, Some(json(&body)?))
            .await
    }

    /// `addOnAttachments.studentSubmissions.patch` of `pointsEarned`; with grade sync on,
    /// Classroom shows it as the submission's draft grade.
    pub async fn patch_add_on_points(
        &self,
        creds: &Credentials,
        course: &CourseId,
        item: &CourseWorkId,
        attachment: &AttachmentId,
        submission: &SubmissionId,
        points_earned: f64,
    ) -> Result<AddOnAttachmentStudentSubmission, ApiError> {
        if !points_earned.is_finite() || points_earned < 0.0 {
            return Err(ApiError::InvalidRequest(
                "points must be a finite, non-negative number",
            ));
        }
        let mut url = self.url(&[
            "courses",
            course.as_str(),
            "courseWork",
            item.as_str(),
            "addOnAttachments",
            attachment.as_str(),
            "studentSubmissions",
            submission.as_str(),
        ]);
        url.query_pairs_mut()
            .append_pair("updateMask", "pointsEarned");
        let body = json(&serde_json::json!({ "pointsEarned": points_earned }))?;
        self.send_json(creds, reqwest::Method::PATCH, url, Some(body))
            .await
    }

    /// `addOnAttachments.studentSubmissions.get`: whose work a submission is (`userId`) and
    /// its points, as the Student Work Review iframe needs to know whom it shows.
    pub async fn get_add_on_submission(
        &self,
        creds: &Credentials,
        course: &CourseId,
        item: &CourseWorkId,
        attachment: &AttachmentId,
        submission: &SubmissionId,
    ) -> Result<AddOnAttachmentStudentSubmission, ApiError> {
        let url = self.url(&[
            "courses",
            course.as_str(),
            "courseWork",
            item.as_str(),
            "addOnAttachments",
            attachment.as_str(),
            "studentSubmissions",
            submission.as_str(),
        ]);
        self.get(creds, url).await
    }

    // ----- push notifications -----

    /// `registrations.create` for a course's roster changes, published to `topic`. The
    /// registration lapses after a week; create it again before `expiry_time`.
    pub async fn register_roster_changes(
        &self,
        creds: &Credentials,
        course: &CourseId,
        topic: &PubSubTopic,
    ) -> Result<Registration, ApiError> {
        let body = serde_json::json!({
            "feed": {
                "feedType": "COURSE_ROSTER_CHANGES",
                "courseRosterChangesInfo": { "courseId": course.as_str() },
            },
            "cloudPubsubTopic": { "topicName": topic.as_str() },
        });
        let url = self.url(&["registrations"]);
        self.send_json(creds, reqwest::Method::POST, url, Some(json(&body)?))
            .await
    }

    // ----- transport -----

    async fn get<T: DeserializeOwned>(&self, creds: &Credentials, url: Url) -> Result<T, ApiError> {
        self.send_json(creds, reqwest::Method::GET, url, None).await
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        creds: &Credentials,
        method: reqwest::Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<T, ApiError> {
        let build = |token: &AccessToken| {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.secret())
                .header(http::header::ACCEPT, "application/json");
            if let Some(b) = &body {
                req = req
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            req
        };
        let resp = match creds {
            Credentials::Bearer(token) => send(build(token)).await?,
            Credentials::Offline(refresh) => {
                let token = self.access_token(refresh).await?;
                match send(build(&token)).await {
                    Err(ApiError::TokenExpired { .. }) => {
                        tracing::debug!("Classroom refused the access token; refreshing once");
                        self.tokens.invalidate(refresh, &token);
                        let fresh = self.access_token(refresh).await?;
                        send(build(&fresh)).await?
                    }
                    other => other?,
                }
            }
        };
        let bytes = read_body(resp).await?;
        serde_json::from_slice(&bytes).map_err(|_| {
            ApiError::InvalidResponse(
                "the answer does not have the shape the discovery document gives",
            )
        })
    }

    async fn access_token(
        &self,
        refresh: &crate::secret::RefreshToken,
    ) -> Result<AccessToken, ApiError> {
        match self.tokens.access_token(refresh).await {
            Ok(t) => Ok(t.token),
            Err(e @ crate::oauth::OAuthError::Revoked { .. }) => Err(ApiError::Revoked(e)),
            Err(e) => Err(ApiError::Token(e)),
        }
    }
}

impl CourseWork {
    /// A score (`given` out of `maximum`) as points of this courseWork.
    pub fn scale(&self, given: f64, maximum: f64) -> Result<f64, ScaleError> {
        scale_to_max_points(given, maximum, self.max_points)
    }
}

fn embed(url: &Url) -> EmbedUri {
    EmbedUri {
        uri: url.to_string(),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|_| ApiError::InvalidRequest("the body could not be encoded"))
}

/// `pageToken` goes last so that every other parameter stays identical between pages, as
/// Google requires.
fn with_page_token(mut url: Url, token: Option<&str>) -> Url {
    if let Some(t) = token {
        url.query_pairs_mut().append_pair("pageToken", t);
    }
    url
}

/// Walks `nextPageToken`s until the last page, refusing a token seen before.
async fn walk<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, ApiError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, ApiError>>,
{
    let mut all = Vec::new();
    let mut seen = HashSet::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = fetch(token.take()).await?;
        all.extend(page.items);
        match page.next_page_token {
            None => return Ok(all),
            Some(next) => {
                if !seen.insert(next.clone()) {
                    return Err(ApiError::Paging("a page token came back a second time"));
                }
                token = Some(next);
            }
        }
    }
    Err(ApiError::Paging("more pages than the limit"))
}

async fn send(req: reqwest::RequestBuilder) -> Result<reqwest::Response, ApiError> {
    let resp = req.send().await.map_err(|e| ApiError::transport(&e))?;
    if resp.status().is_success() {
        Ok(resp)
    } else {
        Err(ApiError::from_response(resp).await)
    }
}

async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| ApiError::transport(&e))? {
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(ApiError::InvalidResponse(
                "the answer is larger than 16 MiB",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ClientId;
    use crate::oauth::{GoogleEndpoints, OAuthConfig};
    use crate::secret::ClientSecret;

    fn client(base: &str) -> ClassroomClient {
        let mut endpoints = GoogleEndpoints::google();
        endpoints.api_base = Url::parse(base).unwrap();
        let oauth = OAuthClient::new(
            reqwest::Client::new(),
            OAuthConfig {
                client_id: ClientId::new("c"),
                client_secret: ClientSecret::new("s"),
                redirect_uri: Url::parse("https://x.example/cb").unwrap(),
                endpoints,
            },
        );
        ClassroomClient::new(reqwest::Client::new(), oauth)
    }

    #[test]
    fn urls_encode_ids_and_keep_a_base_path() {
        let c = client("https://proxy.example/google");
        assert_eq!(
            c.url(&["courses", "a/b c", "students"]).as_str(),
            "https://proxy.example/google/v1/courses/a%2Fb%20c/students"
        );
        let c = client("https://classroom.googleapis.com/");
        let url = c.submissions_url(&"1".into(), &"2".into(), &["3:return"]);
        assert_eq!(
            url.as_str(),
            "https://classroom.googleapis.com/v1/courses/1/courseWork/2/studentSubmissions/3:return"
        );
    }

    #[tokio::test]
    async fn walk_stops_on_a_repeated_token() {
        let err = walk(|_t| async {
            Ok(Page {
                items: vec![1],
                next_page_token: Some("same".to_owned()),
            })
        })
        .await
        .unwrap_err();
        assert!(matches!(err, ApiError::Paging(_)));
    }
}
