//! Connecting a teacher's Google account: `GET /google/oauth/start?link=…` and
//! `GET /google/oauth/callback` (OAuth 2.0 authorization code with PKCE S256, RFC 6749 §4.1
//! and RFC 7636; Google's web-server flow with `access_type=offline`,
//! `include_granted_scopes=true` and `prompt=consent` so a refresh token is issued).
//!
//! The start needs a connect link: a sealed, fifteen-minute token naming the tenant, its
//! Google platform and the features to ask scopes for, issued through the product API
//! (`POST /api/v1/google/connect-links`) or the CLI (`lmsbridge google connect-link`). The
//! `state` is stored by its hash with the sealed PKCE verifier and the hash of a random
//! secret put in an HttpOnly cookie, lives ten minutes and is taken once (any instance can
//! take it); the callback refuses a state whose cookie is not in the browser.

use super::html::{Markup, page};
use crate::App;
use crate::google::{ConnectLink, GoogleSetupError, scopes_for};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use classroom::oauth::AuthorizationRequest;
use classroom::{CsrfState, OAuthClient, OAuthError, PkceVerifier};
use domain::Actor;
use store::crypto::{constant_time_eq, random_token, sha256_hex};
use store::google::{GrantStatus, NewGoogleGrant, NewGoogleOAuthState, SecretString};
use store::now_micros;

const COOKIE: &str = "lmsbridge_google_oauth";
/// How long a browser has between the start and the callback.
const STATE_TTL_SECS: i64 = 600;

fn query_param(raw: Option<&str>, name: &str) -> Option<String> {
    let mut found = None;
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if k == name {
            if found.is_some() {
                return None;
            }
            found = Some(v.into_owned());
        }
    }
    found
}

fn refusal(status: StatusCode, title: &str, sentence: &str) -> Response {
    let mut body = Markup::element("h1", title);
    body.push(Markup::element("p", sentence));
    page(status, title, body)
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// `GET /google/oauth/start?link=…`: sends the browser to Google's consent screen.
pub async fn start(State(app): State<App>, RawQuery(raw): RawQuery) -> Response {
    let google = app.google();
    let Some(link) =
        query_param(raw.as_deref(), "link").and_then(|t| ConnectLink::open(&t, google.master()))
    else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "This link does not work",
            "The Google Classroom connect link is invalid or has expired (links last fifteen minutes). Ask for a new one.",
        );
    };
    let scope = match app.store().tenant_scope(link.tenant).await {
        Ok(s) => s,
        Err(_) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                "This link does not work",
                "The organisation this link was made for no longer exists.",
            );
        }
    };
    let tenant = app.store().tenant(&scope);
    let client = match google.client(&tenant, link.platform).await {
        Ok(c) => c,
        Err(GoogleSetupError::NotConfigured) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                "Google Classroom is not set up",
                "An administrator must configure the Google OAuth client first.",
            );
        }
        Err(GoogleSetupError::Store(e)) => return internal(&e),
    };
    let mut scopes = scopes_for(&link.features);
    // Rosters kept current by push need the teacher's consent to register for changes.
    if app.settings().google_pubsub_topic.is_some()
        && link.features.contains(&crate::google::Feature::Roster)
    {
        scopes.extend_from_slice(classroom::scopes::PUSH);
    }
    let mut request = AuthorizationRequest::new(&scopes).require_refresh_token();
    if let Some(hint) = &link.login_hint {
        request = request.login_hint(hint);
    }
    let pending = client.tokens().oauth().authorization_url(&request);
    let browser = random_token(32);
    let stored = tenant
        .put_google_oauth_state(
            &NewGoogleOAuthState {
                platform_id: link.platform,
                state: SecretString::new(pending.state.secret()),
                browser_secret: SecretString::new(browser.as_str()),
                verifier: SecretString::new(pending.verifier.secret()),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                login_hint: link.login_hint.clone(),
                expires_at: now_micros() + STATE_TTL_SECS * 1_000_000,
            },
            google.master(),
        )
        .await;
    if let Err(e) = stored {
        return internal(&e);
    }
    let secure = if app.settings().public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    // Lax: Google's redirect back is a top-level GET, which carries Lax cookies.
    let cookie = format!(
        "{COOKIE}={browser}; Path=/google/oauth; HttpOnly; SameSite=Lax; Max-Age={STATE_TTL_SECS}{secure}"
    );
    let mut resp = StatusCode::FOUND.into_response();
    let headers = resp.headers_mut();
    if let (Ok(location), Ok(cookie)) = (
        HeaderValue::from_str(pending.url.as_str()),
        HeaderValue::from_str(&cookie),
    ) {
        headers.insert(header::LOCATION, location);
        headers.insert(header::SET_COOKIE, cookie);
    }
    resp
}

fn internal(e: &dyn std::fmt::Display) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    tracing::error!(correlation_id = %id, error = %e, "Google Classroom connect failed");
    let mut body = Markup::element("h1", "Something went wrong");
    body.push(Markup::element("p", &format!("Reference: {id}")));
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        body,
    )
}

