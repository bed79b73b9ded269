//! `GET /lti/register?invite=…&openid_configuration=…&registration_token=…`: LTI Dynamic
//! Registration 1.0, started by a platform admin who pasted the tenant's registration URL
//! into Canvas or Moodle.
//!
//! The invite names the tenant (and proves the admin was given the URL); the registration is
//! stored disabled until an lmsbridge admin enables it, and the page ends the platform's
//! registration window with the `org.imsglobal.lti.close` message (§3.7).

use super::html::{Markup, escape};
use crate::App;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::{Actor, PlatformId, PlatformKind};
use lti::dynamic_registration::{
    self as dr, CheckedConfiguration, RegistrationError, ToolDescription, UrlPolicy,
};
use serde::Deserialize;
use store::crypto::random_token;
use store::{NewDynamicPlatform, StoreError};

/// The query a platform opens the registration URL with (§3.3), plus our invite.
#[derive(Debug, Deserialize)]
pub struct RegisterParams {
    invite: Option<String>,
    openid_configuration: Option<String>,
    registration_token: Option<String>,
}

/// Why a registration did not happen. The reader is a platform admin, so the page names
/// the problem; platform answers are logged, not shown.
#[derive(Debug)]
enum Failure {
    Invite,
    MissingConfiguration,
    Platform(RegistrationError),
    AlreadyRegistered,
    Internal(anyhow::Error),
}

impl Failure {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::Invite => (
                StatusCode::NOT_FOUND,
                "invite_invalid",
                "This registration link is not valid or has expired. Ask your lmsbridge administrator for a new one.".into(),
            ),
            Self::MissingConfiguration => (
                StatusCode::BAD_REQUEST,
                "openid_configuration_missing",
                "Open this link from your LMS's LTI Dynamic Registration screen: it must add the openid_configuration parameter.".into(),
            ),
            Self::Platform(e) => (StatusCode::BAD_GATEWAY, code(e), describe(e)),
            Self::AlreadyRegistered => (
                StatusCode::CONFLICT,
                "registration_exists",
                "This LMS already has a registration with the client id it just issued.".into(),
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Something went wrong on our side.".into(),
            ),
        }
    }
}

fn code(e: &RegistrationError) -> &'static str {
    match e {
        RegistrationError::ConfigurationUrl => "openid_configuration_invalid",
        RegistrationError::Fetch(_) => "openid_configuration_unreachable",
        RegistrationError::ConfigurationJson(_) => "openid_configuration_malformed",
        RegistrationError::MissingField(_) => "openid_configuration_incomplete",
        RegistrationError::IssuerMismatch { .. } => "issuer_mismatch",
        RegistrationError::NoRs256 => "rs256_unsupported",
        RegistrationError::NoPrivateKeyJwt => "private_key_jwt_unsupported",
        RegistrationError::Refused(_) => "registration_refused",
        RegistrationError::BadResponse(_) => "registration_response_invalid",
        _ => "registration_failed",
    }
}

/// A sentence for the admin. Service errors keep only their status: the body of an answer
/// from an address a browser handed us is not repeated back to that browser.
fn describe(e: &RegistrationError) -> String {
    match e {
        RegistrationError::Fetch(s) => match s.status {
            Some(status) => {
                format!("The LMS's OpenID configuration could not be fetched (HTTP {status}).")
            }
            None => "The LMS's OpenID configuration could not be fetched (no answer).".into(),
        },
        RegistrationError::Refused(s) => match s.status {
            Some(status) => format!("The LMS refused the registration (HTTP {status})."),
            None => "The LMS did not answer the registration request.".into(),
        },
        RegistrationError::ConfigurationJson(_) => {
            "The LMS's OpenID configuration is not valid JSON.".into()
        }
        RegistrationError::BadResponse(_) => {
            "The LMS's answer to the registration has no usable client_id.".into()
        }
        other => format!("{other}."),
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, code, sentence) = self.parts();
        let id = uuid::Uuid::new_v4().simple().to_string();
        match &self {
            Self::Internal(e) => {
                tracing::error!(correlation_id = %id, code, error = %format!("{e:#}"), "dynamic registration failed");
            }
            Self::Platform(e) => {
                tracing::warn!(correlation_id = %id, code, detail = %e, "dynamic registration refused");
            }
            _ => tracing::warn!(correlation_id = %id, code, "dynamic registration refused"),
        }
        let mut body = Markup::element("h1", "The registration did not complete");
        body.push(Markup::element("p", &sentence));
        body.push(Markup::raw("<dl>"));
        body.push(Markup::row("Check that failed", code));
        body.push(Markup::row("Reference", &id));
        body.push(Markup::raw("</dl>"));
        super::html::page(status, "Registration failed", body)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => Self::AlreadyRegistered,
            other => Self::Internal(other.into()),
        }
    }
}

/// Scopes lmsbridge uses: AGS (line items, results, scores) and NRPS.
const SCOPES: &[&str] = &[
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/score",
    "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly",
];

/// Identity claims the product needs to greet and grade people.
const CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "name",
    "given_name",
    "family_name",
    "email",
    "locale",
];

