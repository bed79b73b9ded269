//! Names and Role Provisioning Services 2.0 (NRPS): the membership container (§2.2), its
//! query parameters `role`, `rlid` and `limit` (§2.3, §3), paging by RFC 8288 `Link`
//! headers with `rel="next"` (§2.4), and the `rel="differences"` link whose page holds only
//! the changes since it was issued (§2.4.1), removals as `status: Deleted`.
//!
//! [`NrpsClient`] reads pages with an access token from the shared [`TokenClient`], asking
//! for a fresh token once when the platform answers 401. [`PageWalk`] guards a walk over
//! `next` links against loops, absurd lengths and links to another origin (which would hand
//! the platform's bearer token to a third party).

use crate::http_error::{ServiceError, ServiceErrorKind};
use crate::keys::ToolKey;
use crate::roles::{LtiRole, normalise};
use crate::token::{AccessToken, TokenClient, TokenEndpoint};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::HashSet;
use std::num::NonZeroU32;
use std::time::Duration;
use url::Url;

pub const SCOPE_MEMBERSHIP_READONLY: &str =
    "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly";
pub const MEDIA_TYPE_MEMBERSHIPS: &str = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json";

/// The claim naming a message's type inside a member's `message` section (LTI Core §5.3.1).
pub const CLAIM_MESSAGE_TYPE: &str = "https://purl.imsglobal.org/spec/lti/claim/message_type";
/// The custom-parameters claim inside a member's `message` section (LTI Core §5.4.1).
pub const CLAIM_CUSTOM: &str = "https://purl.imsglobal.org/spec/lti/claim/custom";

/// More pages than this in one walk is a platform bug, not a course.
pub const DEFAULT_MAX_PAGES: usize = 10_000;

/// Largest membership page body read. Canvas sends 50 members a page and Moodle a few
/// hundred; a body this large is an error, not a roster.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// A member's status in the context (NRPS §2.2). Absent means `Active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum MemberStatus {
    #[default]
    Active,
    Inactive,
    /// Only in a differences page: the member left the context since the link was issued.
    Deleted,
}

impl MemberStatus {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Inactive => "Inactive",
            Self::Deleted => "Deleted",
        }
    }
}

impl<'de> Deserialize<'de> for MemberStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        Ok(match s.as_deref().map(str::trim) {
            None | Some("") => Self::Active,
            Some(s) if s.eq_ignore_ascii_case("active") => Self::Active,
            Some(s) if s.eq_ignore_ascii_case("deleted") => Self::Deleted,
            // Inactive, and any value the spec does not define: such a member is neither
            // counted as taking part nor removed on a guess.
            Some(_) => Self::Inactive,
        })
    }
}

/// The message section of a member, sent when the tool asked with `rlid` (NRPS §3.2): the
/// claims this member would receive when launching that resource link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberMessage {
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti/claim/message_type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub message_type: Option<String>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti/claim/custom",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub custom: Option<serde_json::Map<String, serde_json::Value>>,
    /// Every other claim, verbatim.
    #[serde(flatten)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// One member as the platform sends it (NRPS §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub user_id: String,
    #[serde(default)]
    pub status: MemberStatus,
    /// Role URIs as sent: full URIs, sub-role URIs or short forms (see [`crate::roles`]).
    #[serde(default, deserialize_with = "strings_or_null")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// A picture URL; a value that is not an absolute URL is dropped rather than failing
    /// the whole page.
    #[serde(
        default,
        deserialize_with = "lenient_url",
        skip_serializing_if = "Option::is_none"
    )]
    pub picture: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lis_person_sourcedid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub message: Vec<MemberMessage>,
    /// Fields this crate does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Member {
    /// The roles mapped to lmsbridge's vocabulary, without duplicates, in the order sent.
    pub fn normalised_roles(&self) -> Vec<LtiRole> {
        let mut out = Vec::new();
        for role in self.roles.iter().map(|r| normalise(r)) {
            if !out.contains(&role) {
                out.push(role);
            }
        }
        out
    }
}

fn strings_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

fn lenient_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Url>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(v.as_ref()
        .and_then(serde_json::Value::as_str)
        .and_then(|s| Url::parse(s).ok()))
}