fn oauth_refusal(e: &OAuthError) -> Response {
    let sentence = match e {
        OAuthError::ConsentDenied => {
            "You did not give consent, so Google Classroom was not connected. Start again to connect."
                .to_owned()
        }
        OAuthError::AdminPolicyEnforced => e.to_string(),
        OAuthError::InvalidClient { .. } => {
            "Google refused lmsbridge's OAuth client; an administrator must check its client id and secret."
                .to_owned()
        }
        other if other.is_retryable() => {
            "Google could not be reached just now. Start again in a minute.".to_owned()
        }
        _ => "Google refused the sign-in. Start again.".to_owned(),
    };
    tracing::info!(error = %e, "Google Classroom connect refused");
    refusal(
        StatusCode::BAD_REQUEST,
        "Google Classroom was not connected",
        &sentence,
    )
}

/// `GET /google/oauth/callback`: Google's redirect after consent.
pub async fn callback(
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let google = app.google();
    let Some(state) = query_param(raw.as_deref(), "state") else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "Google Classroom was not connected",
            "This answer from Google does not belong to a sign-in started here.",
        );
    };
    let taken = match app
        .store()
        .take_google_oauth_state(&state, google.master())
        .await
    {
        Ok(t) => t,
        Err(e) => return internal(&e),
    };
    let Some((scope, pending)) = taken else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "Google Classroom was not connected",
            "This sign-in has expired or was already used. Start again from a new link.",
        );
    };
    let browser_ok = cookie_value(&headers).is_some_and(|v| {
        constant_time_eq(
            sha256_hex(v.as_bytes()).as_bytes(),
            pending.browser_hash.as_bytes(),
        )
    });
    if !browser_ok {
        return refusal(
            StatusCode::BAD_REQUEST,
            "Google Classroom was not connected",
            "This sign-in was started in another browser. Start again in this one.",
        );
    }
    let tenant = app.store().tenant(&scope);
    let client = match google.client(&tenant, pending.platform_id).await {
        Ok(c) => c,
        Err(e) => return internal(&e),
    };
    let mut redirect = google.redirect_uri().clone();
    redirect.set_query(raw.as_deref());
    let callback = match OAuthClient::parse_callback(&redirect, &CsrfState::new(state)) {
        Ok(c) => c,
        Err(e) => return oauth_refusal(&e),
    };
    let oauth = client.tokens().oauth();
    let grant = match oauth
        .exchange_code(
            &callback.code,
            &PkceVerifier::new(pending.verifier.secret()),
        )
        .await
    {
        Ok(g) => g,
        Err(e) => return oauth_refusal(&e),
    };
    let info = match oauth.userinfo(&grant.access_token).await {
        Ok(i) => i,
        Err(e) => return oauth_refusal(&e),
    };
    let wanted: Vec<&str> = pending.scopes.iter().map(String::as_str).collect();
    let missing = grant.scopes.missing(&wanted);
    let saved = tenant
        .save_google_grant(
            pending.platform_id,
            &NewGoogleGrant {
                google_sub: info.sub.as_str().to_owned(),
                email: info.email.clone(),
                name: info.name.clone(),
                given_name: info.given_name.clone(),
                family_name: info.family_name.clone(),
                scopes: grant.scopes.iter().map(str::to_owned).collect(),
                refresh_token: grant
                    .refresh_token
                    .as_ref()
                    .map(|t| SecretString::new(t.secret())),
            },
            google.master(),
            &Actor::system("google-connect"),
        )
        .await;
    let saved = match saved {
        Ok(g) => g,
        Err(e) => return internal(&e),
    };
    let who = info
        .email
        .clone()
        .unwrap_or_else(|| info.sub.as_str().to_owned());
    let mut body;
    let status;
    if saved.status == GrantStatus::Revoked {
        status = StatusCode::BAD_REQUEST;
        body = Markup::element("h1", "Google Classroom was not connected");
        body.push(Markup::element(
            "p",
            "Google did not grant offline access, so grades could not be sent while you are away. \
             Remove this app's access in your Google Account (Security, Third-party access) and connect again.",
        ));
    } else {
        status = StatusCode::OK;
        body = Markup::element("h1", "Google Classroom connected");
        body.push(Markup::element(
            "p",
            &format!("{who} is connected. You can close this page."),
        ));
        if !missing.is_empty() {
            body.push(Markup::element(
                "p",
                &format!(
                    "Some access was not granted, so the features that need it will not work: {}",
                    missing.join(", ")
                ),
            ));
        }
    }
    let mut resp = page(status, "Google Classroom", body);
    if let Ok(clear) = HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/google/oauth; HttpOnly; SameSite=Lax; Max-Age=0"
    )) {
        resp.headers_mut().insert(header::SET_COOKIE, clear);
    }
    resp
}
