//! What a Google answer means: Google's error shape (`google.rpc.Status` as JSON, AIP-193:
//! `{"error": {"code", "message", "status", "details"}}`) turned into typed errors, each of
//! which says whether to retry, slow down, refresh the token or give up.
//!
//! Classroom puts a machine-readable type in front of many messages: `@ProjectPermissionDenied
//! The Developer Project is not permitted…`. The type is the text before the first space when
//! the message starts with `@` (Classroom API guide, "Access errors" and "Request errors").

use crate::oauth::OAuthError;
use serde::Deserialize;
use std::time::{Duration, SystemTime};

/// How much of a message from Google is kept; enough for an admin, bounded for logs.
const MESSAGE_LIMIT: usize = 300;

/// Google's canonical status (`google.rpc.Code` by name), as carried in `error.status`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RpcStatus {
    InvalidArgument,
    FailedPrecondition,
    OutOfRange,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    Unauthenticated,
    ResourceExhausted,
    Aborted,
    Unimplemented,
    Internal,
    Unavailable,
    DeadlineExceeded,
    /// A status Google added after this was written, or none at all.
    Other(String),
}

impl RpcStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "INVALID_ARGUMENT" => Self::InvalidArgument,
            "FAILED_PRECONDITION" => Self::FailedPrecondition,
            "OUT_OF_RANGE" => Self::OutOfRange,
            "NOT_FOUND" => Self::NotFound,
            "ALREADY_EXISTS" => Self::AlreadyExists,
            "PERMISSION_DENIED" => Self::PermissionDenied,
            "UNAUTHENTICATED" => Self::Unauthenticated,
            "RESOURCE_EXHAUSTED" => Self::ResourceExhausted,
            "ABORTED" => Self::Aborted,
            "UNIMPLEMENTED" => Self::Unimplemented,
            "INTERNAL" => Self::Internal,
            "UNAVAILABLE" => Self::Unavailable,
            "DEADLINE_EXCEEDED" => Self::DeadlineExceeded,
            other => Self::Other(clean(other, 64)),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::FailedPrecondition => "FAILED_PRECONDITION",
            Self::OutOfRange => "OUT_OF_RANGE",
            Self::NotFound => "NOT_FOUND",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Self::Aborted => "ABORTED",
            Self::Unimplemented => "UNIMPLEMENTED",
            Self::Internal => "INTERNAL",
            Self::Unavailable => "UNAVAILABLE",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Self::Other(s) => s,
        }
    }
}

/// One Google error answer, read as far as it can be.
#[derive(Debug, Clone, PartialEq)]
pub struct GoogleError {
    pub http_status: u16,
    pub status: RpcStatus,
    /// The message, control characters removed, at most a few hundred characters.
    pub message: String,
    /// The `@Type` prefix of the message, without the `@`.
    pub error_type: Option<String>,
    /// `reason` of each `google.rpc.ErrorInfo` detail (`ACCESS_TOKEN_SCOPE_INSUFFICIENT`,
    /// `SERVICE_DISABLED`, …).
    pub reasons: Vec<String>,
    pub retry_after: Option<Duration>,
}

