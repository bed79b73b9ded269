//! Names and Role Provisioning Services 2.0: the course membership container (NRPS §2.2),
//! paged with `limit` and an RFC 8288 `Link: <…>; rel="next"` header (§2.4).

use super::SimulatedLms;
use super::respond::{Paging, Params, Refusal, json_as, next_link};
use super::stats::RejectReason;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use lti::nrps::{MEDIA_TYPE_MEMBERSHIPS, SCOPE_MEMBERSHIP_READONLY};
use serde_json::{Value, json};

/// `GET …/names_and_roles?limit=&page=`.
pub(super) async fn memberships(
    State(lms): State<SimulatedLms>,
    Path(course_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    lms.count(|s| s.nrps_requests += 1);
    let result = lms.memberships(&course_id, query.as_deref(), &headers);
    lms.answer(result)
}

/// Whether an `Accept` header admits the membership container media type.
fn accepts_memberships(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|range| range.split(';').next().unwrap_or_default().trim())
        .any(|range| range.eq_ignore_ascii_case(MEDIA_TYPE_MEMBERSHIPS))
}

impl SimulatedLms {
    fn memberships(
        &self,
        course_id: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Response, Refusal> {
        self.authorize(headers, &[SCOPE_MEMBERSHIP_READONLY])?;
        // NRPS §2.2: the tool asks for the membership container media type by name.
        if !accepts_memberships(headers) {
            return Err(Refusal::json(
                RejectReason::NotAcceptable,
                StatusCode::NOT_ACCEPTABLE,
                "not_acceptable",
                format!("Accept must include {MEDIA_TYPE_MEMBERSHIPS}"),
            ));
        }
        let course = &self.inner.course;
        if course_id != course.id {
            return Err(Refusal::json(
                RejectReason::UnknownCourse,
                StatusCode::NOT_FOUND,
                "not_found",
                "course not found",
            ));
        }
        let page_size = self.inner.config.page_size;
        let paging = Paging::from_params(&Params::from_query(query), page_size, page_size)?;
        let members: Vec<Value> = self
            .inner
            .users
            .iter()
            .map(|u| {
                json!({
                    "user_id": u.id,
                    "status": "Active",
                    "name": u.name,
                    "given_name": u.given_name,
                    "family_name": u.family_name,
                    "email": u.email,
                    "roles": [lti::roles::context_role_uri(&u.role)],
                })
            })
            .collect();
        let (page, more) = paging.slice(&members);
        let mut url = self.memberships_url();
        url.set_query(query);
        let body = json!({
            "id": url.as_str(),
            "context": {"id": course.id, "label": course.label, "title": course.title},
            "members": page,
        });
        let mut response = json_as(StatusCode::OK, MEDIA_TYPE_MEMBERSHIPS, &body);
        if more && let Ok(link) = next_link(&url, paging).parse() {
            response.headers_mut().insert(header::LINK, link);
        }
        Ok(response)
    }
}
