//! The add-on pages' frame and failures: Classroom may frame them, nobody else; a failure
//! is one escaped sentence for the user, the detail in the log under a correlation id.

use super::*;

/// Only Classroom may frame these pages.
pub(super) const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors https://classroom.google.com; base-uri 'none'";

pub(super) const CLASSROOM_ORIGIN: &str = "https://classroom.google.com";

/// Why an add-on page cannot be shown: one sentence for the person, the detail in the log
/// under a correlation id.
#[derive(Debug)]
pub(crate) enum AddOnFailure {
    BadRequest(&'static str, &'static str),
    NotFound(&'static str, &'static str),
    Forbidden(&'static str, &'static str),
    /// Classroom refused a call; the sentence says what it means for the user.
    Classroom(&'static str, ApiError),
    SignIn(OAuthError),
    Internal(anyhow::Error),
}

impl From<StoreError> for AddOnFailure {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.into())
    }
}

impl IntoResponse for AddOnFailure {
    fn into_response(self) -> Response {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (status, code, sentence): (StatusCode, &str, &str) = match &self {
            Self::BadRequest(code, s) => (StatusCode::BAD_REQUEST, code, s),
            Self::NotFound(code, s) => (StatusCode::NOT_FOUND, code, s),
            Self::Forbidden(code, s) => (StatusCode::FORBIDDEN, code, s),
            Self::Classroom(s, e) => (
                match e {
                    ApiError::RateLimited { .. }
                    | ApiError::Transient { .. }
                    | ApiError::Transport { .. } => StatusCode::BAD_GATEWAY,
                    _ => StatusCode::FORBIDDEN,
                },
                e.error_type().unwrap_or("classroom_refused"),
                s,
            ),
            Self::SignIn(OAuthError::ConsentDenied) => (
                StatusCode::FORBIDDEN,
                "consent_denied",
                "Google sign-in was cancelled, so the add-on cannot open.",
            ),
            Self::SignIn(OAuthError::AdminPolicyEnforced) => (
                StatusCode::FORBIDDEN,
                "admin_policy_enforced",
                "Your school's Google Workspace administrator has not allowed this add-on yet.",
            ),
            Self::SignIn(_) => (
                StatusCode::BAD_GATEWAY,
                "google_sign_in_failed",
                "Signing in with Google did not work; please try again.",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Something went wrong on our side.",
            ),
        };
        match &self {
            Self::Internal(e) => {
                tracing::error!(correlation_id = %id, code, error = %format!("{e:#}"), "google add-on page failed");
            }
            Self::Classroom(_, e) => {
                tracing::warn!(correlation_id = %id, code, detail = %e, "Classroom refused an add-on call");
            }
            Self::SignIn(e) => {
                tracing::warn!(correlation_id = %id, code, detail = %e, "Google sign-in for an add-on failed");
            }
            _ => tracing::warn!(correlation_id = %id, code, "google add-on page refused"),
        }
        let body = format!(
            "<h1>The add-on could not open</h1><p>{}</p><p class=\"note\">If this keeps happening, give your administrator this information:</p>\
             <dl><dt>Check that failed</dt><dd>{}</dd><dt>Reference</dt><dd>{}</dd></dl>",
            escape(sentence),
            escape(code),
            escape(&id)
        );
        framed_page(status, "Add-on error", &body)
    }
}

/// A page Classroom may frame. `body` must already be escaped.
pub(super) fn framed_page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:42rem;margin:1.5rem auto;padding:0 1rem;color:#1d2733;line-height:1.5}}\
         h1{{font-size:1.3rem}}dt{{font-weight:600}}dd{{margin:0 0 .5rem 1rem;word-break:break-all}}.note{{color:#5a6675;font-size:.9rem}}\
         label{{display:block;margin:.4rem 0}}button,.button{{font:inherit;padding:.4rem 1rem}}</style></head><body>{body}</body></html>",
        escape(title)
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}
