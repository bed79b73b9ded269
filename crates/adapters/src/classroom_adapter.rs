//! The Google Classroom adapter: grades through `courses.courseWork.studentSubmissions`
//! (list for the student, patch `draftGrade` and/or `assignedGrade` with an `updateMask`,
//! optionally `return`), rosters through `courses.students.list` then
//! `courses.teachers.list`, each paged by `nextPageToken`.
//!
//! Only the Google Cloud project that created a courseWork may change its grades, and calls
//! are made with the offline credentials of the teacher whose grant created it; which grant
//! that is, and its refresh token, come from a [`ClassroomGrants`] the server implements over
//! the store. Google's answers are mapped into [`DeliveryError`] so the passback queue's
//! retry policy applies unchanged: `RESOURCE_EXHAUSTED`/429 with `Retry-After` and 5xx are
//! retried, `UNAUTHENTICATED` is refreshed once inside the client, `invalid_grant` marks the
//! grant revoked, `@ProjectPermissionDenied`, policy and scope refusals are configuration
//! problems an admin must fix, other refusals (`NOT_FOUND`, `INVALID_ARGUMENT`, …) are final.

use async_trait::async_trait;
use classroom::model::{CourseMember, GradeUpdate, UserRef};
use classroom::{ApiError, ClassroomClient, CourseId, CourseWorkId, Credentials, UserId};
use domain::{
    DeliveryError, DeliveryReceipt, EnrollmentStatus, LmsAdapter, PlatformEndpoints, Role,
    RosterMember, RosterPage, RosterRequest, ScoreDelivery, TargetLocation,
};
use std::sync::Arc;
use url::Url;

/// Which grades a score sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradeField {
    /// `draftGrade`: for the teacher to review and return.
    Draft,
    /// `assignedGrade`: what the student sees once the work is returned.
    Assigned,
    Both,
}

/// The teacher grant behind a courseWork, ready to call Classroom with.
#[derive(Debug, Clone)]
pub struct CourseWorkGrant {
    /// The grant's id, named back in [`ClassroomGrants::grant_revoked`].
    pub grant_id: String,
    pub client: ClassroomClient,
    pub credentials: Credentials,
    pub grade: GradeField,
    /// Return the submission after grading, so an `assignedGrade` reaches the student.
    pub return_on_grade: bool,
    /// The courseWork's `maxPoints` when it was created.
    pub max_points: f64,
}

/// The grant a linked course is read with.
#[derive(Debug, Clone)]
pub struct CourseGrant {
    pub grant_id: String,
    pub client: ClassroomClient,
    pub credentials: Credentials,
}

/// Where the adapter finds teachers' credentials. The server implements it over the store.
#[async_trait]
pub trait ClassroomGrants: Send + Sync + std::fmt::Debug {
    /// The grant that created this courseWork and how its scores are sent. An unknown
    /// courseWork (not created through lmsbridge) is `Misconfigured`: nothing else may grade it.
    async fn course_work_grant(
        &self,
        platform: &PlatformEndpoints,
        course_id: &str,
        course_work_id: &str,
    ) -> Result<CourseWorkGrant, DeliveryError>;

    /// The grant a linked course's roster is read with.
    async fn course_grant(
        &self,
        platform: &PlatformEndpoints,
        course_id: &str,
    ) -> Result<CourseGrant, DeliveryError>;

    /// Google said the grant's refresh token no longer works (`invalid_grant`): record it so
    /// the admin sees it, and so it is not tried again until the teacher reconnects.
    async fn grant_revoked(&self, platform: &PlatformEndpoints, grant_id: &str, reason: &str);
}

/// Google's per-user Classroom quota: 1,200 requests a minute, measured as a moving
/// average (Classroom API "Usage limits").
pub const USER_REQUESTS_PER_MINUTE: f64 = 1200.0;

/// Paces the requests made with each teacher's grant to Google's per-user quota: a token
/// bucket per grant that refills at the quota's rate and holds a second's worth, so bursts
/// stay small and the moving average never goes over. Requests reserve their slot and wait
/// for it; nothing is dropped.
#[derive(Debug)]
pub(crate) struct UserPacer {
    per_sec: f64,
    burst: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
}

impl UserPacer {
    fn new(per_minute: f64) -> Self {
        let per_sec = (per_minute / 60.0).max(0.01);
        Self {
            per_sec,
            burst: per_sec.max(1.0),
            buckets: std::sync::Mutex::default(),
        }
    }