/// The context a membership container describes (NRPS §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipContext {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The membership container, one page of it (NRPS §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipContainer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<MembershipContext>,
    #[serde(default, deserialize_with = "members_or_null")]
    pub members: Vec<Member>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn members_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Member>, D::Error> {
    Ok(Option::<Vec<Member>>::deserialize(d)?.unwrap_or_default())
}

/// One page of members and the links the platform gave with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipPage {
    /// The URL this page was read from.
    pub url: Url,
    pub context: Option<MembershipContext>,
    pub members: Vec<Member>,
    pub next: Option<Url>,
    /// Where to ask, later, for only what changed since this page (NRPS §2.4.1).
    pub differences: Option<Url>,
}

/// What a tool may ask the membership service for (NRPS §2.3, §3.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipQuery {
    /// Only members with this role: a full role URI or a short context role name.
    pub role: Option<String>,
    /// The resource link whose members, and their `message` section, are wanted.
    pub rlid: Option<String>,
    /// The page size the tool would like; platforms may send fewer.
    pub limit: Option<NonZeroU32>,
}

impl MembershipQuery {
    /// The first page's URL: the platform's `context_memberships_url` with these parameters
    /// added to whatever query it already carries (Moodle puts `?type_id=` there). A
    /// parameter of the same name already in the URL is replaced, never repeated.
    pub fn url(&self, memberships_url: &Url) -> Url {
        let ours: Vec<(&str, String)> = [
            ("role", self.role.clone()),
            ("rlid", self.rlid.clone()),
            ("limit", self.limit.map(|l| l.to_string())),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        if ours.is_empty() {
            return memberships_url.clone();
        }
        let kept: Vec<(String, String)> = memberships_url
            .query_pairs()
            .filter(|(k, _)| !ours.iter().any(|(name, _)| k == name))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut url = memberships_url.clone();
        url.set_query(None);
        url.query_pairs_mut()
            .extend_pairs(kept)
            .extend_pairs(ours.iter().map(|(k, v)| (*k, v.as_str())));
        url
    }
}

/// Why reading a roster failed. Each variant is one thing an administrator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NrpsError {
    /// 400: the platform found the request malformed (a `role` or `rlid` it does not know).
    #[error("the platform refused the roster request as malformed (HTTP 400): {detail}")]
    BadRequest { detail: String },
    /// 401 even with a freshly issued access token.
    #[error("the platform refused a freshly issued access token (HTTP 401): {detail}")]
    Unauthorized { detail: String },
    /// 403 (not a rate limit): the tool may not read this context's roster.
    #[error("the platform does not allow this tool to read the roster (HTTP 403): {detail}")]
    Forbidden { detail: String },
    /// 404: the membership URL is unknown (course deleted, tool removed).
    #[error("the platform does not know this roster (HTTP 404): {detail}")]
    NotFound { detail: String },
    #[error("the platform answered with a conflict (HTTP 409): {detail}")]
    Conflict { detail: String },
    #[error("the platform could not process the roster request (HTTP 422): {detail}")]
    Unprocessable { detail: String },
    /// Any other 4xx.
    #[error("the platform refused the roster request (HTTP {status}): {detail}")]
    Rejected { status: u16, detail: String },
    /// 429, Canvas's `403 Rate Limit Exceeded`, 503 with `Retry-After`.
    #[error("the platform is rate limiting us (HTTP {status}): {detail}")]
    RateLimited {
        status: u16,
        retry_after: Option<Duration>,
        detail: String,
    },
    /// 5xx, 408.
    #[error("the platform failed (HTTP {status}): {detail}")]
    Server {
        status: u16,
        retry_after: Option<Duration>,
        detail: String,
    },
    /// No HTTP answer: connection refused, timeout, reset.
    #[error("the platform could not be reached: {detail}")]
    Transport { detail: String },
    /// The token endpoint refused our client assertion (unknown client, key not registered).
    #[error("the platform's token endpoint refused our client credentials: {detail}")]
    TokenRefused { detail: String },
    /// The token endpoint granted no roster scope: the registration lacks NRPS.
    #[error(
        "the platform did not grant the Names and Roles scope; enable it in the tool's registration"
    )]
    ScopeNotGranted { detail: String },
    #[error("no tool key is available to sign the token request")]
    NoSigningKey,
    /// The answer was not a membership container.
    #[error("the platform's answer is not a membership container: {detail}")]
    InvalidContainer { detail: String },
    /// A `next` link pointed at a page already read.
    #[error("the platform's next-page links loop back to a page already read")]
    LinkLoop { url: Url },
    /// A `next` or `differences` link left the platform's origin.
    #[error("the platform linked to a page on another host; it was not followed")]
    ForeignLink { url: Url },
    #[error("the roster has more than {limit} pages; reading stopped")]
    TooManyPages { limit: usize },
}