fn kind_of(config: &CheckedConfiguration) -> PlatformKind {
    match config.product_family().as_deref() {
        Some("canvas") => PlatformKind::Canvas,
        Some("moodle") => PlatformKind::Moodle,
        _ => PlatformKind::Lti,
    }
}

/// The tool as it describes itself to a platform, with per-registration login and launch
/// URLs so that a platform sharing its issuer with others (hosted Canvas) still resolves.
fn describe_tool(app: &App, id: PlatformId) -> ToolDescription {
    let s = app.settings();
    let launch = s.public(&format!("lti/launch/{id}"));
    ToolDescription {
        client_name: s.tool_name.clone(),
        description: None,
        logo_uri: None,
        initiate_login_uri: s.public(&format!("lti/login/{id}")),
        redirect_uris: vec![launch.clone()],
        jwks_uri: s.public(".well-known/jwks.json"),
        target_link_uri: launch.clone(),
        deep_linking_uri: launch,
        scopes: SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        claims: CLAIMS.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Runs the whole registration.
pub async fn register(
    State(app): State<App>,
    params: Result<Query<RegisterParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match run(&app, params.ok().map(|q| q.0)).await {
        Ok(page) => page,
        Err(f) => f.into_response(),
    }
}

async fn run(app: &App, params: Option<RegisterParams>) -> Result<Response, Failure> {
    let params = params.ok_or(Failure::MissingConfiguration)?;
    let invite = params
        .invite
        .as_deref()
        .filter(|i| (16..=128).contains(&i.len()))
        .ok_or(Failure::Invite)?;
    let scope = app
        .store()
        .redeem_registration_invite(invite)
        .await?
        .ok_or(Failure::Invite)?;
    let raw_url = params
        .openid_configuration
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or(Failure::MissingConfiguration)?;
    let policy = UrlPolicy::for_public_url(&app.settings().public_url);
    let config_url = dr::configuration_url(raw_url, policy).map_err(Failure::Platform)?;
    let token = params
        .registration_token
        .as_deref()
        .filter(|t| !t.is_empty());
    let http = &app.inner().http;
    let config = dr::fetch_configuration(http, &config_url, token, policy)
        .await
        .map_err(Failure::Platform)?;
    let id = PlatformId::generate();
    let request = dr::registration_request(&config, &describe_tool(app, id));
    let answer = dr::register(http, &config, &request, token)
        .await
        .map_err(Failure::Platform)?;
    let token_audience = config
        .raw
        .authorization_server
        .clone()
        .filter(|a| a != config.token_endpoint.as_str());
    let new = NewDynamicPlatform {
        id,
        kind: kind_of(&config),
        issuer: config.raw.issuer.clone(),
        client_id: answer.client_id.clone(),
        auth_url: config.authorization_endpoint.clone(),
        token_url: config.token_endpoint.clone(),
        jwks_url: config.jwks_uri.clone(),
        token_audience,
        deployment_id: answer.deployment_id.clone(),
        platform_configuration: serde_json::json!({
            "openid_configuration": config.raw,
            "registration_response": answer.raw,
        }),
    };
    let platform = app
        .store()
        .tenant(&scope)
        .add_dynamic_platform(&new, &Actor::system("dynamic-registration"))
        .await?;
    tracing::info!(
        platform = %platform.id,
        tenant = %scope.tenant_id(),
        kind = %platform.kind,
        "platform registered by dynamic registration; waiting to be enabled"
    );
    Ok(done_page(
        &platform.issuer,
        &platform.client_id,
        answer.deployment_id.as_deref(),
        &platform.id.to_string(),
    ))
}

/// Tells the admin what happened and lets the platform close its registration window.
fn done_page(issuer: &str, client_id: &str, deployment: Option<&str>, id: &str) -> Response {
    let nonce = random_token(16);
    let deployment = deployment.map_or_else(
        || "created by the LMS at the first launch, then approved by an administrator".to_owned(),
        str::to_owned,
    );
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Registered</title></head><body>\
         <h1>lmsbridge is registered with this LMS</h1>\
         <dl><dt>Issuer</dt><dd>{issuer}</dd><dt>Client id</dt><dd>{client_id}</dd>\
         <dt>Deployment</dt><dd>{deployment}</dd><dt>Registration</dt><dd><code>{id}</code></dd></dl>\
         <p>Launches start working once an lmsbridge administrator enables this registration \
         (<code>lmsbridge platform enable {id}</code>).</p>\
         <button type=\"button\" id=\"lmsb-close\">Done</button>\
         <script nonce=\"{nonce}\">\
         function lmsbClose(){{(window.opener||window.parent).postMessage({{subject:'org.imsglobal.lti.close'}},'*');}}\
         document.getElementById('lmsb-close').addEventListener('click',lmsbClose);\
         </script></body></html>",
        issuer = escape(issuer),
        client_id = escape(client_id),
        deployment = escape(&deployment),
        id = escape(id),
    );
    let mut resp = (StatusCode::OK, html).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(csp) = HeaderValue::from_str(&format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; frame-ancestors *; base-uri 'none'; form-action 'none'"
    )) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    resp
}
