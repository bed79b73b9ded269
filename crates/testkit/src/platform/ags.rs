//! Assignment and Grade Services 2.0: line items (§3.2), scores (§3.4) and results (§3.5).
//!
//! Checks follow what real platforms enforce, so that a tool passing here passes there:
//! the exact score media type (Moodle), scores only for enrolled learners (Canvas answers 422
//! "User not found in course or is not a student"), and strictly increasing timestamps per
//! learner and line item (Moodle answers 409).

use super::data::LineItem;
use super::respond::{Paging, Params, Refusal, json_as, media_type, next_link};
use super::stats::RejectReason;
use super::{RecordedScore, SimulatedLms, faults::FaultKind, now};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use lti::ags::{
    MEDIA_TYPE_LINE_ITEM, MEDIA_TYPE_LINE_ITEMS, MEDIA_TYPE_RESULTS, MEDIA_TYPE_SCORE,
    SCOPE_LINEITEM, SCOPE_LINEITEM_READONLY, SCOPE_RESULT_READONLY, SCOPE_SCORE,
};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// AGS §3.4.6 and §3.4.7.
const ACTIVITY_PROGRESS: &[&str] = &[
    "Initialized",
    "Started",
    "InProgress",
    "Submitted",
    "Completed",
];
const GRADING_PROGRESS: &[&str] = &[
    "FullyGraded",
    "Pending",
    "PendingManual",
    "Failed",
    "NotReady",
];

/// A line item as a tool sends it to create or update one.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LineItemBody {
    label: Option<String>,
    score_maximum: Option<f64>,
    resource_link_id: Option<String>,
    resource_id: Option<String>,
    tag: Option<String>,
    start_date_time: Option<String>,
    end_date_time: Option<String>,
}

/// A score as a tool sends it; every field optional so each gap gets its own answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScoreBody {
    user_id: Option<String>,
    score_given: Option<f64>,
    score_maximum: Option<f64>,
    comment: Option<String>,
    timestamp: Option<String>,
    activity_progress: Option<String>,
    grading_progress: Option<String>,
}

fn bad_request(reason: RejectReason, description: impl Into<String>) -> Refusal {
    Refusal::json(
        reason,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        description,
    )
}

fn not_found(reason: RejectReason, what: &str) -> Refusal {
    Refusal::json(
        reason,
        StatusCode::NOT_FOUND,
        "not_found",
        format!("{what} not found"),
    )
}

fn unsupported_media_type(expected: &str) -> Refusal {
    Refusal::json(
        RejectReason::MediaType,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("Content-Type must be {expected}"),
    )
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|_| {
        bad_request(
            RejectReason::MalformedBody,
            "the body is not valid JSON of the expected shape",
        )
    })
}

fn is_timestamp(value: &str) -> bool {
    OffsetDateTime::parse(value, &Rfc3339).is_ok()
}

/// The answer an injected fault gives instead of processing the score.
fn fault_response(kind: FaultKind) -> Response {
    match kind {
        FaultKind::TooManyRequests { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after_secs.to_string())],
            axum::Json(json!({"error": "rate_limited", "error_description": "too many requests"})),
        )
            .into_response(),
        FaultKind::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(
                json!({"error": "server_error", "error_description": "something went wrong"}),
            ),
        )
            .into_response(),
        FaultKind::RateLimit403 => (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "403 Forbidden (Rate Limit Exceeded)",
        )
            .into_response(),
        FaultKind::ConcludedCourse422 => (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"errors": [{"message":
                "This course has concluded. AGS requests will no longer be accepted for this course."
            }]})),
        )
            .into_response(),
    }
}

