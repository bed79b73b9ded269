//! LTI Dynamic Registration 1.0, the tool's side.
//!
//! The platform opens the tool's registration URL with `openid_configuration` and, usually,
//! a one-time `registration_token` (§3.3). The tool fetches the platform's OpenID
//! configuration (§3.4), checks that it really belongs to the issuer it names (§3.5.1: the
//! configuration URL and the issuer share scheme and host), posts its own configuration to
//! the `registration_endpoint` (§3.5.2, OpenID Connect Dynamic Client Registration with the
//! `https://purl.imsglobal.org/spec/lti-tool-configuration` extension) and reads back its
//! `client_id` and, where the platform creates one at once (Moodle), its `deployment_id`.
//! Storing the registration and closing the platform's window is the caller's business.

use crate::http_error::ServiceError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::time::Duration;
use url::Url;

/// The LTI extension of the platform's OpenID configuration.
pub const PLATFORM_CONFIGURATION_CLAIM: &str =
    "https://purl.imsglobal.org/spec/lti-platform-configuration";
/// The LTI extension of the tool's client registration.
pub const TOOL_CONFIGURATION_CLAIM: &str = "https://purl.imsglobal.org/spec/lti-tool-configuration";

/// Largest configuration or registration answer read from a platform.
const MAX_BODY: usize = 256 * 1024;
/// How long one call to the platform may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a dynamic registration could not go ahead. Each names what an admin must fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    #[error("the openid_configuration parameter is not an absolute https URL")]
    ConfigurationUrl,
    #[error("the platform's OpenID configuration could not be fetched: {0}")]
    Fetch(ServiceError),
    #[error("the platform's OpenID configuration is not valid JSON: {0}")]
    ConfigurationJson(String),
    #[error("the platform's OpenID configuration has no usable {0}")]
    MissingField(&'static str),
    /// §3.5.1: the issuer and the configuration URL must share scheme and host.
    #[error("the issuer {issuer:?} does not match the host the configuration came from ({host})")]
    IssuerMismatch { issuer: String, host: String },
    #[error("the platform does not sign id_tokens with RS256")]
    NoRs256,
    #[error("the platform does not accept private_key_jwt client authentication")]
    NoPrivateKeyJwt,
    #[error("the platform refused the registration: {0}")]
    Refused(ServiceError),
    #[error("the platform's registration answer is not usable: {0}")]
    BadResponse(String),
}

