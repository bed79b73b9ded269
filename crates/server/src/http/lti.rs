//! OIDC login initiation and the launch (LTI Core §4, Security Framework §5.1).

use super::error::LaunchFailure;
use super::html::{Markup, page};
use super::login_state::{self, LoginState};
use super::storage;
use crate::App;
use crate::launch_batcher::RecordError;
use adapters::lti_roles;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use domain::PlatformId;
use lti::LaunchExpectations;
use lti::login::{AuthRequest, LoginInitiation};
use store::crypto::{constant_time_eq, random_token, sha256_hex};
use store::{
    LaunchContext, LaunchPerson, LaunchRefusal, NewLaunch, PlatformRegistration, now_micros,
};
use url::Url;

const STATE_COOKIE_PREFIX: &str = "lmsb_state_";

/// The login initiation parameters, from a GET query or a POST form.
pub struct LoginParams(LoginInitiation);

impl<S: Send + Sync> FromRequest<S> for LoginParams {
    type Rejection = LaunchFailure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bad = |e: String| LaunchFailure::BadRequest("login_request_malformed", e);
        let p = if req.method() == Method::POST {
            LoginInitiation::from_form(&form_body(req, state).await.map_err(bad)?)
        } else {
            LoginInitiation::from_form(req.uri().query().unwrap_or("").as_bytes())
        };
        p.map(Self)
            .map_err(|e| bad(format!("Failed to deserialize form: {e}")))
    }
}

/// The body of a form post, refused as the `Form` extractor refuses it when it is not
/// `application/x-www-form-urlencoded` or too large.
async fn form_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, String> {
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Err(
            "Form requests must have `Content-Type: application/x-www-form-urlencoded`".into(),
        );
    }
    Bytes::from_request(req, state)
        .await
        .map_err(|e| e.body_text())
}

/// `GET|POST /lti/login`: the registration is found by (iss, client_id).
pub async fn login(
    State(app): State<App>,
    LoginParams(p): LoginParams,
) -> Result<Response, LaunchFailure> {
    let iss = required(&p.iss, "iss")?;
    let found = app
        .inner()
        .registrations
        .for_login(iss, p.client_id.as_deref())
        .await
        .map_err(|e| LaunchFailure::Internal(e.into()))?;
    let registration = match found.as_slice() {
        [] => return Err(LaunchFailure::UnknownRegistration),
        [one] => one.registration.clone(),
        _ => return Err(LaunchFailure::AmbiguousRegistration),
    };
    let redirect = app.inner().launch_url.clone();
    Box::pin(begin(&app, &p, registration, &redirect)).await
}

/// `GET|POST /lti/login/{registration}`: for platforms that do not send `client_id`.
pub async fn login_for(
    State(app): State<App>,
    Path(registration): Path<String>,
    LoginParams(p): LoginParams,
) -> Result<Response, LaunchFailure> {
    let id: PlatformId = registration
        .parse()
        .map_err(|_| LaunchFailure::UnknownRegistration)?;
    let registration = app
        .inner()
        .registrations
        .by_id(id)
        .await
        .map_err(|e| LaunchFailure::Internal(e.into()))?
        .ok_or(LaunchFailure::UnknownRegistration)?
        .registration
        .clone();
    let iss = required(&p.iss, "iss")?;
    // The URL names the registration; the request must still agree with it.
    if iss != registration.platform.issuer
        || p.client_id
            .as_deref()
            .is_some_and(|c| c != registration.platform.client_id)
    {
        return Err(LaunchFailure::UnknownRegistration);
    }
    // Its launch comes back to the registration's own launch URL too.
    let redirect = app
        .settings()
        .public(&format!("lti/launch/{}", registration.platform.id));
    Box::pin(begin(&app, &p, registration, &redirect)).await
}

fn required<'a>(v: &'a Option<String>, name: &'static str) -> Result<&'a str, LaunchFailure> {
    v.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| {
        LaunchFailure::BadRequest("login_parameter_missing", format!("{name} is missing"))
    })
}