/// `GET …/line_items`: the course's line items, filtered and paged (§3.2.5-3.2.6).
pub(super) async fn list_line_items(
    State(lms): State<SimulatedLms>,
    Path(course_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let result = lms.list_line_items(&course_id, query.as_deref(), &headers);
    lms.answer(result)
}

/// `POST …/line_items`: creates a line item (§3.2.7).
pub(super) async fn create_line_item(
    State(lms): State<SimulatedLms>,
    Path(course_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = lms.write_line_item(&course_id, None, &headers, &body);
    lms.answer(result)
}

/// `GET …/line_items/{id}`.
pub(super) async fn get_line_item(
    State(lms): State<SimulatedLms>,
    Path((course_id, line_item_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = lms.get_line_item(&course_id, &line_item_id, &headers);
    lms.answer(result)
}

/// `PUT …/line_items/{id}`: replaces a line item's fields (§3.2.8).
pub(super) async fn update_line_item(
    State(lms): State<SimulatedLms>,
    Path((course_id, line_item_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = lms.write_line_item(&course_id, Some(&line_item_id), &headers, &body);
    lms.answer(result)
}

/// `DELETE …/line_items/{id}`.
pub(super) async fn delete_line_item(
    State(lms): State<SimulatedLms>,
    Path((course_id, line_item_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = lms.delete_line_item(&course_id, &line_item_id, &headers);
    lms.answer(result)
}

/// `POST …/line_items/{id}/scores` (§3.4).
pub(super) async fn post_score(
    State(lms): State<SimulatedLms>,
    Path((course_id, line_item_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lms.count(|s| s.score_posts += 1);
    // Injected faults stand for an overloaded platform, which answers before looking at
    // the request.
    if let Some(kind) = lms.faults().take_score_fault() {
        lms.count(|s| s.faults_injected += 1);
        return fault_response(kind);
    }
    let result = lms.accept_score(&course_id, &line_item_id, &headers, &body);
    lms.answer(result)
}

/// `GET …/line_items/{id}/results` (§3.5).
pub(super) async fn results(
    State(lms): State<SimulatedLms>,
    Path((course_id, line_item_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let result = lms.results(&course_id, &line_item_id, query.as_deref(), &headers);
    lms.answer(result)
}

impl SimulatedLms {
    fn check_course(&self, course_id: &str) -> Result<(), Refusal> {
        if course_id == self.inner.course.id {
            Ok(())
        } else {
            Err(not_found(RejectReason::UnknownCourse, "course"))
        }
    }

    fn find_line_item(&self, line_item_id: &str) -> Result<LineItem, Refusal> {
        line_item_id
            .parse::<u64>()
            .ok()
            .and_then(|id| self.state().line_items.get(&id).cloned())
            .ok_or_else(|| not_found(RejectReason::UnknownLineItem, "line item"))
    }

    /// The wire form of a line item (§3.2.2).
    fn line_item_json(&self, li: &LineItem) -> Value {
        let mut v = json!({
            "id": self.line_item_url(&li.id.to_string()).as_str(),
            "scoreMaximum": li.score_maximum,
            "label": li.label,
        });
        let optional = [
            ("resourceLinkId", &li.resource_link_id),
            ("resourceId", &li.resource_id),
            ("tag", &li.tag),
            ("startDateTime", &li.start_date_time),
            ("endDateTime", &li.end_date_time),
        ];
        if let Some(obj) = v.as_object_mut() {
            for (name, value) in optional {
                if let Some(value) = value {
                    obj.insert(name.to_owned(), Value::String(value.clone()));
                }
            }
        }
        v
    }

    fn list_line_items(
        &self,
        course_id: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Response, Refusal> {
        self.authorize(headers, &[SCOPE_LINEITEM, SCOPE_LINEITEM_READONLY])?;
        self.check_course(course_id)?;
        let p = Params::from_query(query);
        // Pages as big as NRPS pages unless the tool asks for another size.
        let paging = Paging::from_params(&p, self.inner.config.page_size, usize::MAX)?;
        let matching: Vec<LineItem> = self
            .state()
            .line_items
            .values()
            .filter(|li| {
                let filter = |name: &str, value: &Option<String>| {
                    p.get(name)
                        .is_none_or(|wanted| value.as_deref() == Some(wanted))
                };
                filter("resource_link_id", &li.resource_link_id)
                    && filter("resource_id", &li.resource_id)
                    && filter("tag", &li.tag)
            })
            .cloned()
            .collect();
        let (page, more) = paging.slice(&matching);
        let body = Value::Array(page.iter().map(|li| self.line_item_json(li)).collect());
        let mut response = json_as(StatusCode::OK, MEDIA_TYPE_LINE_ITEMS, &body);
        if more {
            let mut url = self.line_items_url();
            url.set_query(query);
            if let Ok(link) = next_link(&url, paging).parse() {
                response.headers_mut().insert(header::LINK, link);
            }
        }
        Ok(response)
    }

    fn get_line_item(
        &self,
        course_id: &str,
        line_item_id: &str,
        headers: &HeaderMap,
    ) -> Result<Response, Refusal> {
        self.authorize(headers, &[SCOPE_LINEITEM, SCOPE_LINEITEM_READONLY])?;
        self.check_course(course_id)?;
        let li = self.find_line_item(line_item_id)?;
        Ok(json_as(
            StatusCode::OK,
            MEDIA_TYPE_LINE_ITEM,
            &self.line_item_json(&li),
        ))
    }

    /// Creates (`existing` is `None`) or replaces a line item.
    fn write_line_item(
        &self,
        course_id: &str,
        existing: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Response, Refusal> {
        if media_type(headers).as_deref() != Some(MEDIA_TYPE_LINE_ITEM) {
            return Err(unsupported_media_type(MEDIA_TYPE_LINE_ITEM));
        }
        self.authorize(headers, &[SCOPE_LINEITEM])?;
        self.check_course(course_id)?;
        let current = existing.map(|id| self.find_line_item(id)).transpose()?;
        let body: LineItemBody = parse_json(body)?;
        let invalid = |description: &str| bad_request(RejectReason::InvalidLineItem, description);
        let label = body
            .label
            .filter(|l| !l.trim().is_empty())
            .ok_or_else(|| invalid("label is required"))?;
        // §3.2.7: scoreMaximum is a number greater than 0.
        let score_maximum = body
            .score_maximum
            .filter(|m| m.is_finite() && *m > 0.0)
            .ok_or_else(|| invalid("scoreMaximum must be a number greater than 0"))?;
        if let Some(link) = &body.resource_link_id
            && self.resource(link).is_none()
        {
            return Err(invalid(
                "resourceLinkId is not a resource link of this course",
            ));
        }
        for date in [&body.start_date_time, &body.end_date_time]
            .into_iter()
            .flatten()
        {
            if !is_timestamp(date) {
                return Err(invalid(
                    "startDateTime and endDateTime must be ISO 8601 date-times",
                ));
            }
        }
        let mut state = self.state();
        let id = match &current {
            Some(li) => li.id,
            None => {
                let id = state.next_line_item;
                state.next_line_item += 1;
                id
            }
        };
        let li = LineItem {
            id,
            label,
            score_maximum,
            resource_link_id: body.resource_link_id,
            resource_id: body.resource_id,
            tag: body.tag,
            start_date_time: body.start_date_time,
            end_date_time: body.end_date_time,
        };
        state.line_items.insert(id, li.clone());
        drop(state);
        let (status, location) = match current {
            Some(_) => (StatusCode::OK, None),
            None => (
                StatusCode::CREATED,
                Some(self.line_item_url(&id.to_string())),
            ),
        };
        let mut response = json_as(status, MEDIA_TYPE_LINE_ITEM, &self.line_item_json(&li));
        if let Some(value) = location.and_then(|l| l.as_str().parse().ok()) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        Ok(response)
    }

    fn delete_line_item(
        &self,
        course_id: &str,
        line_item_id: &str,
        headers: &HeaderMap,
    ) -> Result<Response, Refusal> {
        self.authorize(headers, &[SCOPE_LINEITEM])?;
        self.check_course(course_id)?;
        let li = self.find_line_item(line_item_id)?;
        self.state().line_items.remove(&li.id);
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    fn accept_score(
        &self,
        course_id: &str,
        line_item_id: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Response, Refusal> {
        // §3.4.1: the score media type, exactly; Moodle compares the whole header value.
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        if !content_type.is_some_and(|ct| ct.eq_ignore_ascii_case(MEDIA_TYPE_SCORE)) {
            return Err(unsupported_media_type(MEDIA_TYPE_SCORE));
        }
        self.authorize(headers, &[SCOPE_SCORE])?;
        self.check_course(course_id)?;
        let li = self.find_line_item(line_item_id)?;
        let score: ScoreBody = parse_json(body)?;
        let Some(user_id) = score.user_id.filter(|u| !u.is_empty()) else {
            return Err(bad_request(
                RejectReason::UserIdMissing,
                "userId is required",
            ));
        };
        if !self.user(&user_id).is_some_and(|u| u.is_learner()) {
            return Err(Refusal::with_response(
                RejectReason::UserNotLearner,
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    axum::Json(json!({"errors": {
                        "type": "unprocessable_entity",
                        "message": "User not found in course or is not a student",
                    }})),
                )
                    .into_response(),
            ));
        }
        // §3.4.2: an ISO 8601 timestamp with time zone, by which the platform orders scores.
        let Some((timestamp, at)) = score
            .timestamp
            .and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok().map(|at| (t, at)))
        else {
            return Err(bad_request(
                RejectReason::InvalidTimestamp,
                "timestamp must be an ISO 8601 date-time with a time zone",
            ));
        };
        let progress = |value: Option<String>, allowed: &[&str]| {
            value.filter(|v| allowed.contains(&v.as_str()))
        };
        let (Some(activity_progress), Some(grading_progress)) = (
            progress(score.activity_progress, ACTIVITY_PROGRESS),
            progress(score.grading_progress, GRADING_PROGRESS),
        ) else {
            return Err(bad_request(
                RejectReason::InvalidProgress,
                "activityProgress and gradingProgress must be AGS values",
            ));
        };
        // §3.4.4-3.4.5: scoreGiven needs scoreMaximum; neither is negative, the maximum is
        // not zero.
        let invalid_values = |d: &str| bad_request(RejectReason::InvalidScoreValues, d);
        if score.score_given.is_some() && score.score_maximum.is_none() {
            return Err(invalid_values("scoreGiven requires scoreMaximum"));
        }
        if score.score_given.is_some_and(|g| !g.is_finite() || g < 0.0) {
            return Err(invalid_values("scoreGiven must be a number of at least 0"));
        }
        if score
            .score_maximum
            .is_some_and(|m| !m.is_finite() || m <= 0.0)
        {
            return Err(invalid_values(
                "scoreMaximum must be a number greater than 0",
            ));
        }
        let mut state = self.state();
        let key = (li.id, user_id.clone());
        let current = state.current.get(&key).and_then(|i| state.scores.get(*i));
        if super::moodle::refuses_as_stale(self.inner.config.behaviour, current, at) {
            return Err(Refusal::json(
                RejectReason::StaleTimestamp,
                StatusCode::CONFLICT,
                "conflict",
                "a score with the same or a later timestamp was already accepted",
            ));
        }
        state.scores.push(RecordedScore {
            line_item_id: li.id.to_string(),
            user_id,
            score_given: score.score_given,
            score_maximum: score.score_maximum,
            comment: score.comment,
            timestamp,
            activity_progress,
            grading_progress,
            received_at: now(),
        });
        let index = state.scores.len() - 1;
        state.current.insert(key, index);
        drop(state);
        self.count(|s| s.scores_accepted += 1);
        Ok((StatusCode::OK, axum::Json(json!({}))).into_response())
    }

    fn results(
        &self,
        course_id: &str,
        line_item_id: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Response, Refusal> {
        self.authorize(headers, &[SCOPE_RESULT_READONLY])?;
        self.check_course(course_id)?;
        let li = self.find_line_item(line_item_id)?;
        let p = Params::from_query(query);
        // Pages as big as NRPS pages unless the tool asks for another size.
        let paging = Paging::from_params(&p, self.inner.config.page_size, usize::MAX)?;
        let li_url = self.line_item_url(&li.id.to_string());
        let results: Vec<Value> = self
            .gradebook()
            .into_iter()
            .filter(|g| g.line_item_id == li.id.to_string())
            .filter(|g| p.get("user_id").is_none_or(|u| u == g.user_id))
            .map(|g| {
                let mut id = li_url.clone();
                if let Ok(mut segments) = id.path_segments_mut() {
                    segments.push("results").push(&g.user_id);
                }
                let mut result = json!({
                    "id": id.as_str(),
                    "scoreOf": li_url.as_str(),
                    "userId": g.user_id,
                    "resultMaximum": li.score_maximum,
                });
                if let Some(obj) = result.as_object_mut() {
                    if let Some(score) = g.result_score {
                        obj.insert("resultScore".to_owned(), json!(score));
                    }
                    if let Some(comment) = g.comment {
                        obj.insert("comment".to_owned(), json!(comment));
                    }
                }
                result
            })
            .collect();
        let (page, more) = paging.slice(&results);
        let mut response = json_as(
            StatusCode::OK,
            MEDIA_TYPE_RESULTS,
            &Value::Array(page.to_vec()),
        );
        if more {
            let mut url = li_url.clone();
            if let Ok(mut segments) = url.path_segments_mut() {
                segments.push("results");
            }
            url.set_query(query);
            if let Ok(link) = next_link(&url, paging).parse() {
                response.headers_mut().insert(header::LINK, link);
            }
        }
        Ok(response)
    }
}