/// The parts of the platform's OpenID configuration a tool needs (§3.4.1). Other members are
/// kept in `extra` for the admin to see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlatformConfiguration {
    pub issuer: String,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    pub registration_endpoint: Option<String>,
    /// The `aud` the token endpoint wants in client assertions, when not the token URL.
    pub authorization_server: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    #[serde(default)]
    pub claims_supported: Vec<String>,
    #[serde(rename = "https://purl.imsglobal.org/spec/lti-platform-configuration")]
    pub lti: Option<LtiPlatformConfiguration>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `https://purl.imsglobal.org/spec/lti-platform-configuration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LtiPlatformConfiguration {
    /// `canvas`, `moodle`, `desire2learn`, `BlackboardLearn`, ...
    pub product_family_code: Option<String>,
    pub version: Option<String>,
    #[serde(default)]
    pub messages_supported: Vec<SupportedMessage>,
    #[serde(default)]
    pub variables: Vec<String>,
}

/// A message type the platform can send, with the placements it offers for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SupportedMessage {
    #[serde(rename = "type")]
    pub message_type: String,
    #[serde(default)]
    pub placements: Vec<String>,
}

/// A platform configuration whose every URL a registration needs was checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedConfiguration {
    pub raw: PlatformConfiguration,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub jwks_uri: Url,
    pub registration_endpoint: Url,
}

impl CheckedConfiguration {
    /// The platform's product family in lower case, when it says.
    pub fn product_family(&self) -> Option<String> {
        self.raw
            .lti
            .as_ref()
            .and_then(|l| l.product_family_code.as_deref())
            .map(str::to_ascii_lowercase)
    }

    /// Whether the platform lists `message_type` (platforms that list nothing are taken to
    /// support the core resource link message only).
    pub fn supports_message(&self, message_type: &str) -> bool {
        match &self.raw.lti {
            Some(l) if !l.messages_supported.is_empty() => l
                .messages_supported
                .iter()
                .any(|m| m.message_type == message_type),
            _ => message_type == "LtiResourceLinkRequest",
        }
    }

    fn placements_for(&self, message_type: &str) -> Vec<String> {
        self.raw
            .lti
            .iter()
            .flat_map(|l| &l.messages_supported)
            .filter(|m| m.message_type == message_type)
            .flat_map(|m| m.placements.iter().cloned())
            .collect()
    }
}

/// Whether a URL's host is a loopback address or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Which platform URLs a registration may follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UrlPolicy {
    /// Accept plain http on loopback hosts (a platform on the same machine, tests). Off in
    /// production: a real school's platform is never plain http, and following loopback URLs
    /// handed in by a browser would let it probe this machine's own services.
    pub allow_loopback_http: bool,
}

impl UrlPolicy {
    /// The policy for a tool served at `public_url`: plain http to loopback only when the tool
    /// itself is on loopback (a local trial).
    pub fn for_public_url(public_url: &Url) -> Self {
        Self {
            allow_loopback_http: is_loopback(public_url),
        }
    }

    /// Whether a platform URL is acceptable under this policy.
    pub fn accepts(self, url: &Url) -> bool {
        acceptable_url(url, self.allow_loopback_http)
    }
}

fn acceptable_url(url: &Url, allow_loopback_http: bool) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => allow_loopback_http && is_loopback(url),
        _ => false,
    }
}

/// Parses the `openid_configuration` parameter the platform opened us with.
pub fn configuration_url(raw: &str, policy: UrlPolicy) -> Result<Url, RegistrationError> {
    let url = Url::parse(raw).map_err(|_| RegistrationError::ConfigurationUrl)?;
    if !policy.accepts(&url) || !url.username().is_empty() || url.password().is_some() {
        return Err(RegistrationError::ConfigurationUrl);
    }
    Ok(url)
}

/// Checks a fetched configuration against the URL it came from (§3.5.1) and the needs of an
/// LTI 1.3 tool (RS256 id_tokens, `private_key_jwt` at the token endpoint).
pub fn check_configuration(
    config: PlatformConfiguration,
    fetched_from: &Url,
    policy: UrlPolicy,
) -> Result<CheckedConfiguration, RegistrationError> {
    let issuer =
        Url::parse(&config.issuer).map_err(|_| RegistrationError::MissingField("issuer"))?;
    let same_origin = issuer.scheme() == fetched_from.scheme()
        && issuer.host_str().map(str::to_ascii_lowercase)
            == fetched_from.host_str().map(str::to_ascii_lowercase)
        && issuer.port_or_known_default() == fetched_from.port_or_known_default();
    if !same_origin {
        return Err(RegistrationError::IssuerMismatch {
            issuer: config.issuer.clone(),
            host: fetched_from.host_str().unwrap_or_default().to_owned(),
        });
    }
    let endpoint = |value: &Option<String>, name: &'static str| -> Result<Url, RegistrationError> {
        value
            .as_deref()
            .and_then(|v| Url::parse(v).ok())
            .filter(|u| policy.accepts(u))
            .ok_or(RegistrationError::MissingField(name))
    };
    let authorization_endpoint =
        endpoint(&config.authorization_endpoint, "authorization_endpoint")?;
    let token_endpoint = endpoint(&config.token_endpoint, "token_endpoint")?;
    let jwks_uri = endpoint(&config.jwks_uri, "jwks_uri")?;
    let registration_endpoint = endpoint(&config.registration_endpoint, "registration_endpoint")?;
    if !config
        .id_token_signing_alg_values_supported
        .iter()
        .any(|a| a == "RS256")
    {
        return Err(RegistrationError::NoRs256);
    }
    // An empty list means the platform did not say; OpenID's default is client_secret_basic,
    // but no LTI platform omits it, so only an explicit list without it is refused.
    if !config.token_endpoint_auth_methods_supported.is_empty()
        && !config
            .token_endpoint_auth_methods_supported
            .iter()
            .any(|m| m == "private_key_jwt")
    {
        return Err(RegistrationError::NoPrivateKeyJwt);
    }
    Ok(CheckedConfiguration {
        raw: config,
        authorization_endpoint,
        token_endpoint,
        jwks_uri,
        registration_endpoint,
    })
}

/// What the tool says about itself when it registers.
#[derive(Debug, Clone)]
pub struct ToolDescription {
    pub client_name: String,
    pub description: Option<String>,
    pub logo_uri: Option<Url>,
    /// OIDC third-party initiated login URL.
    pub initiate_login_uri: Url,
    /// Where id_tokens may be posted; the first is the default launch target.
    pub redirect_uris: Vec<Url>,
    pub jwks_uri: Url,
    /// The default `target_link_uri` for resource link launches.
    pub target_link_uri: Url,
    /// Where deep-linking requests should go (usually the launch URL).
    pub deep_linking_uri: Url,
    /// Service scopes the tool would like (AGS, NRPS); only those the platform supports are
    /// asked for when it lists them.
    pub scopes: Vec<String>,
    /// Identity claims the tool would like in launches.
    pub claims: Vec<String>,
}

const RESOURCE_LINK: &str = "LtiResourceLinkRequest";
const DEEP_LINKING: &str = "LtiDeepLinkingRequest";

/// Canvas placements where a content picker makes sense.
const CANVAS_DEEP_LINKING_PLACEMENTS: &[&str] = &["assignment_selection", "link_selection"];

/// The client registration request body (§3.5.2), tailored to what the platform supports.
pub fn registration_request(config: &CheckedConfiguration, tool: &ToolDescription) -> Value {
    let scopes: Vec<&str> = tool
        .scopes
        .iter()
        .map(String::as_str)
        .filter(|s| {
            config.raw.scopes_supported.is_empty()
                || config.raw.scopes_supported.iter().any(|p| p == s)
        })
        .collect();
    let claims: Vec<&str> = tool
        .claims
        .iter()
        .map(String::as_str)
        .filter(|c| {
            config.raw.claims_supported.is_empty()
                || config.raw.claims_supported.iter().any(|p| p == c)
        })
        .collect();
    let canvas = config.product_family().as_deref() == Some("canvas");
    let mut messages = Vec::new();
    let mut resource_link = json!({
        "type": RESOURCE_LINK,
        "target_link_uri": tool.target_link_uri.as_str(),
        "label": tool.client_name,
    });
    if canvas {
        resource_link["placements"] = json!(["course_navigation"]);
    }
    messages.push(resource_link);
    if config.supports_message(DEEP_LINKING) {
        let offered = config.placements_for(DEEP_LINKING);
        let placements: Vec<&str> = if canvas {
            CANVAS_DEEP_LINKING_PLACEMENTS
                .iter()
                .copied()
                .filter(|p| offered.is_empty() || offered.iter().any(|o| o == p))
                .collect()
        } else {
            offered.iter().map(String::as_str).collect()
        };
        let mut deep_linking = json!({
            "type": DEEP_LINKING,
            "target_link_uri": tool.deep_linking_uri.as_str(),
            "label": tool.client_name,
        });
        if !placements.is_empty() {
            deep_linking["placements"] = json!(placements);
        }
        messages.push(deep_linking);
    }
    let mut lti = json!({
        "domain": tool.target_link_uri.host_str().unwrap_or_default(),
        "target_link_uri": tool.target_link_uri.as_str(),
        "claims": claims,
        "messages": messages,
    });
    if let Some(description) = &tool.description {
        lti["description"] = json!(description);
    }
    if canvas {
        // Canvas sends names and e-mail only at the "public" privacy level.
        lti["https://canvas.instructure.com/lti/privacy_level"] = json!("public");
    }
    let mut body = json!({
        "application_type": "web",
        "response_types": ["id_token"],
        "grant_types": ["implicit", "client_credentials"],
        "initiate_login_uri": tool.initiate_login_uri.as_str(),
        "redirect_uris": tool.redirect_uris.iter().map(Url::as_str).collect::<Vec<_>>(),
        "client_name": tool.client_name,
        "jwks_uri": tool.jwks_uri.as_str(),
        "token_endpoint_auth_method": "private_key_jwt",
        "scope": scopes.join(" "),
        TOOL_CONFIGURATION_CLAIM: lti,
    });
    if let Some(logo) = &tool.logo_uri {
        body["logo_uri"] = json!(logo.as_str());
    }
    body
}

/// The platform's answer to a registration (§3.6): our client id, and the deployment when the
/// platform made one at once.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationResponse {
    pub client_id: String,
    pub deployment_id: Option<String>,
    /// The answer as received, for the admin.
    pub raw: Value,
}

/// Reads the registration answer.
pub fn parse_registration_response(body: &str) -> Result<RegistrationResponse, RegistrationError> {
    let raw: Value =
        serde_json::from_str(body).map_err(|e| RegistrationError::BadResponse(e.to_string()))?;
    let client_id = match raw.get("client_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        // Some platforms number their clients.
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(RegistrationError::BadResponse("no client_id".into())),
    };
    let deployment_id = match raw
        .get(TOOL_CONFIGURATION_CLAIM)
        .and_then(|c| c.get("deployment_id"))
    {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    Ok(RegistrationResponse {
        client_id,
        deployment_id,
        raw,
    })
}

async fn read_limited(
    resp: reqwest::Response,
) -> Result<(u16, http::HeaderMap, String), ServiceError> {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    if resp.content_length().is_some_and(|l| l > MAX_BODY as u64) {
        return Err(ServiceError::from_parts(
            status.max(400),
            &headers,
            "answer too large",
        ));
    }
    let mut body = Vec::new();
    let mut resp = resp;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ServiceError::transport(&e))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ServiceError::from_parts(500, &headers, "answer too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

/// Fetches and checks the platform's OpenID configuration. The registration token is sent as
/// a bearer token: Canvas requires it there, and other platforms ignore it.
pub async fn fetch_configuration(
    http: &reqwest::Client,
    url: &Url,
    registration_token: Option<&str>,
    policy: UrlPolicy,
) -> Result<CheckedConfiguration, RegistrationError> {
    let mut request = http
        .get(url.clone())
        .timeout(CALL_TIMEOUT)
        .header(http::header::ACCEPT, "application/json");
    if let Some(token) = registration_token {
        request = request.bearer_auth(token);
    }
    let resp = request
        .send()
        .await
        .map_err(|e| RegistrationError::Fetch(ServiceError::transport(&e)))?;
    let (status, headers, body) = read_limited(resp).await.map_err(RegistrationError::Fetch)?;
    if !(200..300).contains(&status) {
        return Err(RegistrationError::Fetch(ServiceError::from_parts(
            status, &headers, &body,
        )));
    }
    let config: PlatformConfiguration = serde_json::from_str(&body)
        .map_err(|e| RegistrationError::ConfigurationJson(e.to_string()))?;
    check_configuration(config, url, policy)
}

/// Posts the tool's registration to the platform.
pub async fn register(
    http: &reqwest::Client,
    config: &CheckedConfiguration,
    request: &Value,
    registration_token: Option<&str>,
) -> Result<RegistrationResponse, RegistrationError> {
    let mut call = http
        .post(config.registration_endpoint.clone())
        .timeout(CALL_TIMEOUT)
        .header(http::header::ACCEPT, "application/json")
        .json(request);
    if let Some(token) = registration_token {
        call = call.bearer_auth(token);
    }
    let resp = call
        .send()
        .await
        .map_err(|e| RegistrationError::Refused(ServiceError::transport(&e)))?;
    let (status, headers, body) = read_limited(resp)
        .await
        .map_err(RegistrationError::Refused)?;
    if !(200..300).contains(&status) {
        return Err(RegistrationError::Refused(ServiceError::from_parts(
            status, &headers, &body,
        )));
    }
    parse_registration_response(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: UrlPolicy = UrlPolicy {
        allow_loopback_http: false,
    };
    const LOCAL: UrlPolicy = UrlPolicy {
        allow_loopback_http: true,
    };

    fn config(issuer: &str) -> PlatformConfiguration {
        serde_json::from_value(json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/mod/lti/auth.php"),
            "token_endpoint": format!("{issuer}/mod/lti/token.php"),
            "jwks_uri": format!("{issuer}/mod/lti/certs.php"),
            "registration_endpoint": format!("{issuer}/mod/lti/openid-registration.php"),
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": [
                "openid",
                "https://purl.imsglobal.org/spec/lti-ags/scope/score",
                "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
            ],
            "claims_supported": ["iss", "sub", "name", "email"],
            "https://purl.imsglobal.org/spec/lti-platform-configuration": {
                "product_family_code": "moodle",
                "version": "4.4",
                "messages_supported": [
                    {"type": "LtiResourceLinkRequest"},
                    {"type": "LtiDeepLinkingRequest", "placements": ["ContentArea"]}
                ]
            },
            "something_else": {"kept": true}
        }))
        .unwrap()
    }

    fn tool() -> ToolDescription {
        let u = |s: &str| Url::parse(s).unwrap();
        ToolDescription {
            client_name: "lmsbridge".into(),
            description: Some("LMS gateway".into()),
            logo_uri: None,
            initiate_login_uri: u("https://tool.example/lti/login/p1"),
            redirect_uris: vec![u("https://tool.example/lti/launch/p1")],
            jwks_uri: u("https://tool.example/.well-known/jwks.json"),
            target_link_uri: u("https://tool.example/lti/launch/p1"),
            deep_linking_uri: u("https://tool.example/lti/launch/p1"),
            scopes: vec![
                "https://purl.imsglobal.org/spec/lti-ags/scope/score".into(),
                "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem".into(),
                "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly".into(),
            ],
            claims: vec![
                "iss".into(),
                "sub".into(),
                "name".into(),
                "given_name".into(),
            ],
        }
    }

    #[test]
    fn a_configuration_from_its_issuers_host_is_accepted_and_keeps_unknown_members() {
        let from =
            Url::parse("https://moodle.school.example/mod/lti/openid-configuration.php").unwrap();
        let checked =
            check_configuration(config("https://moodle.school.example"), &from, STRICT).unwrap();
        assert_eq!(checked.product_family().as_deref(), Some("moodle"));
        assert!(checked.supports_message("LtiDeepLinkingRequest"));
        assert!(!checked.supports_message("LtiSubmissionReviewRequest"));
        assert_eq!(checked.raw.extra["something_else"], json!({"kept": true}));
    }

    #[test]
    fn an_issuer_on_another_host_scheme_or_port_is_refused() {
        for from in [
            "https://evil.example/.well-known/openid-configuration",
            "http://moodle.school.example/.well-known/openid-configuration",
            "https://moodle.school.example:8443/.well-known/openid-configuration",
        ] {
            let from = Url::parse(from).unwrap();
            let err = check_configuration(config("https://moodle.school.example"), &from, STRICT)
                .unwrap_err();
            assert!(
                matches!(err, RegistrationError::IssuerMismatch { .. }),
                "{from}: {err}"
            );
        }
    }

    #[test]
    fn missing_endpoints_and_weak_algorithms_are_named() {
        let from = Url::parse("https://lms.example/config").unwrap();
        let mut c = config("https://lms.example");
        c.registration_endpoint = None;
        assert!(matches!(
            check_configuration(c, &from, STRICT),
            Err(RegistrationError::MissingField("registration_endpoint"))
        ));
        let mut c = config("https://lms.example");
        c.jwks_uri = Some("http://lms.example/certs".into());
        assert!(matches!(
            check_configuration(c, &from, STRICT),
            Err(RegistrationError::MissingField("jwks_uri"))
        ));
        let mut c = config("https://lms.example");
        c.id_token_signing_alg_values_supported = vec!["HS256".into()];
        assert!(matches!(
            check_configuration(c, &from, STRICT),
            Err(RegistrationError::NoRs256)
        ));
        let mut c = config("https://lms.example");
        c.token_endpoint_auth_methods_supported = vec!["client_secret_basic".into()];
        assert!(matches!(
            check_configuration(c, &from, STRICT),
            Err(RegistrationError::NoPrivateKeyJwt)
        ));
    }

    #[test]
    fn configuration_urls_must_be_https_except_on_loopback_when_allowed() {
        assert!(configuration_url("https://lms.example/c", STRICT).is_ok());
        assert!(configuration_url("http://127.0.0.1:9000/c", LOCAL).is_ok());
        assert!(configuration_url("http://localhost/c", LOCAL).is_ok());
        assert!(configuration_url("http://[::1]/c", LOCAL).is_ok());
        assert!(configuration_url("http://127.0.0.1:9000/c", STRICT).is_err());
        for bad in [
            "http://lms.example/c",
            "ftp://lms.example/c",
            "javascript:alert(1)",
            "https://user:pw@lms.example/c",
            "/relative",
        ] {
            assert!(configuration_url(bad, LOCAL).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_request_asks_only_for_what_the_platform_supports() {
        let from = Url::parse("https://lms.example/config").unwrap();
        let checked = check_configuration(config("https://lms.example"), &from, STRICT).unwrap();
        let body = registration_request(&checked, &tool());
        assert_eq!(
            body["scope"],
            "https://purl.imsglobal.org/spec/lti-ags/scope/score https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
        );
        assert_eq!(body["token_endpoint_auth_method"], "private_key_jwt");
        assert_eq!(
            body["initiate_login_uri"],
            "https://tool.example/lti/login/p1"
        );
        let lti = &body[TOOL_CONFIGURATION_CLAIM];
        assert_eq!(lti["claims"], json!(["iss", "sub", "name"]));
        assert_eq!(lti["domain"], "tool.example");
        let messages = lti["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1]["type"], "LtiDeepLinkingRequest");
        assert_eq!(messages[1]["placements"], json!(["ContentArea"]));
        assert!(
            lti.get("https://canvas.instructure.com/lti/privacy_level")
                .is_none()
        );
    }

    #[test]
    fn canvas_gets_its_placements_and_privacy_level() {
        let from = Url::parse("https://canvas.example/config").unwrap();
        let mut c = config("https://canvas.example");
        c.lti.as_mut().unwrap().product_family_code = Some("canvas".into());
        c.lti.as_mut().unwrap().messages_supported = vec![
            SupportedMessage {
                message_type: "LtiResourceLinkRequest".into(),
                placements: vec![],
            },
            SupportedMessage {
                message_type: "LtiDeepLinkingRequest".into(),
                placements: vec!["link_selection".into(), "editor_button".into()],
            },
        ];
        let checked = check_configuration(c, &from, STRICT).unwrap();
        let body = registration_request(&checked, &tool());
        let lti = &body[TOOL_CONFIGURATION_CLAIM];
        assert_eq!(
            lti["https://canvas.instructure.com/lti/privacy_level"],
            "public"
        );
        assert_eq!(lti["messages"][1]["placements"], json!(["link_selection"]));
    }

    #[test]
    fn a_platform_without_deep_linking_gets_only_the_resource_link_message() {
        let from = Url::parse("https://lms.example/config").unwrap();
        let mut c = config("https://lms.example");
        c.lti = None;
        let checked = check_configuration(c, &from, STRICT).unwrap();
        let body = registration_request(&checked, &tool());
        assert_eq!(
            body[TOOL_CONFIGURATION_CLAIM]["messages"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn registration_answers_are_read_strictly() {
        let r = parse_registration_response(
            r#"{"client_id":"abc","https://purl.imsglobal.org/spec/lti-tool-configuration":{"deployment_id":"7"}}"#,
        )
        .unwrap();
        assert_eq!(
            (r.client_id.as_str(), r.deployment_id.as_deref()),
            ("abc", Some("7"))
        );
        let r = parse_registration_response(r#"{"client_id":10000000000042}"#).unwrap();
        assert_eq!(
            (r.client_id.as_str(), r.deployment_id),
            ("10000000000042", None)
        );
        for bad in [
            r#"{"client_id":""}"#,
            r#"{}"#,
            "not json",
            r#"{"client_id":null}"#,
        ] {
            assert!(parse_registration_response(bad).is_err(), "{bad}");
        }
    }
}
