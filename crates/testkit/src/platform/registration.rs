//! The platform's side of LTI Dynamic Registration 1.0: its OpenID configuration (§3.4) and
//! a registration endpoint (§3.5) that checks a tool's registration request the way Moodle and
//! Canvas do, issues a client id, and from then on trusts the registered tool.

use super::{SimulatedLms, ToolRegistration};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use url::Url;

/// Which platform's registration behaviour to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegistrationStyle {
    /// Moodle: `product_family_code` `moodle`, the deployment created with the registration and
    /// returned in its answer.
    #[default]
    Moodle,
    /// Canvas: `product_family_code` `canvas`, the registration token required to read the
    /// configuration, and no deployment until the tool is installed.
    Canvas,
}

const SCOPES: &[&str] = &[
    "openid",
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/score",
    "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly",
];

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn invalid(description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "invalid_client_metadata", "error_description": description})),
    )
        .into_response()
}

/// `GET /.well-known/openid-configuration`.
pub(super) async fn openid_configuration(
    State(lms): State<SimulatedLms>,
    headers: HeaderMap,
) -> Response {
    let style = lms.state().registration_style;
    if style == RegistrationStyle::Canvas {
        let known = bearer(&headers).is_some_and(|t| lms.state().registration_tokens.contains(t));
        if !known {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "unauthorized"})),
            )
                .into_response();
        }
    }
    let family = match style {
        RegistrationStyle::Moodle => "moodle",
        RegistrationStyle::Canvas => "canvas",
    };
    let deep_linking_placements: &[&str] = match style {
        RegistrationStyle::Moodle => &["ContentArea"],
        RegistrationStyle::Canvas => &["assignment_selection", "link_selection", "editor_button"],
    };
    Json(json!({
        "issuer": lms.issuer(),
        "authorization_endpoint": lms.auth_url(),
        "token_endpoint": lms.token_url(),
        "jwks_uri": lms.jwks_url(),
        "registration_endpoint": lms.endpoint(&["register"]),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public", "pairwise"],
        "scopes_supported": SCOPES,
        "claims_supported": ["sub", "iss", "name", "given_name", "family_name", "email"],
        "https://purl.imsglobal.org/spec/lti-platform-configuration": {
            "product_family_code": family,
            "version": "simulated",
            "messages_supported": [
                {"type": "LtiResourceLinkRequest"},
                {"type": "LtiDeepLinkingRequest", "placements": deep_linking_placements},
            ],
        },
    }))
    .into_response()
}

fn url_field(body: &Value, name: &str) -> Result<Url, String> {
    body.get(name)
        .and_then(Value::as_str)
        .and_then(|s| Url::parse(s).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| format!("{name} must be an absolute URL"))
}

fn contains(body: &Value, name: &str, wanted: &str) -> bool {
    body.get(name)
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(wanted)))
}

/// Checks a registration request as platforms do (§3.5.2; Moodle's openid-registration.php).
fn check_request(body: &Value) -> Result<ToolRegistrationParts, String> {
    if body.get("application_type").and_then(Value::as_str) != Some("web") {
        return Err("application_type must be web".into());
    }
    if !contains(body, "response_types", "id_token") {
        return Err("response_types must include id_token".into());
    }
    if !contains(body, "grant_types", "implicit")
        || !contains(body, "grant_types", "client_credentials")
    {
        return Err("grant_types must include implicit and client_credentials".into());
    }
    if body
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
        != Some("private_key_jwt")
    {
        return Err("token_endpoint_auth_method must be private_key_jwt".into());
    }
    if body
        .get("client_name")
        .and_then(Value::as_str)
        .is_none_or(|n| n.trim().is_empty())
    {
        return Err("client_name is required".into());
    }
    let login_url = url_field(body, "initiate_login_uri")?;
    let jwks_url = url_field(body, "jwks_uri")?;
    let redirect_uris: Vec<Url> = body
        .get("redirect_uris")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().and_then(|s| Url::parse(s).ok()))
                .collect()
        })
        .unwrap_or_default();
    let Some(launch_url) = redirect_uris.first().cloned() else {
        return Err("redirect_uris must list at least one URL".into());
    };
    let lti = body
        .get("https://purl.imsglobal.org/spec/lti-tool-configuration")
        .ok_or("the lti-tool-configuration is missing")?;
    let domain = lti
        .get("domain")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let target = lti
        .get("target_link_uri")
        .and_then(Value::as_str)
        .and_then(|s| Url::parse(s).ok())
        .ok_or("target_link_uri is required")?;
    if target.host_str() != Some(domain) || login_url.host_str() != Some(domain) {
        return Err("the login and target URLs must be on the tool's domain".into());
    }
    let messages = lti
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages are required")?;
    for m in messages {
        match m.get("type").and_then(Value::as_str) {
            Some("LtiResourceLinkRequest" | "LtiDeepLinkingRequest") => {}
            _ => return Err("a message type is not supported".into()),
        }
    }
    Ok(ToolRegistrationParts {
        login_url,
        launch_url,
        jwks_url,
    })
}

struct ToolRegistrationParts {
    login_url: Url,
    launch_url: Url,
    jwks_url: Url,
}

/// `POST /register`.
pub(super) async fn register(
    State(lms): State<SimulatedLms>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body {
        return invalid("the registration must be sent as application/json");
    }
    // The registration token is single use.
    let token_ok = bearer(&headers).is_some_and(|t| lms.state().registration_tokens.remove(t));
    if !token_ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_token", "error_description": "registration token missing, unknown or used"})),
        )
            .into_response();
    }
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return invalid("the body is not JSON");
    };
    let parts = match check_request(&request) {
        Ok(p) => p,
        Err(e) => return invalid(&e),
    };
    let mut state = lms.state();
    state.registration_count += 1;
    let client_id = format!("dyn-client-{}", state.registration_count);
    let deployment_id = lms.inner.config.tool.deployment_id.clone();
    let style = state.registration_style;
    state.registered_tool = Some(ToolRegistration {
        client_id: client_id.clone(),
        deployment_id: deployment_id.clone(),
        login_url: parts.login_url,
        launch_url: parts.launch_url,
        jwks_url: parts.jwks_url,
    });
    state.registrations.push(request.clone());
    drop(state);
    let mut answer = request;
    answer["client_id"] = json!(client_id);
    if style == RegistrationStyle::Moodle {
        answer["https://purl.imsglobal.org/spec/lti-tool-configuration"]["deployment_id"] =
            json!(deployment_id);
    }
    Json(answer).into_response()
}