    /// How long the next request of `grant` must wait, its slot reserved.
    fn reserve(&self, grant: &str) -> std::time::Duration {
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // Full buckets hold nothing worth keeping; keeps the map to busy grants.
        if buckets.len() > 10_000 {
            let (per_sec, burst) = (self.per_sec, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < burst
            });
        }
        let (tokens, at) = buckets.entry(grant.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        *tokens -= 1.0;
        if *tokens >= 0.0 {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_secs_f64(-*tokens / self.per_sec)
        }
    }

    pub(crate) async fn pace(&self, grant: &str) {
        let wait = self.reserve(grant);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Sends to Google Classroom.
#[derive(Debug, Clone)]
pub struct ClassroomAdapter {
    grants: Arc<dyn ClassroomGrants>,
    /// Each teacher's requests paced to Google's per-user quota.
    pacer: Arc<UserPacer>,
    /// Grants and submissions for add-on attachment scores ([`crate::classroom_addon`]).
    add_ons: Option<Arc<dyn crate::AddOnGrants>>,
}

/// Which list a roster URL reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RosterList {
    Students,
    Teachers,
}

impl ClassroomAdapter {
    pub fn new(grants: Arc<dyn ClassroomGrants>) -> Self {
        Self::with_user_quota(grants, USER_REQUESTS_PER_MINUTE)
    }

    /// An adapter pacing each teacher's requests to `per_minute` (Google's quota by default).
    pub fn with_user_quota(grants: Arc<dyn ClassroomGrants>, per_minute: f64) -> Self {
        Self {
            grants,
            pacer: Arc::new(UserPacer::new(per_minute)),
            add_ons: None,
        }
    }

    /// Sends add-on attachment scores with these grants.
    #[must_use]
    pub fn with_add_ons(mut self, add_ons: Arc<dyn crate::AddOnGrants>) -> Self {
        self.add_ons = Some(add_ons);
        self
    }

    /// Maps a Classroom error for the retry policy, recording a revoked grant on the way.
    async fn delivery_error(
        &self,
        platform: &PlatformEndpoints,
        grant_id: &str,
        e: ApiError,
    ) -> DeliveryError {
        if let ApiError::Revoked(_) = &e {
            self.grants
                .grant_revoked(platform, grant_id, &e.to_string())
                .await;
        }
        map_error(e)
    }

    /// One roster page with the Classroom error kept, for the sync runner's failure codes
    /// (`admin_approval_required`, `authorization_revoked`, …). `request.roster_url` is the
    /// course's `…/v1/courses/{id}/students` URL; pages continue through the teachers.
    pub async fn roster_page_detailed(
        &self,
        request: &RosterRequest,
    ) -> Result<RosterPage, RosterError> {
        let url = request.page.as_ref().unwrap_or(&request.roster_url);
        let (course, list, token) = parse_roster_url(url).ok_or(RosterError::BadUrl)?;
        let page_size = page_size(url);
        let grant = self
            .grants
            .course_grant(&request.platform, course.as_str())
            .await
            .map_err(RosterError::Grant)?;
        self.pacer.pace(&grant.grant_id).await;
        let page = match list {
            RosterList::Students => {
                grant
                    .client
                    .students_page(&grant.credentials, &course, page_size, token.as_deref())
                    .await
            }
            RosterList::Teachers => {
                grant
                    .client
                    .teachers_page(&grant.credentials, &course, page_size, token.as_deref())
                    .await
            }
        };
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                if let ApiError::Revoked(_) = &e {
                    self.grants
                        .grant_revoked(&request.platform, &grant.grant_id, &e.to_string())
                        .await;
                }
                return Err(RosterError::Api(e));
            }
        };
        let role = match list {
            RosterList::Students => Role::Learner,
            RosterList::Teachers => Role::Instructor,
        };
        let members = page.items.iter().map(|m| member(m, role.clone())).collect();
        let next = match (page.next_page_token, list) {
            (Some(t), _) => Some(roster_url(url, list, Some(&t))),
            (None, RosterList::Students) => Some(roster_url(url, RosterList::Teachers, None)),
            (None, RosterList::Teachers) => None,
        };
        Ok(RosterPage { members, next })
    }
}

/// Why a roster page could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error("the roster URL is not a Classroom course's student or teacher list")]
    BadUrl,
    #[error("{0}")]
    Grant(DeliveryError),
    #[error("{0}")]
    Api(ApiError),
}