#[derive(Deserialize)]
struct Envelope {
    error: Body,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

impl GoogleError {
    /// Reads an error answer. A body that is not Google's shape (a proxy's HTML page) still
    /// gives a status from the HTTP code and an excerpt as the message.
    pub fn parse(http_status: u16, headers: &http::HeaderMap, body: &str) -> Self {
        let retry_after = headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let parsed = serde_json::from_str::<Envelope>(body).ok().map(|e| e.error);
        let (message, status, reasons) = match parsed {
            Some(b) => {
                let reasons = b
                    .details
                    .iter()
                    .filter_map(|d| d.get("reason").and_then(|r| r.as_str()))
                    .map(|r| clean(r, 64))
                    .collect();
                (
                    b.message.unwrap_or_default(),
                    b.status.map(|s| RpcStatus::parse(&s)),
                    reasons,
                )
            }
            None => (body.to_owned(), None, Vec::new()),
        };
        let status = status.unwrap_or_else(|| status_for_http(http_status));
        let message = clean(&message, MESSAGE_LIMIT);
        Self {
            http_status,
            status,
            error_type: error_type(&message).map(str::to_owned),
            message,
            reasons,
            retry_after,
        }
    }
}

/// The canonical status Google uses for an HTTP code, for answers without a body.
fn status_for_http(code: u16) -> RpcStatus {
    match code {
        400 => RpcStatus::InvalidArgument,
        401 => RpcStatus::Unauthenticated,
        403 => RpcStatus::PermissionDenied,
        404 => RpcStatus::NotFound,
        409 => RpcStatus::Aborted,
        429 => RpcStatus::ResourceExhausted,
        501 => RpcStatus::Unimplemented,
        503 => RpcStatus::Unavailable,
        504 => RpcStatus::DeadlineExceeded,
        c if c >= 500 => RpcStatus::Internal,
        c => RpcStatus::Other(format!("HTTP {c}")),
    }
}

/// The `@Type` of a Classroom message: the text after `@` up to the first space. A message
/// that is only `@Type` counts too. Anything that is not a plain identifier is no type.
pub fn error_type(message: &str) -> Option<&str> {
    let rest = message.strip_prefix('@')?;
    let ty = rest.split(' ').next().unwrap_or_default();
    (!ty.is_empty() && ty.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(ty)
}

/// Why a Classroom API call failed. Each variant is one thing the caller can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// `RESOURCE_EXHAUSTED` / 429: a per-user or per-project quota (Classroom: 1,200 per
    /// minute per user, checked on a moving minute).
    #[error("Google Classroom is rate limiting us: {message}")]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    /// 5xx, `UNAVAILABLE`, `INTERNAL`, `DEADLINE_EXCEEDED`, `ABORTED`: try again later.
    #[error("Google Classroom failed (HTTP {http_status}): {message}")]
    Transient {
        http_status: u16,
        retry_after: Option<Duration>,
        message: String,
    },
    /// 401 even with an access token refreshed after a first 401, or 401 for a token we
    /// cannot refresh.
    #[error("Google refused the access token (HTTP 401): {message}")]
    TokenExpired { message: String },
    /// `@ProjectPermissionDenied`: the courseWork was created by another Google Cloud
    /// project (often in the Classroom web app), and only that project may change its grades.
    #[error(
        "only the Google Cloud project that created this assignment may change its grades; \
         create the assignment through lmsbridge, or grade it through an add-on attachment ({message})"
    )]
    ProjectPermissionDenied { message: String },
    /// Access refused by policy: the school's Google Workspace admin has not allowed this
    /// app, or the Classroom API is not enabled for our Cloud project.
    #[error(
        "Google refused access by policy: the school's Google Workspace administrator must allow \
         this app (Admin console, Security, API controls), or the Classroom API must be enabled \
         in the Google Cloud project ({message})"
    )]
    AdminApprovalRequired { message: String },
    /// The access token lacks a scope the method needs: the teacher must grant it.
    #[error(
        "the teacher has not granted the access this needs; ask them to connect again ({message})"
    )]
    InsufficientScopes { message: String },
    /// Any other `PERMISSION_DENIED` (not a teacher of the course, `@ClassroomApiDisabled`,
    /// `@CourseNotAccessible`, …), with its `@Type` when Classroom gave one.
    #[error("Google Classroom does not permit this: {message}")]
    PermissionDenied {
        error_type: Option<String>,
        message: String,
    },
    /// `INVALID_ARGUMENT`, `FAILED_PRECONDITION`, `NOT_FOUND` and other refusals that will
    /// fail the same way again.
    #[error("Google Classroom refused the request ({}): {message}", status.as_str())]
    Rejected {
        http_status: u16,
        status: RpcStatus,
        error_type: Option<String>,
        message: String,
    },
    /// The stored refresh token no longer works (revoked by the teacher or an admin, expired,
    /// or the password changed): the teacher must connect Google Classroom again.
    #[error("{0}")]
    Revoked(OAuthError),
    /// The token endpoint refused or failed for another reason.
    #[error("no access token: {0}")]
    Token(OAuthError),
    /// No answer: connection refused, reset, timed out.
    #[error("Google Classroom could not be reached: {detail}")]
    Transport { detail: String },
    /// A success answer that cannot be used.
    #[error("Google Classroom's answer is unusable: {0}")]
    InvalidResponse(&'static str),
    /// The request could not be built from what the caller gave.
    #[error("the request could not be built: {0}")]
    InvalidRequest(&'static str),
    /// A list kept going past the page limit, or handed back a page token already used.
    #[error("Google Classroom's paging did not end: {0}")]
    Paging(&'static str),
}

impl ApiError {
    /// Classifies a Google error answer.
    pub fn from_google(e: GoogleError) -> Self {
        let GoogleError {
            http_status,
            status,
            message,
            error_type,
            reasons,
            retry_after,
        } = e;
        if http_status == 429 || status == RpcStatus::ResourceExhausted {
            return Self::RateLimited {
                retry_after,
                message,
            };
        }
        if http_status >= 500
            || matches!(
                status,
                RpcStatus::Unavailable
                    | RpcStatus::Internal
                    | RpcStatus::DeadlineExceeded
                    | RpcStatus::Aborted
            )
        {
            return Self::Transient {
                http_status,
                retry_after,
                message,
            };
        }
        if http_status == 401 || status == RpcStatus::Unauthenticated {
            return Self::TokenExpired { message };
        }
        if http_status == 403 || status == RpcStatus::PermissionDenied {
            if error_type.as_deref() == Some("ProjectPermissionDenied") {
                return Self::ProjectPermissionDenied { message };
            }
            if reasons
                .iter()
                .any(|r| r == "ACCESS_TOKEN_SCOPE_INSUFFICIENT")
                || message.contains("insufficient authentication scopes")
            {
                return Self::InsufficientScopes { message };
            }
            if is_policy_refusal(&message, &reasons) {
                return Self::AdminApprovalRequired { message };
            }
            return Self::PermissionDenied {
                error_type,
                message,
            };
        }
        Self::Rejected {
            http_status,
            status,
            error_type,
            message,
        }
    }

    /// Reads a failed response and classifies it.
    pub(crate) async fn from_response(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        Self::from_google(GoogleError::parse(status, &headers, &body))
    }

    pub(crate) fn transport(err: &reqwest::Error) -> Self {
        Self::Transport {
            detail: transport_detail(err).to_owned(),
        }
    }

    /// A stable code for storage, metrics and the product API.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            Self::Transient { .. } => "platform_5xx",
            Self::TokenExpired { .. } => "token_rejected_by_service",
            Self::ProjectPermissionDenied { .. } => "project_permission_denied",
            Self::AdminApprovalRequired { .. } => "admin_approval_required",
            Self::InsufficientScopes { .. } => "insufficient_scopes",
            Self::PermissionDenied { .. } => "permission_denied",
            Self::Rejected { .. } => "platform_rejected",
            Self::Revoked(_) => "authorization_revoked",
            Self::Token(_) => "token_refused",
            Self::Transport { .. } => "platform_unreachable",
            Self::InvalidResponse(_) => "invalid_response",
            Self::InvalidRequest(_) => "invalid_request",
            Self::Paging(_) => "paging_loop",
        }
    }

    /// True when the same call may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Transient { .. } | Self::Transport { .. } => true,
            Self::Token(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// The wait Google asked for, if it asked.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Transient { retry_after, .. } => {
                *retry_after
            }
            Self::Token(e) => e.retry_after(),
            _ => None,
        }
    }

    /// The `@Type` Classroom put in front of its message, if any.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            Self::ProjectPermissionDenied { .. } => Some("ProjectPermissionDenied"),
            Self::PermissionDenied { error_type, .. } | Self::Rejected { error_type, .. } => {
                error_type.as_deref()
            }
            _ => None,
        }
    }
}