impl NrpsError {
    /// A stable code for storage, metrics and the product API.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "platform_bad_request",
            Self::Unauthorized { .. } => "token_rejected_by_service",
            Self::Forbidden { .. } => "platform_forbidden",
            Self::NotFound { .. } => "roster_not_found",
            Self::Conflict { .. } => "platform_conflict",
            Self::Unprocessable { .. } => "platform_unprocessable",
            Self::Rejected { .. } => "platform_rejected",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "platform_5xx",
            Self::Transport { .. } => "platform_unreachable",
            Self::TokenRefused { .. } => "token_refused",
            Self::ScopeNotGranted { .. } => "scope_not_granted",
            Self::NoSigningKey => "no_signing_key",
            Self::InvalidContainer { .. } => "invalid_membership_container",
            Self::LinkLoop { .. } => "next_link_loop",
            Self::ForeignLink { .. } => "foreign_link",
            Self::TooManyPages { .. } => "too_many_pages",
        }
    }

    /// True when asking again later may succeed.
    pub const fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Server { .. } | Self::Transport { .. }
        )
    }

    /// The wait the platform asked for, if it asked.
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Server { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Maps a classified answer of the membership service.
    pub fn from_service(e: ServiceError) -> Self {
        let detail = e.detail;
        match (e.kind, e.status) {
            (_, None) => Self::Transport { detail },
            (ServiceErrorKind::RateLimited, Some(status)) => Self::RateLimited {
                status,
                retry_after: e.retry_after,
                detail,
            },
            (ServiceErrorKind::Transient, Some(status)) => Self::Server {
                status,
                retry_after: e.retry_after,
                detail,
            },
            (_, Some(400)) => Self::BadRequest { detail },
            (_, Some(401)) => Self::Unauthorized { detail },
            (_, Some(403)) => Self::Forbidden { detail },
            (_, Some(404)) => Self::NotFound { detail },
            (_, Some(409)) => Self::Conflict { detail },
            (_, Some(422)) => Self::Unprocessable { detail },
            (_, Some(status)) => Self::Rejected { status, detail },
        }
    }

    /// Maps a failed token request.
    pub fn from_token(e: ServiceError) -> Self {
        match e.kind {
            ServiceErrorKind::InvalidScope => Self::ScopeNotGranted { detail: e.detail },
            ServiceErrorKind::RateLimited | ServiceErrorKind::Transient => Self::from_service(e),
            ServiceErrorKind::Rejected | ServiceErrorKind::Unauthorized => Self::TokenRefused {
                detail: e.to_string(),
            },
        }
    }
}

/// Guards one walk over `next` links: each URL once, at most `max_pages`, and never off the
/// origin the walk started on.
#[derive(Debug, Clone)]
pub struct PageWalk {
    origin: url::Origin,
    seen: HashSet<String>,
    pages: usize,
    max_pages: usize,
}

impl PageWalk {
    /// A walk starting at `first`.
    pub fn new(first: &Url, max_pages: usize) -> Self {
        Self::resume(first, 0, max_pages)
    }

    /// A walk that already read `pages_done` pages (a sync resumed after a restart), so the
    /// page cap counts them too.
    pub fn resume(first: &Url, pages_done: usize, max_pages: usize) -> Self {
        Self {
            origin: first.origin(),
            seen: HashSet::new(),
            pages: pages_done,
            max_pages,
        }
    }

