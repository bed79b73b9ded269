//! Turning failures into responses on purpose: one sentence for the person in front of the
//! screen, a stable code for the admin, and the detail only in the log under a correlation id.

use super::html::{Markup, page};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lti::LaunchError;
use store::StoreError;

/// An error from the product API, answered as JSON.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    NotFound(&'static str),
    Conflict(String),
    Invalid(String),
    Internal(anyhow::Error),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound("not_found"),
            StoreError::Conflict(m) => Self::Conflict(m.to_owned()),
            StoreError::Invalid(m) => Self::Invalid(m),
            other => Self::Internal(other.into()),
        }
    }
}

fn correlation_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid API key is required: Authorization: Bearer <key>".to_owned(),
            ),
            Self::NotFound(code) => (StatusCode::NOT_FOUND, code, "not found".to_owned()),
            Self::Conflict(m) => (StatusCode::CONFLICT, "conflict", m),
            Self::Invalid(m) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", m),
            Self::Internal(e) => {
                let id = correlation_id();
                tracing::error!(correlation_id = %id, error = %format!("{e:#}"), "request failed");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(serde_json::json!({
                        "error": "internal",
                        "message": "something went wrong",
                        "correlation_id": id,
                    })),
                )
                    .into_response();
            }
        };
        let mut resp = (
            status,
            Json(serde_json::json!({"error": code, "message": message})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

/// Why a login or launch was refused. Shown as a page inside the LMS.
#[derive(Debug)]
pub enum LaunchFailure {
    /// A parameter the platform must send is missing or malformed.
    BadRequest(&'static str, String),
    /// No registration matches the login.
    UnknownRegistration,
    /// Several registrations match and nothing says which.
    AmbiguousRegistration,
    /// The target is not a URL of this tool.
    ForeignTarget,
    /// The login state is unknown, used, or expired.
    StateUnknown,
    /// The browser did not bring back the state cookie.
    StateNotBound,
    /// The platform itself reported an error.
    PlatformError(String),
    Token(LaunchError),
    NonceReplayed,
    /// A new deployment was recorded and waits for an admin's approval.
    DeploymentPending,
    /// The registration exists but an admin has not enabled it (Dynamic Registration).
    RegistrationDisabled,
    Internal(anyhow::Error),
}

impl LaunchFailure {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadRequest(code, _) => (
                StatusCode::BAD_REQUEST,
                code,
                "The LMS sent an incomplete launch request.",
            ),
            Self::UnknownRegistration => (
                StatusCode::BAD_REQUEST,
                "registration_unknown",
                "This tool is not set up for this LMS yet.",
            ),
            Self::AmbiguousRegistration => (
                StatusCode::BAD_REQUEST,
                "registration_ambiguous",
                "This tool cannot tell which of its registrations this LMS uses.",
            ),
            Self::ForeignTarget => (
                StatusCode::BAD_REQUEST,
                "target_link_uri_foreign",
                "The LMS asked to open an address that does not belong to this tool.",
            ),
            Self::StateUnknown => (
                StatusCode::BAD_REQUEST,
                "state_unknown",
                "This launch has expired or was already used. Please open the activity again.",
            ),
            Self::StateNotBound => (
                StatusCode::BAD_REQUEST,
                "state_cookie_missing",
                "Your browser did not keep this launch's session. Please open the activity again, or in a new window.",
            ),
            Self::PlatformError(_) => (
                StatusCode::BAD_REQUEST,
                "platform_error",
                "The LMS could not complete the launch.",
            ),
            Self::Token(LaunchError::UnknownDeployment) => (
                StatusCode::FORBIDDEN,
                "deployment_unknown",
                "This tool has not been enabled for this part of the LMS yet.",
            ),
            Self::Token(LaunchError::Key(lti::jwks::JwksError::Fetch(_))) => (
                StatusCode::BAD_GATEWAY,
                "jwks_unavailable",
                "The LMS could not be reached to check this launch. Please try again.",
            ),
            Self::Token(e) => (
                StatusCode::UNAUTHORIZED,
                e.code(),
                "This launch could not be verified.",
            ),
            Self::NonceReplayed => (
                StatusCode::UNAUTHORIZED,
                "nonce_replayed",
                "This launch was already used. Please open the activity again.",
            ),
            Self::DeploymentPending => (
                StatusCode::FORBIDDEN,
                "deployment_pending",
                "This tool was just added here and is waiting for an administrator to approve it.",
            ),
            Self::RegistrationDisabled => (
                StatusCode::FORBIDDEN,
                "registration_disabled",
                "This tool is registered with this LMS but an administrator has not enabled it yet.",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Something went wrong on our side.",
            ),
        }
    }
}

impl IntoResponse for LaunchFailure {
    fn into_response(self) -> Response {
        let (status, code, sentence) = self.parts();
        let id = correlation_id();
        match &self {
            Self::Internal(e) => {
                tracing::error!(correlation_id = %id, code, error = %format!("{e:#}"), "launch failed");
            }
            Self::Token(e) => {
                tracing::warn!(correlation_id = %id, code, detail = %e, "launch refused")
            }
            Self::BadRequest(_, d) | Self::PlatformError(d) => {
                tracing::warn!(correlation_id = %id, code, detail = %d, "launch refused");
            }
            _ => tracing::warn!(correlation_id = %id, code, "launch refused"),
        }
        let mut body = Markup::element("h1", "The activity could not be opened");
        body.push(Markup::element("p", sentence));
        body.push(Markup::raw("<p class=\"note\">If this keeps happening, give your LMS administrator this information:</p><dl>"));
        body.push(Markup::row("Check that failed", code));
        body.push(Markup::row("Reference", &id));
        body.push(Markup::raw("</dl>"));
        page(status, "Launch failed", body)
    }
}
