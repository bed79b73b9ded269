//! Names and Role Provisioning Services 2.0: the course membership container (NRPS §2.2),
//! filtered by `role` and `rlid` (§2.3, §3), paged with `limit` and an RFC 8288
//! `Link: <…>; rel="next"` header (§2.4), and, when switched on, a `rel="differences"` link
//! whose page lists only the members changed since it was issued, removals as
//! `status: Deleted` (§2.4.1).
//!
//! The roster starts as the seed people, all active. Tests change it while the LMS runs:
//! members are added, made inactive or removed, and the page size can be made as small as a
//! test needs to see paging (Canvas pages at 50).

use super::SimulatedLms;
use super::data::SimUser;
use super::respond::{Paging, Params, Refusal, json_as, next_link};
use super::stats::RejectReason;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use lti::nrps::{
    CLAIM_CUSTOM, CLAIM_MESSAGE_TYPE, MEDIA_TYPE_MEMBERSHIPS, MemberStatus,
    SCOPE_MEMBERSHIP_READONLY,
};
use lti::roles::normalise;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The roster's changes since the LMS started, and how NRPS is served.
#[derive(Debug, Default)]
pub(super) struct Roster {
    /// People added while the LMS runs, in the order they were added.
    added: Vec<SimUser>,
    /// The status of each member whose status changed, and the change's sequence number.
    changed: HashMap<String, (MemberStatus, u64)>,
    /// Numbers changes; a differences link carries the number it was issued at.
    seq: u64,
    /// Replaces the configured page size when set.
    page_size: Option<usize>,
    /// Whether responses carry a `rel="differences"` link.
    differences: bool,
    /// Query strings of the membership requests received, in order.
    queries: Vec<String>,
}