    /// Checks that `url` may be read next and counts it.
    pub fn visit(&mut self, url: &Url) -> Result<(), NrpsError> {
        self.check_origin(url)?;
        if self.pages >= self.max_pages {
            return Err(NrpsError::TooManyPages {
                limit: self.max_pages,
            });
        }
        let mut key = url.clone();
        key.set_fragment(None);
        if !self.seen.insert(key.to_string()) {
            return Err(NrpsError::LinkLoop { url: key });
        }
        self.pages += 1;
        Ok(())
    }

    /// Refuses a link (`next` or `differences`) to another origin.
    pub fn check_origin(&self, url: &Url) -> Result<(), NrpsError> {
        if url.origin() == self.origin {
            Ok(())
        } else {
            Err(NrpsError::ForeignLink { url: url.clone() })
        }
    }

    /// Pages counted so far.
    pub const fn pages(&self) -> usize {
        self.pages
    }
}

/// Every member of a roster, read to the last page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub context: Option<MembershipContext>,
    pub members: Vec<Member>,
    /// The last `differences` link seen: where to ask next time for changes only.
    pub differences: Option<Url>,
    pub pages: usize,
}

/// Reads membership pages with tokens from the shared cache.
#[derive(Debug, Clone)]
pub struct NrpsClient {
    http: reqwest::Client,
    tokens: TokenClient,
}

impl NrpsClient {
    pub fn new(http: reqwest::Client, tokens: TokenClient) -> Self {
        Self { http, tokens }
    }

    /// The token cache (for metrics and tests).
    pub fn tokens(&self) -> &TokenClient {
        &self.tokens
    }

    /// Reads one page. On a 401 the token is dropped and the page asked for once more with a
    /// fresh one; a second 401 is [`NrpsError::Unauthorized`].
    pub async fn page(
        &self,
        endpoint: &TokenEndpoint,
        key: &ToolKey,
        url: &Url,
    ) -> Result<MembershipPage, NrpsError> {
        let scopes = [SCOPE_MEMBERSHIP_READONLY];
        let token = self
            .tokens
            .token(endpoint, &scopes, key)
            .await
            .map_err(NrpsError::from_token)?;
        match fetch(&self.http, &token, url).await {
            Err(Fetch::Service(e)) if e.kind == ServiceErrorKind::Unauthorized => {
                self.tokens.invalidate(endpoint, &scopes, &token);
                let fresh = self
                    .tokens
                    .token(endpoint, &scopes, key)
                    .await
                    .map_err(NrpsError::from_token)?;
                fetch(&self.http, &fresh, url)
                    .await
                    .map_err(Fetch::into_nrps)
            }
            other => other.map_err(Fetch::into_nrps),
        }
    }

    /// Reads every page from `first` (a URL built with [`MembershipQuery::url`], or a
    /// `differences` link) to the last, following `rel="next"`.
    pub async fn all(
        &self,
        endpoint: &TokenEndpoint,
        key: &ToolKey,
        first: &Url,
        max_pages: usize,
    ) -> Result<Membership, NrpsError> {
        let mut walk = PageWalk::new(first, max_pages);
        let mut next = Some(first.clone());
        let mut out = Membership {
            context: None,
            members: Vec::new(),
            differences: None,
            pages: 0,
        };
        while let Some(url) = next.take() {
            walk.visit(&url)?;
            let page = self.page(endpoint, key, &url).await?;
            if let Some(d) = page.differences {
                walk.check_origin(&d)?;
                out.differences = Some(d);
            }
            out.context = page.context.or(out.context);
            out.members.extend(page.members);
            next = page.next;
        }
        out.pages = walk.pages();
        Ok(out)
    }
}

enum Fetch {
    Service(ServiceError),
    Invalid(String),
}

impl Fetch {
    fn into_nrps(self) -> NrpsError {
        match self {
            Self::Service(e) => NrpsError::from_service(e),
            Self::Invalid(detail) => NrpsError::InvalidContainer { detail },
        }
    }
}