/// Google's words for "not allowed by configuration or policy", as opposed to "not allowed
/// for this user": the project has not enabled the API, or the domain admin restricted the
/// app (API controls, `admin_policy_enforced`).
fn is_policy_refusal(message: &str, reasons: &[String]) -> bool {
    let lower = message.to_ascii_lowercase();
    reasons.iter().any(|r| {
        r == "SERVICE_DISABLED" || r == "ACCESS_NOT_CONFIGURED" || r == "ADMIN_POLICY_ENFORCED"
    }) || lower.contains("access not configured")
        || lower.contains("accessnotconfigured")
        || lower.contains("admin_policy_enforced")
        || lower.contains("admin policy")
        || lower.contains("has not been used in project")
}

pub(crate) fn transport_detail(err: &reqwest::Error) -> &'static str {
    if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "request failed"
    }
}

/// Text from Google as we keep it: control characters replaced, at most `limit` characters.
pub(crate) fn clean(text: &str, limit: usize) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(limit)
        .collect();
    cleaned.trim().to_owned()
}

/// Parses `Retry-After` as delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(code: u16, body: &str) -> ApiError {
        ApiError::from_google(GoogleError::parse(code, &http::HeaderMap::new(), body))
    }

    fn google(code: u16, status: &str, message: &str) -> String {
        serde_json::json!({"error": {"code": code, "message": message, "status": status}})
            .to_string()
    }

    #[test]
    fn type_prefix_is_the_text_before_the_first_space() {
        assert_eq!(
            error_type("@ProjectPermissionDenied The Developer Project is not permitted"),
            Some("ProjectPermissionDenied")
        );
        assert_eq!(
            error_type("@CourseNotModifiable"),
            Some("CourseNotModifiable")
        );
        assert_eq!(error_type("The caller does not have permission"), None);
        assert_eq!(error_type("@ bad"), None);
        assert_eq!(error_type("@Weird<b> x"), None);
    }

    #[test]
    fn project_permission_denied_is_its_own_error() {
        let e = classify(
            403,
            &google(
                403,
                "PERMISSION_DENIED",
                "@ProjectPermissionDenied The Developer Project is not permitted to make this request.",
            ),
        );
        assert!(
            matches!(e, ApiError::ProjectPermissionDenied { .. }),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("only the Google Cloud project that created")
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn other_access_errors_keep_their_type() {
        let e = classify(
            403,
            &google(
                403,
                "PERMISSION_DENIED",
                "@ClassroomApiDisabled The user is not permitted to access the Classroom API.",
            ),
        );
        assert_eq!(e.error_type(), Some("ClassroomApiDisabled"));
        assert!(matches!(e, ApiError::PermissionDenied { .. }));
    }

    #[test]
    fn policy_and_scope_refusals() {
        let e = classify(
            403,
            &google(
                403,
                "PERMISSION_DENIED",
                "Access Not Configured. Classroom API has not been used in project 123 before or it is disabled.",
            ),
        );
        assert!(matches!(e, ApiError::AdminApprovalRequired { .. }), "{e:?}");
        let body = serde_json::json!({"error": {"code": 403, "status": "PERMISSION_DENIED",
            "message": "Request had insufficient authentication scopes.",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                         "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}]}});
        assert!(matches!(
            classify(403, &body.to_string()),
            ApiError::InsufficientScopes { .. }
        ));
    }

    #[test]
    fn throttles_failures_and_refusals() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        let e = ApiError::from_google(GoogleError::parse(
            429,
            &h,
            &google(429, "RESOURCE_EXHAUSTED", "Quota exceeded"),
        ));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(e.is_retryable());
        assert!(matches!(
            classify(503, &google(503, "UNAVAILABLE", "try later")),
            ApiError::Transient { .. }
        ));
        assert!(matches!(
            classify(502, "<html>Bad Gateway</html>"),
            ApiError::Transient { .. }
        ));
        match classify(
            400,
            &google(
                400,
                "FAILED_PRECONDITION",
                "@CourseNotModifiable The course is archived.",
            ),
        ) {
            ApiError::Rejected {
                status, error_type, ..
            } => {
                assert_eq!(status, RpcStatus::FailedPrecondition);
                assert_eq!(error_type.as_deref(), Some("CourseNotModifiable"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(
                404,
                &google(404, "NOT_FOUND", "Requested entity was not found.")
            ),
            ApiError::Rejected {
                status: RpcStatus::NotFound,
                ..
            }
        ));
        assert!(matches!(
            classify(401, &google(401, "UNAUTHENTICATED", "invalid credentials")),
            ApiError::TokenExpired { .. }
        ));
    }

    #[test]
    fn messages_are_cleaned_and_bounded() {
        let long = format!("line\nbreak {}", "x".repeat(1000));
        let e = GoogleError::parse(
            400,
            &http::HeaderMap::new(),
            &google(400, "INVALID_ARGUMENT", &long),
        );
        assert!(e.message.starts_with("line break"));
        assert_eq!(e.message.chars().count(), MESSAGE_LIMIT);
    }

    #[test]
    fn retry_after_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