impl RosterError {
    /// A stable code for the sync's failure. `@ClassroomApiDisabled` (the domain admin has
    /// not turned the Classroom API on for these users) counts as the admin approval it
    /// needs, like Google's policy refusals.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadUrl => "invalid_roster_url",
            Self::Grant(_) => "no_google_grant",
            Self::Api(e) if e.error_type() == Some("ClassroomApiDisabled") => {
                "admin_approval_required"
            }
            Self::Api(e) => e.code(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api(e) => e.is_retryable(),
            Self::Grant(e) => e.is_retryable(),
            Self::BadUrl => false,
        }
    }

    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Api(e) => e.retry_after(),
            Self::Grant(e) => e.retry_after(),
            Self::BadUrl => None,
        }
    }
}

fn member(m: &CourseMember, role: Role) -> RosterMember {
    let profile = m.profile.as_ref();
    let name = profile.and_then(|p| p.name.as_ref());
    RosterMember {
        platform_user_id: m.user_id.as_str().to_owned(),
        name: name.and_then(|n| n.full_name.clone()),
        given_name: name.and_then(|n| n.given_name.clone()),
        family_name: name.and_then(|n| n.family_name.clone()),
        // Present only when the grant carries classroom.profile.emails.
        email: profile.and_then(|p| p.email_address.clone()),
        roles: vec![role],
        status: EnrollmentStatus::Active,
    }
}

/// `…/v1/courses/{id}/students|teachers[?pageToken=…]` read back.
fn parse_roster_url(url: &Url) -> Option<(CourseId, RosterList, Option<String>)> {
    let segments: Vec<&str> = url.path_segments()?.collect();
    let n = segments.len();
    if n < 4 || segments[n - 4] != "v1" || segments[n - 3] != "courses" {
        return None;
    }
    let list = match segments[n - 1] {
        "students" => RosterList::Students,
        "teachers" => RosterList::Teachers,
        _ => return None,
    };
    let course = percent_decode(segments[n - 2])?;
    if course.is_empty() {
        return None;
    }
    let token = url
        .query_pairs()
        .find(|(k, _)| k == "pageToken")
        .map(|(_, v)| v.into_owned());
    Some((CourseId::new(course), list, token))
}

fn percent_decode(s: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

/// The `pageSize` a roster URL asks for, kept from page to page.
fn page_size(url: &Url) -> Option<u32> {
    url.query_pairs()
        .find(|(k, _)| k == "pageSize")
        .and_then(|(_, v)| v.parse().ok())
}

/// The same course's list URL, for `list`, at `token` (its `pageSize` kept).
fn roster_url(from: &Url, list: RosterList, token: Option<&str>) -> Url {
    let mut url = from.clone();
    let size = page_size(from);
    url.set_query(None);
    if let Some(n) = size {
        url.query_pairs_mut()
            .append_pair("pageSize", &n.to_string());
    }
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop().push(match list {
            RosterList::Students => "students",
            RosterList::Teachers => "teachers",
        });
    }
    if let Some(t) = token {
        url.query_pairs_mut().append_pair("pageToken", t);
    }
    url
}

/// A course's student list URL on the Classroom API at `api_base`: where a roster sync of
/// that course starts.
pub fn course_roster_url(api_base: &Url, course_id: &str) -> Url {
    let mut url = api_base.clone();
    if let Ok(mut s) = url.path_segments_mut() {
        s.pop_if_empty()
            .extend(["v1", "courses", course_id, "students"]);
    }
    url
}