async fn fetch(
    http: &reqwest::Client,
    token: &AccessToken,
    url: &Url,
) -> Result<MembershipPage, Fetch> {
    let mut resp = http
        .get(url.clone())
        .bearer_auth(token.secret())
        .header(http::header::ACCEPT, MEDIA_TYPE_MEMBERSHIPS)
        .send()
        .await
        .map_err(|e| Fetch::Service(ServiceError::transport(&e)))?;
    if !resp.status().is_success() {
        return Err(Fetch::Service(ServiceError::from_response(resp).await));
    }
    let links: Vec<(Url, String)> = resp
        .headers()
        .get_all(http::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| parse_link_header(v, url))
        .collect();
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(Fetch::Invalid("the page is larger than 32 MiB".into()));
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(Fetch::Invalid("the page is larger than 32 MiB".into()));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(Fetch::Service(ServiceError::transport(&e))),
        }
    }
    let container: MembershipContainer = serde_json::from_slice(&body).map_err(|e| {
        // Where, not what: serde's own message may quote the platform's data.
        let what = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "is not JSON",
            _ => "is JSON, but not a membership container",
        };
        Fetch::Invalid(format!(
            "the body {what} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let find = |rel: &str| links.iter().find(|(_, r)| r == rel).map(|(u, _)| u.clone());
    Ok(MembershipPage {
        url: url.clone(),
        context: container.context,
        members: container.members,
        next: find("next"),
        differences: find("differences"),
    })
}

/// Fetches one page of the membership container with a token the caller holds.
pub async fn fetch_page(
    http: &reqwest::Client,
    token: &AccessToken,
    url: &Url,
) -> Result<MembershipPage, ServiceError> {
    fetch(http, token, url).await.map_err(|e| match e {
        Fetch::Service(e) => e,
        Fetch::Invalid(detail) => ServiceError {
            kind: ServiceErrorKind::Rejected,
            status: None,
            retry_after: None,
            detail,
        },
    })
}

// Re-exported where NRPS callers have always found it.
pub use crate::link_header::parse_link_header;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_with_commas_in_urls_and_several_rels() {
        let base = Url::parse("https://lms.example/api/members?page=1").unwrap();
        let links = parse_link_header(
            r#"<https://lms.example/api/members?page=2&x=a,b>; rel="next", </api/members?since=9>; rel=differences"#,
            &base,
        );
        assert_eq!(links.len(), 2);
        assert_eq!(
            links[0].0.as_str(),
            "https://lms.example/api/members?page=2&x=a,b"
        );
        assert_eq!(links[0].1, "next");
        assert_eq!(
            links[1].0.as_str(),
            "https://lms.example/api/members?since=9"
        );
        assert_eq!(links[1].1, "differences");
    }

    #[test]
    fn query_parameters_join_an_existing_query_and_replace_their_namesakes() {
        let moodle = Url::parse(
            "https://moodle.example/mod/lti/services.php/CourseSection/2/bindings/3/memberships?type_id=3&limit=9",
        )
        .unwrap();
        let q = MembershipQuery {
            role: Some("http://purl.imsglobal.org/vocab/lis/v2/membership#Learner".into()),
            rlid: Some("rl 1&x".into()),
            limit: NonZeroU32::new(2),
        };
        let url = q.url(&moodle);
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("type_id".to_owned(), "3".to_owned()),
                (
                    "role".to_owned(),
                    "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner".to_owned()
                ),
                ("rlid".to_owned(), "rl 1&x".to_owned()),
                ("limit".to_owned(), "2".to_owned()),
            ]
        );
        assert_eq!(url.path(), moodle.path());
        // Nothing asked: the URL exactly as the platform gave it.
        assert_eq!(MembershipQuery::default().url(&moodle), moodle);
    }

    #[test]
    fn members_parse_with_unknown_fields_kept_and_odd_values_tolerated() {
        let page: MembershipContainer = serde_json::from_value(serde_json::json!({
            "id": "https://lms.example/memberships",
            "context": {"id": "c1", "title": "Biology", "x-vendor": 1},
            "members": [
                {"user_id": "u1", "roles": ["Instructor", "http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"],
                 "picture": "not a url", "lis_person_sourcedid": "sis-1", "https://vendor.example/claim": {"a": 1}},
                {"user_id": "u2", "status": "Deleted", "roles": null},
                {"user_id": "u3", "status": "Suspended", "picture": "https://lms.example/p.png",
                 "message": [{"https://purl.imsglobal.org/spec/lti/claim/message_type": "LtiResourceLinkRequest",
                              "https://purl.imsglobal.org/spec/lti/claim/custom": {"grade": "7"},
                              "https://purl.imsglobal.org/spec/lti-bo/claim/basicoutcome": {"x": 1}}]},
                {"user_id": "u4"}
            ],
            "vendor": true
        }))
        .unwrap();
        let m = &page.members;
        assert_eq!(m[0].status, MemberStatus::Active);
        assert_eq!(
            m[0].normalised_roles(),
            [LtiRole::Instructor, LtiRole::TeachingAssistant]
        );
        assert_eq!(m[0].picture, None);
        assert_eq!(m[0].lis_person_sourcedid.as_deref(), Some("sis-1"));
        assert_eq!(
            m[0].extra["https://vendor.example/claim"],
            serde_json::json!({"a": 1})
        );
        assert_eq!(m[1].status, MemberStatus::Deleted);
        assert!(m[1].roles.is_empty());
        assert_eq!(m[2].status, MemberStatus::Inactive);
        assert_eq!(
            m[2].picture.as_ref().map(Url::as_str),
            Some("https://lms.example/p.png")
        );
        let msg = &m[2].message[0];
        assert_eq!(msg.message_type.as_deref(), Some("LtiResourceLinkRequest"));
        assert_eq!(msg.custom.as_ref().unwrap()["grade"], "7");
        assert!(
            msg.claims
                .contains_key("https://purl.imsglobal.org/spec/lti-bo/claim/basicoutcome")
        );
        assert_eq!(m[3].status, MemberStatus::Active);
        assert_eq!(page.context.as_ref().unwrap().extra["x-vendor"], 1);
        assert_eq!(page.extra["vendor"], true);
        // Unknown fields survive a round trip.
        let again = serde_json::to_value(&m[0]).unwrap();
        assert_eq!(again["https://vendor.example/claim"]["a"], 1);
    }

    #[test]
    fn a_walk_refuses_loops_foreign_origins_and_too_many_pages() {
        let first = Url::parse("https://lms.example/m?page=1").unwrap();
        let mut walk = PageWalk::new(&first, 3);
        walk.visit(&first).unwrap();
        let second = Url::parse("https://lms.example/m?page=2").unwrap();
        walk.visit(&second).unwrap();
        assert!(matches!(
            walk.visit(&Url::parse("https://lms.example/m?page=2#x").unwrap()),
            Err(NrpsError::LinkLoop { .. })
        ));
        assert!(matches!(
            walk.visit(&Url::parse("https://evil.example/m?page=3").unwrap()),
            Err(NrpsError::ForeignLink { .. })
        ));
        assert!(matches!(
            walk.visit(&Url::parse("http://lms.example/m?page=3").unwrap()),
            Err(NrpsError::ForeignLink { .. })
        ));
        walk.visit(&Url::parse("https://lms.example/m?page=3").unwrap())
            .unwrap();
        assert_eq!(
            walk.visit(&Url::parse("https://lms.example/m?page=4").unwrap()),
            Err(NrpsError::TooManyPages { limit: 3 })
        );
        let mut resumed = PageWalk::resume(&first, 3, 3);
        assert!(matches!(
            resumed.visit(&first),
            Err(NrpsError::TooManyPages { .. })
        ));
    }

    #[test]
    fn token_failures_say_which_side_is_misconfigured() {
        let h = http::HeaderMap::new();
        let scope = ServiceError::from_parts(400, &h, r#"{"error":"invalid_scope"}"#);
        assert_eq!(NrpsError::from_token(scope).code(), "scope_not_granted");
        let client = ServiceError::from_parts(401, &h, r#"{"error":"invalid_client"}"#);
        // token.rs reports a refused assertion as Rejected, whatever the status.
        let client = ServiceError {
            kind: ServiceErrorKind::Rejected,
            ..client
        };
        assert_eq!(NrpsError::from_token(client).code(), "token_refused");
        let down = ServiceError::from_parts(502, &h, "");
        assert!(NrpsError::from_token(down).is_retryable());
    }
}