/// Stores state and nonce, binds the state to the browser, redirects to the platform.
async fn begin(
    app: &App,
    p: &LoginInitiation,
    registration: PlatformRegistration,
    redirect_uri: &Url,
) -> Result<Response, LaunchFailure> {
    if !registration.platform.enabled {
        return Err(LaunchFailure::RegistrationDisabled);
    }
    let login_hint = required(&p.login_hint, "login_hint")?;
    let target = required(&p.target_link_uri, "target_link_uri")?;
    let target_url = Url::parse(target)
        .map_err(|_| LaunchFailure::BadRequest("target_link_uri_invalid", "not a URL".into()))?;
    if !belongs_to_tool(&app.inner().base_url, &target_url) {
        return Err(LaunchFailure::ForeignTarget);
    }
    // 256 random bits after the time in fixed-width hex: as unguessable as the random part
    // alone, and each launch's nonce lands at the end of the used-nonce index instead of on
    // a random page of it.
    let nonce = format!("{:016x}{}", now_micros(), random_token(32));
    let settings = app.settings();
    let storage_target = p
        .lti_storage_target
        .as_deref()
        .filter(|t| storage::valid_target(t));
    let storage_secret = storage_target.map(|_| random_token(32));
    let state = login_state::seal(
        &app.inner().master,
        &LoginState {
            platform_id: registration.platform.id,
            nonce: nonce.clone(),
            target_link_uri: target.to_owned(),
            expires_at: now_micros() + settings.login_state_ttl_secs * 1_000_000,
            storage_target: storage_target.map(str::to_owned),
            storage_secret: storage_secret.clone(),
        },
    )
    .map_err(LaunchFailure::Internal)?;
    let state_hash = sha256_hex(state.as_bytes());
    let url = AuthRequest {
        auth_url: &registration.platform.auth_url,
        client_id: &registration.platform.client_id,
        redirect_uri,
        login_hint,
        lti_message_hint: p.lti_message_hint.as_deref(),
        state: &state,
        nonce: &nonce,
    }
    .to_url();
    let mut resp = match (storage_target, &storage_secret) {
        (Some(target), Some(secret)) => storage::put_page(
            &url,
            &storage::platform_origin(&registration.platform.auth_url),
            target,
            &storage::storage_key(&state_hash),
            secret,
        ),
        _ => Redirect::to(url.as_str()).into_response(),
    };
    // The cookie is set either way: where the browser keeps it, it is the simpler binding.
    let cookie = state_cookie(app, &state_hash, settings.login_state_ttl_secs);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// True when `target` is under this tool's public base URL (same origin and path prefix).
fn belongs_to_tool(base: &Url, target: &Url) -> bool {
    target.origin() == base.origin() && target.path().starts_with(base.path())
}

/// The cookie that binds a login state to this browser. `SameSite=None; Secure` (and
/// `Partitioned`, for browsers that partition third-party cookies) is what an LMS iframe
/// needs; plain-http development setups get `SameSite=Lax`, since browsers drop insecure
/// `SameSite=None` cookies.
fn state_cookie(app: &App, state_hash: &str, max_age: i64) -> String {
    // Named by the state's hash and holding all of it, so a browser can hold several logins
    // (several LMS tabs) at once.
    let name = format!("{STATE_COOKIE_PREFIX}{}", &state_hash[..16]);
    let value = state_hash;
    let secure = app.settings().public_url.scheme() == "https";
    let attrs = if secure {
        "SameSite=None; Secure; Partitioned"
    } else {
        "SameSite=Lax"
    };
    let path = app.inner().launch_url.path();
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; {attrs}")
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The form a platform posts to the launch URL.
#[derive(Debug, Default)]
pub struct LaunchForm {
    id_token: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for LaunchForm {
    type Rejection = LaunchFailure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bad = |e: String| LaunchFailure::BadRequest("launch_request_malformed", e);
        let body = form_body(req, state).await.map_err(bad)?;
        let mut form = Self::default();
        for (name, value) in lti::login::form_pairs(&body) {
            let slot = match &*name {
                "id_token" => &mut form.id_token,
                "state" => &mut form.state,
                "error" => &mut form.error,
                "error_description" => &mut form.error_description,
                _ => continue,
            };
            lti::login::set_once(slot, &name, value)
                .map_err(|e| bad(format!("Failed to deserialize form body: {e}")))?;
        }
        Ok(form)
    }
}

/// `POST /lti/launch`.
pub async fn launch(
    State(app): State<App>,
    headers: HeaderMap,
    form: Result<LaunchForm, LaunchFailure>,
) -> Result<Response, LaunchFailure> {
    // Boxed: the launch's future is large, and each layer of the router around the handler
    // moves it again when it wraps it.
    Box::pin(finish_launch(app, headers, form, None)).await
}

/// `POST /lti/launch/{registration}`: the same, for logins begun at `/lti/login/{registration}`;
/// the login state must belong to that registration.
pub async fn launch_for(
    State(app): State<App>,
    Path(registration): Path<String>,
    headers: HeaderMap,
    form: Result<LaunchForm, LaunchFailure>,
) -> Result<Response, LaunchFailure> {
    let id: PlatformId = registration
        .parse()
        .map_err(|_| LaunchFailure::UnknownRegistration)?;
    Box::pin(finish_launch(app, headers, form, Some(id))).await
}

async fn finish_launch(
    app: App,
    headers: HeaderMap,
    form: Result<LaunchForm, LaunchFailure>,
    expected_registration: Option<PlatformId>,
) -> Result<Response, LaunchFailure> {
    let form = form?;
    if let Some(error) = &form.error {
        return Err(LaunchFailure::PlatformError(format!(
            "{error}: {}",
            form.error_description.as_deref().unwrap_or("")
        )));
    }
    let state = required(&form.state, "state")?;
    let id_token = required(&form.id_token, "id_token")?;
    let state_hash = sha256_hex(state.as_bytes());
    let login = login_state::open(&app.inner().master, state).ok_or(LaunchFailure::StateUnknown)?;
    if expected_registration.is_some_and(|id| id != login.platform_id) {
        return Err(LaunchFailure::UnknownRegistration);
    }
    let cookie_name = format!("{STATE_COOKIE_PREFIX}{}", &state_hash[..16]);
    // Bound by our cookie, or, where the browser blocked it, by the secret the login put in
    // the platform's storage (checked in the browser before the handoff opens).
    let storage_binding = match cookie_value(&headers, &cookie_name) {
        Some(v) if constant_time_eq(v.as_bytes(), state_hash.as_bytes()) => None,
        _ => match (&login.storage_target, &login.storage_secret) {
            (Some(target), Some(secret)) => Some((target.clone(), secret.clone())),
            _ => return Err(LaunchFailure::StateNotBound),
        },
    };
    // The sub-futures that can reach the database or the network are boxed: held inline,
    // the largest of them sets the size of this future, which is copied whenever it moves.
    let resolved = Box::pin(app.inner().registrations.by_id(login.platform_id))
        .await
        .map_err(|e| LaunchFailure::Internal(e.into()))?
        .ok_or(LaunchFailure::UnknownRegistration)?;
    let registration = &resolved.registration;
    let platform = &registration.platform;
    if !platform.enabled {
        return Err(LaunchFailure::RegistrationDisabled);
    }
    let now = now_micros() / 1_000_000;
    let claims = Box::pin(app.inner().validator.validate(
        id_token,
        &LaunchExpectations {
            issuer: &platform.issuer,
            client_id: &platform.client_id,
            jwks_url: &platform.jwks_url,
            nonce: &login.nonce,
            target_link_uri: &login.target_link_uri,
            now,
        },
    ))
    .await
    .map_err(LaunchFailure::Token)?;
    if claims.target_link_uri.as_deref() != Some(login.target_link_uri.as_str()) {
        return Err(LaunchFailure::Token(
            lti::LaunchError::TargetLinkUriMismatch,
        ));
    }

    let lti1p1 = match &claims.lti1p1 {
        Some(_) => Box::pin(lti1p1_mapping(&app, registration, &claims)).await?,
        None => None,
    };
    let code = random_token(32);
    let settings = app.settings();
    let skew = settings.clock_skew_secs;
    let roles = lti_roles(&claims.roles);
    let launch = NewLaunch {
        platform_id: platform.id,
        deployment_id: claims.deployment_id.clone(),
        nonce: claims.nonce.clone(),
        // Kept at least as long as the token could still be presented.
        nonce_expires_at: (claims.exp.max(now) + 2 * skew) * 1_000_000,
        message_type: claims.message_type.clone(),
        person: claims.sub.as_ref().map(|sub| LaunchPerson {
            platform_user_id: sub.clone(),
            name: claims.name.clone(),
            given_name: claims.given_name.clone(),
            family_name: claims.family_name.clone(),
            email: claims.email.clone(),
        }),
        roles: roles.clone(),
        context: claims.context.as_ref().map(|c| LaunchContext {
            platform_context_id: c.id.clone(),
            title: c.title.clone(),
            label: c.label.clone(),
            lineitems_url: claims.ags.as_ref().and_then(|a| a.lineitems.clone()),
            memberships_url: claims
                .nrps
                .as_ref()
                .map(|n| n.context_memberships_url.clone()),
        }),
        resource: claims
            .resource_link
            .as_ref()
            .map(|r| (r.id.clone(), r.title.clone())),
        line_item: claims
            .ags
            .as_ref()
            .and_then(|a| a.lineitem.clone())
            .map(|url| {
                (
                    url,
                    claims.resource_link.as_ref().and_then(|r| r.title.clone()),
                )
            }),
        extras: serde_json::json!({
            "custom": claims.custom,
            "launch_presentation": claims.launch_presentation,
            "tool_platform": claims.tool_platform,
            "platform_kind": platform.kind,
            "issuer": platform.issuer,
            "is_test_user": claims.is_test_user(),
            "lis": claims.lis,
            "deep_linking_settings": claims.deep_linking_settings,
            "for_user": claims.for_user,
            "lti1p1": lti1p1,
            "vendor": claims.vendor_claims().map(|(k, v)| (k.clone(), v.clone())).collect::<serde_json::Map<_, _>>(),
        }),
        handoff_code_hash: sha256_hex(code.as_bytes()),
        handoff_expires_at: now_micros() + settings.handoff_ttl_secs * 1_000_000,
    };
    let recorded = match app
        .inner()
        .launches
        .record(registration.scope.clone(), launch)
        .await
    {
        Ok(r) => r,
        Err(RecordError::Refused(LaunchRefusal::UnknownDeployment))
            if platform.accept_new_deployments =>
        {
            // Canvas creates a deployment per install: keep it for an admin to approve.
            if Box::pin(
                app.store()
                    .tenant(&registration.scope)
                    .note_pending_deployment(platform, &claims.deployment_id),
            )
            .await
            .map_err(|e| LaunchFailure::Internal(e.into()))?
            {
                tracing::warn!(platform = %platform.id, deployment = %claims.deployment_id, "new deployment recorded as pending approval");
            }
            return Err(LaunchFailure::DeploymentPending);
        }
        Err(RecordError::Refused(LaunchRefusal::UnknownDeployment)) => {
            return Err(LaunchFailure::Token(lti::LaunchError::UnknownDeployment));
        }
        Err(RecordError::Refused(LaunchRefusal::NonceReplayed)) => {
            return Err(LaunchFailure::NonceReplayed);
        }
        Err(RecordError::Failed) => {
            return Err(LaunchFailure::Internal(anyhow::anyhow!(
                "the launch could not be recorded"
            )));
        }
    };
    tracing::info!(
        launch = %recorded.launch_id,
        platform = %platform.id,
        tenant = %registration.scope.tenant_id(),
        "launch accepted"
    );
    let clear = format!(
        "{cookie_name}=; Path={}; Max-Age=0; HttpOnly",
        app.inner().launch_url.path()
    );
    // Deep Linking 2.0: the teacher picks from the tenant's catalog on lmsbridge's own page.
    if claims.message() == Some(lti::claims::MessageType::LtiDeepLinkingRequest) {
        let mut resp = super::deep_linking::open_picker(
            &app,
            registration,
            &claims,
            &recorded,
            storage_binding,
            &state_hash,
        )?;
        if let Ok(v) = HeaderValue::from_str(&clear) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
        return Ok(resp);
    }
    let mut resp = match (resolved.launch_url.clone(), storage_binding) {
        (Some(mut product), binding) => {
            product.query_pairs_mut().append_pair("code", &code);
            match binding {
                None => Redirect::to(product.as_str()).into_response(),
                Some((target, secret)) => storage::get_page(
                    &storage::seal(&secret, &product).map_err(LaunchFailure::Internal)?,
                    &storage::platform_origin(&platform.auth_url),
                    &target,
                    &storage::storage_key(&state_hash),
                ),
            }
        }
        // The summary page is a diagnostic that shows only this launch's own data.
        (None, _) => summary_page(&recorded.summary),
    };
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// The LTI 1.1 ids of the migration claim, marked verified only when the platform signed
/// them with this registration's LTI 1.1 secret.
async fn lti1p1_mapping(
    app: &App,
    registration: &PlatformRegistration,
    claims: &lti::LaunchClaims,
) -> Result<Option<serde_json::Value>, LaunchFailure> {
    let Some(m) = &claims.lti1p1 else {
        return Ok(None);
    };
    let platform = &registration.platform;
    let credentials = app
        .store()
        .tenant(&registration.scope)
        .lti11_credentials(platform.id, &app.inner().master)
        .await
        .map_err(|e| LaunchFailure::Internal(e.into()))?;
    let verified = credentials.is_some_and(|(key, secret)| {
        lti::migration::check(claims, &platform.client_id, &key, &secret)
            == lti::migration::Lti1p1Check::Verified
    });
    Ok(Some(serde_json::json!({
        "user_id": m.user_id, "context_id": m.context_id, "resource_link_id": m.resource_link_id,
        "tool_consumer_instance_guid": m.tool_consumer_instance_guid, "oauth_consumer_key": m.oauth_consumer_key,
        "verified": verified,
    })))
}

/// lmsbridge's own launch page for tenants without a product URL: the normalised launch,
/// for admins checking a registration.
fn summary_page(summary: &serde_json::Value) -> Response {
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "—".into(),
        other => other.to_string(),
    };
    let mut body = Markup::element("h1", "Launch received");
    body.push(Markup::raw("<p class=\"note\">lmsbridge verified this launch. Set a launch URL on the tenant to hand launches to your product.</p><dl>"));
    body.push(Markup::row("Platform", &s(&summary["extras"]["issuer"])));
    body.push(Markup::row(
        "Platform kind",
        &s(&summary["extras"]["platform_kind"]),
    ));
    body.push(Markup::row("Message", &s(&summary["message_type"])));
    body.push(Markup::row(
        "User id",
        &s(&summary["person"]["platform_user_id"]),
    ));
    body.push(Markup::row("Name", &s(&summary["person"]["name"])));
    body.push(Markup::row("Roles", &s(&summary["roles"])));
    body.push(Markup::row("Course", &s(&summary["context"]["title"])));
    body.push(Markup::row("Resource", &s(&summary["resource"]["title"])));
    body.push(Markup::row("Launch id", &s(&summary["launch_id"])));
    let migration = &summary["extras"]["lti1p1"];
    if !migration.is_null() {
        let verified = if migration["verified"] == true {
            "verified"
        } else {
            "not verified"
        };
        body.push(Markup::row(
            "LTI 1.1 user id",
            &format!("{} ({verified})", s(&migration["user_id"])),
        ));
    }
    body.push(Markup::raw("</dl>"));
    page(StatusCode::OK, "Launch received", body)
}