/// Google's answer, classified for the passback retry policy.
pub fn map_error(e: ApiError) -> DeliveryError {
    let detail = e.to_string();
    match e {
        ApiError::RateLimited { retry_after, .. } => DeliveryError::RateLimited {
            retry_after,
            detail,
        },
        ApiError::Transient {
            http_status,
            retry_after,
            ..
        } => DeliveryError::Transient {
            status: Some(http_status),
            retry_after,
            detail,
        },
        ApiError::Transport { .. } | ApiError::InvalidResponse(_) | ApiError::Paging(_) => {
            DeliveryError::Transient {
                status: None,
                retry_after: None,
                detail,
            }
        }
        // A 401 even after a fresh token: Google may be lagging on a new grant; retried
        // within the queue's attempt limit.
        ApiError::TokenExpired { .. } => DeliveryError::Transient {
            status: Some(401),
            retry_after: None,
            detail,
        },
        ApiError::Token(ref t) if t.is_retryable() => DeliveryError::Transient {
            status: None,
            retry_after: t.retry_after(),
            detail,
        },
        ApiError::ProjectPermissionDenied { .. }
        | ApiError::AdminApprovalRequired { .. }
        | ApiError::InsufficientScopes { .. }
        | ApiError::Revoked(_)
        | ApiError::Token(_) => DeliveryError::Misconfigured { detail },
        ApiError::PermissionDenied { .. } => DeliveryError::Rejected {
            status: 403,
            detail,
        },
        ApiError::Rejected { http_status, .. } => DeliveryError::Rejected {
            status: http_status,
            detail,
        },
        ApiError::InvalidRequest(_) => DeliveryError::Rejected {
            status: 400,
            detail,
        },
        _ => DeliveryError::Transient {
            status: None,
            retry_after: None,
            detail,
        },
    }
}