/// `GET …/names_and_roles?role=&rlid=&limit=&page=&since=`.
pub(super) async fn memberships(
    State(lms): State<SimulatedLms>,
    Path(course_id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    lms.count(|s| s.nrps_requests += 1);
    lms.state()
        .roster
        .queries
        .push(query.clone().unwrap_or_default());
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

/// One member as a snapshot of the roster holds them.
struct Entry {
    user: SimUser,
    status: MemberStatus,
    /// When the member last changed; 0 for the seed roster.
    changed_at: u64,
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
        let params = Params::from_query(query);
        if let Some(name) = params.repeated(&["role", "rlid", "limit", "page", "since"]) {
            return Err(Refusal::json(
                RejectReason::DuplicateParameter,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("{name} may be given once"),
            ));
        }
        // NRPS §3: the resource link must be one of this course's.
        let resource = match params.get("rlid") {
            None => None,
            Some(rlid) => Some(self.resource(rlid).cloned().ok_or_else(|| {
                Refusal::json(
                    RejectReason::UnknownResource,
                    StatusCode::FORBIDDEN,
                    "access_denied",
                    "the resource link is not in this course",
                )
            })?),
        };
        let since = match params.get("since") {
            None => None,
            Some(v) => Some(v.parse::<u64>().map_err(|_| {
                Refusal::json(
                    RejectReason::InvalidPaging,
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "since must be a number this platform issued",
                )
            })?),
        };
        let (entries, seq, page_size, differences) = self.roster_snapshot();
        let paging = Paging::from_params(&params, page_size, page_size)?;
        let wanted_role = params.get("role").map(normalise);
        let members: Vec<Value> = entries
            .iter()
            // A full read lists who is in the course; a differences read lists who changed,
            // those who left included.
            .filter(|e| match since {
                None => e.status != MemberStatus::Deleted,
                Some(n) => e.changed_at > n,
            })
            .filter(|e| wanted_role.as_ref().is_none_or(|r| *r == e.user.role))
            .map(|e| {
                let mut m = json!({
                    "user_id": e.user.id,
                    "status": e.status.as_str(),
                    "roles": [lti::roles::context_role_uri(&e.user.role)],
                });
                if e.status != MemberStatus::Deleted {
                    m["name"] = json!(e.user.name);
                    m["given_name"] = json!(e.user.given_name);
                    m["family_name"] = json!(e.user.family_name);
                    m["email"] = json!(e.user.email);
                }
                if let Some(r) = &resource {
                    // NRPS §3.2: the claims this member would get launching that link.
                    m["message"] = json!([{
                        CLAIM_MESSAGE_TYPE: "LtiResourceLinkRequest",
                        CLAIM_CUSTOM: {"activity_title": r.title, "user_label": e.user.id},
                    }]);
                }
                m
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
            response.headers_mut().append(header::LINK, link);
        }
        if differences {
            let mut link = url.clone();
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| !matches!(k.as_ref(), "page" | "limit" | "since"))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            link.set_query(None);
            link.query_pairs_mut()
                .extend_pairs(kept)
                .append_pair("since", &seq.to_string());
            if let Ok(v) = HeaderValue::from_str(&format!("<{link}>; rel=\"differences\"")) {
                response.headers_mut().append(header::LINK, v);
            }
        }
        Ok(response)
    }

    /// Every member with their status, the current change number, the page size and
    /// whether differences links are offered, read under one lock.
    fn roster_snapshot(&self) -> (Vec<Entry>, u64, usize, bool) {
        let state = self.state();
        let r = &state.roster;
        let entries = self
            .inner
            .users
            .iter()
            .chain(r.added.iter())
            .map(|u| {
                let (status, changed_at) = r
                    .changed
                    .get(&u.id)
                    .copied()
                    .unwrap_or((MemberStatus::Active, 0));
                Entry {
                    user: u.clone(),
                    status,
                    changed_at,
                }
            })
            .collect();
        let page_size = r.page_size.unwrap_or(self.inner.config.page_size).max(1);
        (entries, r.seq, page_size, r.differences)
    }

    /// Changes a member's status in the course: `Inactive` keeps them listed as inactive,
    /// `Deleted` removes them (a differences page then reports them `Deleted`). False when
    /// the user is not in the roster.
    pub fn set_member_status(&self, user_id: &str, status: MemberStatus) -> bool {
        let known = self.user(user_id).is_some();
        let mut state = self.state();
        let r = &mut state.roster;
        if !known && !r.added.iter().any(|u| u.id == user_id) {
            return false;
        }
        r.seq += 1;
        let seq = r.seq;
        r.changed.insert(user_id.to_owned(), (status, seq));
        true
    }

    /// Removes a member from the course, as an instructor unenrolling them would.
    pub fn remove_member(&self, user_id: &str) -> bool {
        self.set_member_status(user_id, MemberStatus::Deleted)
    }

    /// Enrols a person in the course (or re-enrols them, with these details). They appear in
    /// NRPS; launching as them is not offered.
    pub fn add_member(&self, user: SimUser) {
        let mut state = self.state();
        let r = &mut state.roster;
        r.seq += 1;
        let seq = r.seq;
        r.changed
            .insert(user.id.clone(), (MemberStatus::Active, seq));
        match r.added.iter_mut().find(|u| u.id == user.id) {
            Some(existing) => *existing = user,
            None if self.inner.users.iter().any(|u| u.id == user.id) => {}
            None => r.added.push(user),
        }
    }

    /// The current roster with each member's status, removed members included.
    pub fn roster(&self) -> Vec<(SimUser, MemberStatus)> {
        self.roster_snapshot()
            .0
            .into_iter()
            .map(|e| (e.user, e.status))
            .collect()
    }

    /// Serves NRPS pages of at most `size` members from now on, whatever `limit` asks.
    pub fn set_nrps_page_size(&self, size: usize) {
        self.state().roster.page_size = Some(size.max(1));
    }

    /// Offers (or stops offering) a `rel="differences"` link with every membership page.
    pub fn offer_nrps_differences(&self, on: bool) {
        self.state().roster.differences = on;
    }

    /// The query strings of the membership requests received, oldest first.
    pub fn nrps_queries(&self) -> Vec<String> {
        self.state().roster.queries.clone()
    }
}