#[async_trait]
impl LmsAdapter for ClassroomAdapter {
    async fn send_score(&self, score: &ScoreDelivery) -> Result<DeliveryReceipt, DeliveryError> {
        if let (TargetLocation::ClassroomAddOnAttachment { .. }, Some(add_ons)) =
            (&score.target, &self.add_ons)
        {
            return crate::classroom_addon::send(add_ons.as_ref(), &self.pacer, score).await;
        }
        let TargetLocation::ClassroomCourseWork {
            course_id,
            course_work_id,
        } = &score.target
        else {
            return Err(DeliveryError::Misconfigured {
                detail: "this grade target is not a Classroom courseWork".into(),
            });
        };
        // Classroom keeps grades only; progress without a grade has nowhere to go.
        let Some(given) = score.score_given else {
            return Ok(DeliveryReceipt::new(
                200,
                "nothing sent: Google Classroom keeps grades only, and this score carries none",
            ));
        };
        let grant = self
            .grants
            .course_work_grant(&score.platform, course_id, course_work_id)
            .await?;
        let maximum = score.score_maximum.unwrap_or(grant.max_points);
        let points = classroom::grade::scale_to_max_points(given, maximum, Some(grant.max_points))
            .map_err(|e| DeliveryError::Rejected {
                status: 400,
                detail: format!("the score cannot become a Classroom grade: {e}"),
            })?;
        let course = CourseId::new(course_id.as_str());
        let work = CourseWorkId::new(course_work_id.as_str());
        let user = UserRef::Id(UserId::new(score.platform_user_id.as_str()));
        let creds = &grant.credentials;
        self.pacer.pace(&grant.grant_id).await;
        let submissions = match grant
            .client
            .submissions_page(creds, &course, &work, Some(&user), None)
            .await
        {
            Ok(p) => p.items,
            Err(e) => {
                return Err(self
                    .delivery_error(&score.platform, &grant.grant_id, e)
                    .await);
            }
        };
        let Some(submission) = submissions
            .into_iter()
            .find(|s| s.user_id.as_str() == score.platform_user_id)
        else {
            return Err(DeliveryError::Rejected {
                status: 404,
                detail: "Classroom has no submission of this student for the assignment (the student is not in the course, or joined after it was created)".into(),
            });
        };
        let update = match grant.grade {
            GradeField::Draft => GradeUpdate::draft(points),
            GradeField::Assigned => GradeUpdate::assigned(points),
            GradeField::Both => GradeUpdate::both(points),
        };
        self.pacer.pace(&grant.grant_id).await;
        if let Err(e) = grant
            .client
            .patch_grades(creds, &course, &work, &submission.id, update)
            .await
        {
            return Err(self
                .delivery_error(&score.platform, &grant.grant_id, e)
                .await);
        }
        let fields = match grant.grade {
            GradeField::Draft => "draftGrade",
            GradeField::Assigned => "assignedGrade",
            GradeField::Both => "draftGrade and assignedGrade",
        };
        let mut detail = format!(
            "{fields} {points} of {} set on submission {}",
            grant.max_points, submission.id
        );
        if grant.return_on_grade {
            self.pacer.pace(&grant.grant_id).await;
            if let Err(e) = grant
                .client
                .return_submission(creds, &course, &work, &submission.id)
                .await
            {
                return Err(self
                    .delivery_error(&score.platform, &grant.grant_id, e)
                    .await);
            }
            detail.push_str(", returned to the student");
        }
        if score
            .comment
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty())
        {
            // The Classroom API has no field for a grade's comment (private comments are not
            // in the API); say so rather than drop it unseen.
            detail.push_str("; the comment was not sent: the Classroom API takes none");
        }
        Ok(DeliveryReceipt::new(200, detail))
    }

    async fn roster_page(&self, request: &RosterRequest) -> Result<RosterPage, DeliveryError> {
        self.roster_page_detailed(request)
            .await
            .map_err(|e| match e {
                RosterError::Api(e) => map_error(e),
                RosterError::Grant(e) => e,
                RosterError::BadUrl => DeliveryError::Misconfigured {
                    detail: e.to_string(),
                },
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn roster_urls_walk_students_then_teachers() {
        let base = Url::parse("https://classroom.example/api/").unwrap();
        let start = course_roster_url(&base, "123");
        assert_eq!(
            start.as_str(),
            "https://classroom.example/api/v1/courses/123/students"
        );
        let (c, l, t) = parse_roster_url(&start).unwrap();
        assert_eq!((c.as_str(), l, t), ("123", RosterList::Students, None));
        let next = roster_url(&start, RosterList::Students, Some("tok/+="));
        let (_, l, t) = parse_roster_url(&next).unwrap();
        assert_eq!((l, t.as_deref()), (RosterList::Students, Some("tok/+=")));
        let teachers = roster_url(&next, RosterList::Teachers, None);
        assert_eq!(
            teachers.as_str(),
            "https://classroom.example/api/v1/courses/123/teachers"
        );
        assert!(parse_roster_url(&Url::parse("https://x/v1/courses/1/grades").unwrap()).is_none());
        assert!(
            parse_roster_url(&Url::parse("https://x/v2/courses/1/students").unwrap()).is_none()
        );
    }

    #[test]
    fn each_teacher_is_paced_to_the_per_user_quota() {
        let pacer = UserPacer::new(1200.0);
        // A second's worth goes at once, then one every 50 ms.
        for _ in 0..20 {
            assert_eq!(pacer.reserve("ada"), Duration::ZERO);
        }
        let next = pacer.reserve("ada");
        assert!(
            next > Duration::from_millis(40) && next <= Duration::from_millis(50),
            "{next:?}"
        );
        let later = pacer.reserve("ada");
        assert!(
            later > Duration::from_millis(90) && later <= Duration::from_millis(100),
            "{later:?}"
        );
        // Another teacher has a quota of their own.
        assert_eq!(pacer.reserve("grace"), Duration::ZERO);
        // Over a minute, no more than the quota (plus the initial second's burst).
        let p = UserPacer::new(1200.0);
        let waits: Vec<Duration> = (0..1300).map(|_| p.reserve("x")).collect();
        let within_a_minute = waits
            .iter()
            .filter(|w| **w < Duration::from_secs(60))
            .count();
        assert!(within_a_minute <= 1200 + 20, "{within_a_minute}");
    }

    #[test]
    fn google_errors_map_onto_the_retry_policy() {
        let rate = map_error(ApiError::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
            message: "Quota exceeded".into(),
        });
        assert!(rate.is_retryable());
        assert_eq!(rate.retry_after(), Some(Duration::from_secs(7)));
        let five = map_error(ApiError::Transient {
            http_status: 503,
            retry_after: None,
            message: "x".into(),
        });
        assert!(matches!(
            five,
            DeliveryError::Transient {
                status: Some(503),
                ..
            }
        ));
        let ppd = map_error(ApiError::ProjectPermissionDenied {
            message: "@ProjectPermissionDenied The Developer Project is not permitted".into(),
        });
        assert!(
            matches!(&ppd, DeliveryError::Misconfigured { detail } if detail.contains("only the Google Cloud project that created"))
        );
        assert!(!ppd.is_retryable());
        let nf = map_error(ApiError::Rejected {
            http_status: 404,
            status: classroom::RpcStatus::NotFound,
            error_type: None,
            message: "Requested entity was not found.".into(),
        });
        assert!(matches!(nf, DeliveryError::Rejected { status: 404, .. }));
        assert!(matches!(
            map_error(ApiError::PermissionDenied {
                error_type: None,
                message: "x".into()
            }),
            DeliveryError::Rejected { status: 403, .. }
        ));
    }
}
