//! Google's OAuth 2.0 endpoints for web server apps: the authorization endpoint (which
//! consents at once as the signed-in user), the token endpoint (authorization code with
//! PKCE, RFC 6749 §4.1.3 and RFC 7636 §4.6; refresh, §6), revocation (RFC 7009) and
//! OpenID Connect userinfo. Refusals use Google's error codes and status codes.

use super::{
    AuthorizationRecord, Consent, GrantRec, IssuedAccess, IssuedCode, SimulatedClassroom, State,
    constant_time_eq, data, hash, now, random_urlsafe,
};
use crate::html::escape;
use axum::body::Bytes;
use axum::extract::{RawQuery, State as AxState};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, StatusCode, header};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use url::Url;

/// Codes live ten minutes, as Google's do.
const CODE_TTL_MINUTES: i64 = 10;

fn params(raw: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(raw) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(k.into_owned());
        }
    }
    Ok(out)
}

/// Google's consent-flow error page (it does not redirect when the client or redirect URI
/// cannot be trusted).
fn error_page(code: &str, detail: &str) -> Response {
    let body = format!(
        "<!doctype html><title>Access blocked</title><h1>Access blocked: this app's request is invalid</h1>\
         <p>Error 400: {}</p><p>{}</p>",
        escape(code),
        escape(detail)
    );
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn redirect(to: &Url) -> Response {
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, to.as_str()),
            (header::CACHE_CONTROL, "no-store"),
        ],
    )
        .into_response()
}

/// `GET /o/oauth2/v2/auth`.
pub(super) async fn authorize(
    AxState(fake): AxState<SimulatedClassroom>,
    RawQuery(query): RawQuery,
) -> Response {
    let p = match params(query.unwrap_or_default().as_bytes()) {
        Ok(p) => p,
        Err(name) => return error_page("invalid_request", &format!("{name} was sent twice")),
    };
    let get = |k: &str| p.get(k).map(String::as_str);
    let mut state = fake.state();
    state.stats.authorizations += 1;
    let Some(client) = get("client_id")
        .and_then(|id| state.clients.iter().find(|c| c.client_id == id))
        .cloned()
    else {
        return error_page("invalid_client", "The OAuth client was not found.");
    };
    let Some(redirect_uri) = get("redirect_uri").and_then(|r| Url::parse(r).ok()) else {
        return error_page(
            "invalid_request",
            "Missing required parameter: redirect_uri",
        );
    };
    if !client.redirect_uris.contains(&redirect_uri) {
        return error_page(
            "redirect_uri_mismatch",
            "The redirect URI is not registered for this client.",
        );
    }
    let scopes: BTreeSet<String> = get("scope")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let sign_in = data::sign_in_scopes();
    if scopes.is_empty()
        || scopes
            .iter()
            .any(|s| !fake.discovery().scopes().contains(s) && !sign_in.contains(s.as_str()))
    {
        return error_page("invalid_scope", "Some requested scopes were invalid.");
    }
    let challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (None, None) => None,
        (Some(c), Some("S256")) => Some(("S256".to_owned(), c.to_owned())),
        (Some(c), None | Some("plain")) => Some(("plain".to_owned(), c.to_owned())),
        _ => return error_page("invalid_request", "Invalid code_challenge_method."),
    };
    let hint = get("login_hint");
    let user_id = hint
        .and_then(|h| fake.find_user(h))
        .map_or_else(|| state.signed_in.clone(), |u| u.id.clone());
    let offline = get("access_type") == Some("offline");
    let key = (client.client_id.clone(), user_id.clone());
    let first_consent = !state.consented.contains_key(&key);
    let refresh = offline && (first_consent || get("prompt") == Some("consent"));
    state.authorizations.push(AuthorizationRecord {
        client_id: client.client_id.clone(),
        user_id: Some(user_id.clone()),
        scopes: scopes.iter().cloned().collect(),
        access_type: get("access_type").map(str::to_owned),
        prompt: get("prompt").map(str::to_owned),
        include_granted_scopes: get("include_granted_scopes").map(str::to_owned),
        login_hint: hint.map(str::to_owned),
        code_challenge_method: challenge.as_ref().map(|(m, _)| m.clone()),
        refresh_token_promised: refresh,
    });
    let mut back = redirect_uri.clone();
    // RFC 6749 §4.1.2.1: errors after the redirect URI is trusted go back to the client.
    let error = if get("response_type") != Some("code") {
        Some("unsupported_response_type")
    } else {
        match &state.consent {
            Consent::Deny => Some("access_denied"),
            Consent::AdminBlocked => Some("admin_policy_enforced"),
            _ => None,
        }
    };
    if let Some(error) = error {
        {
            let mut q = back.query_pairs_mut();
            q.append_pair("error", error);
            if let Some(s) = get("state") {
                q.append_pair("state", s);
            }
        }
        return redirect(&back);
    }
    let mut granted = scopes;
    if let Consent::Withhold(withheld) = &state.consent {
        granted.retain(|s| !withheld.contains(s));
    }
    let previous = state.consented.get(&key).cloned().unwrap_or_default();
    if get("include_granted_scopes") == Some("true") {
        granted.extend(previous.iter().cloned());
    }
    state
        .consented
        .entry(key)
        .or_default()
        .extend(granted.iter().cloned());
    let code = format!("4/0{}", random_urlsafe());
    state.codes.insert(
        hash(&code),
        IssuedCode {
            client_id: client.client_id.clone(),
            user_id,
            redirect_uri: redirect_uri.to_string(),
            challenge,
            scopes: granted.clone(),
            refresh,
            expires_at: now() + time::Duration::minutes(CODE_TTL_MINUTES),
            used: false,
        },
    );
    {
        let mut q = back.query_pairs_mut();
        q.append_pair("code", &code)
            .append_pair("scope", &granted.into_iter().collect::<Vec<_>>().join(" "));
        if let Some(s) = get("state") {
            q.append_pair("state", s);
        }
    }
    redirect(&back)
}

/// An OAuth error answer as Google's token endpoint writes it.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// `POST /token`.
pub(super) async fn token(
    AxState(fake): AxState<SimulatedClassroom>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = fake.grant(&headers, &body);
    if answer.status() != StatusCode::OK {
        fake.state().stats.token_refusals += 1;
    }
    answer
}

impl SimulatedClassroom {
    fn grant(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        let form_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        if form_type.as_deref() != Some("application/x-www-form-urlencoded") {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Invalid content type.",
            );
        }
        let p = match params(body) {
            Ok(p) => p,
            Err(_) => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "A parameter was sent twice.",
                );
            }
        };
        let get = |k: &str| p.get(k).map(String::as_str);
        // Client authentication: in the body, or HTTP Basic (RFC 6749 §2.3.1).
        let basic = basic_credentials(headers);
        let (client_id, secret) = match (&basic, get("client_id"), get("client_secret")) {
            (Some((id, secret)), _, _) => (id.as_str(), Some(secret.as_str())),
            (None, Some(id), secret) => (id, secret),
            (None, None, _) => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Could not determine client ID from request.",
                );
            }
        };
        let mut state = self.state();
        let Some(client) = state
            .clients
            .iter()
            .find(|c| c.client_id == client_id)
            .cloned()
        else {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "The OAuth client was not found.",
            );
        };
        if !secret.is_some_and(|s| constant_time_eq(s.as_bytes(), client.client_secret.as_bytes()))
        {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
        }
        match get("grant_type") {
            Some("authorization_code") => {
                state.stats.code_exchanges += 1;
                self.exchange(&mut state, &client.client_id, &p)
            }
            Some("refresh_token") => {
                state.stats.refreshes += 1;
                let Some(refresh) = get("refresh_token") else {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "Missing required parameter: refresh_token",
                    );
                };
                let grant = state
                    .refresh_tokens
                    .get(&hash(refresh))
                    .copied()
                    .filter(|g| {
                        state
                            .grants
                            .get(g)
                            .is_some_and(|g| !g.revoked && g.client_id == client.client_id)
                    });
                match grant {
                    Some(g) => self.issue(&mut state, g, None),
                    None => oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Token has been expired or revoked.",
                    ),
                }
            }
            Some(_) => oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Invalid grant_type.",
            ),
            None => oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Missing grant_type.",
            ),
        }
    }

    fn exchange(
        &self,
        state: &mut State,
        client_id: &str,
        p: &BTreeMap<String, String>,
    ) -> Response {
        let get = |k: &str| p.get(k).map(String::as_str);
        let Some(code) = get("code") else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing required parameter: code",
            );
        };
        let bad = || oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
        let Some(issued) = state.codes.get_mut(&hash(code)) else {
            return bad();
        };
        // A code is spent by any attempt to redeem it: a stolen code gets one guess at the
        // verifier, not many.
        let already_used = std::mem::replace(&mut issued.used, true);
        if already_used || issued.client_id != client_id || issued.expires_at < now() {
            return bad();
        }
        if get("redirect_uri") != Some(issued.redirect_uri.as_str()) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "redirect_uri_mismatch",
                "Bad Request",
            );
        }
        if let Some((method, challenge)) = &issued.challenge {
            let Some(verifier) = get("code_verifier") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Missing code verifier.",
                );
            };
            // RFC 7636 §4.1: 43 to 128 unreserved characters.
            let well_formed = (43..=128).contains(&verifier.len())
                && verifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            let derived = match method.as_str() {
                "S256" => URL_SAFE_NO_PAD.encode(
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes())
                        .as_ref(),
                ),
                _ => verifier.to_owned(),
            };
            if !well_formed || !constant_time_eq(derived.as_bytes(), challenge.as_bytes()) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid code verifier.",
                );
            }
        }
        let (user_id, scopes, refresh) = (
            issued.user_id.clone(),
            issued.scopes.clone(),
            issued.refresh,
        );
        state.next_id += 1;
        let grant = state.next_id;
        state.grants.insert(
            grant,
            GrantRec {
                client_id: client_id.to_owned(),
                user_id,
                scopes,
                revoked: false,
            },
        );
        let refresh_token = refresh.then(|| {
            let t = format!("1//0{}", random_urlsafe());
            state.refresh_tokens.insert(hash(&t), grant);
            t
        });
        self.issue(state, grant, refresh_token)
    }

    fn issue(&self, state: &mut State, grant: u64, refresh_token: Option<String>) -> Response {
        let ttl = self.inner.config.access_token_ttl;
        let access = format!("ya29.{}", random_urlsafe());
        let now = now();
        state
            .access_tokens
            .retain(|_, t| t.expires_at + time::Duration::hours(1) > now);
        state.access_tokens.insert(
            hash(&access),
            IssuedAccess {
                grant,
                expires_at: now + ttl,
                generation: self.faults().token_generation(),
            },
        );
        let scope = state
            .grants
            .get(&grant)
            .map(|g| g.scopes.iter().cloned().collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        let mut body = json!({
            "access_token": access,
            "expires_in": ttl.as_secs(),
            "scope": scope,
            "token_type": "Bearer",
        });
        if let Some(r) = refresh_token {
            body["refresh_token"] = json!(r);
        }
        (
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::PRAGMA, "no-cache"),
            ],
            axum::Json(body),
        )
            .into_response()
    }

    /// The grant behind a bearer token that is known, unexpired, not revoked and of the
    /// current generation.
    pub(super) fn bearer_grant(&self, state: &State, headers: &HeaderMap) -> Option<u64> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())?;
        let issued = state.access_tokens.get(&hash(token))?;
        let grant = state.grants.get(&issued.grant)?;
        (issued.expires_at > now()
            && issued.generation == self.faults().token_generation()
            && !grant.revoked)
            .then_some(issued.grant)
    }

    /// (user id, client id, scopes) of a live grant.
    pub(super) fn grant_info(
        state: &State,
        grant: u64,
    ) -> Option<(String, String, BTreeSet<String>)> {
        state
            .grants
            .get(&grant)
            .map(|g| (g.user_id.clone(), g.client_id.clone(), g.scopes.clone()))
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// `POST /revoke` (RFC 7009): a refresh or access token; Google revokes the grant it
/// belongs to, so every token of that grant stops working.
pub(super) async fn revoke(
    AxState(fake): AxState<SimulatedClassroom>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let from_body = params(&body).ok().and_then(|p| p.get("token").cloned());
    let from_query = query
        .and_then(|q| params(q.as_bytes()).ok())
        .and_then(|p| p.get("token").cloned());
    let Some(token) = from_body.or(from_query) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: token",
        );
    };
    let mut state = fake.state();
    let h = hash(&token);
    let grant = state
        .refresh_tokens
        .get(&h)
        .copied()
        .or_else(|| state.access_tokens.get(&h).map(|a| a.grant));
    let Some(grant) = grant.filter(|g| state.grants.get(g).is_some_and(|g| !g.revoked)) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_token",
            "Token expired or revoked",
        );
    };
    state.stats.revocations += 1;
    let (client_id, user_id) = match state.grants.get(&grant) {
        Some(g) => (g.client_id.clone(), g.user_id.clone()),
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_token",
                "Token expired or revoked",
            );
        }
    };
    // Revoking removes the app's access for that user altogether: every grant, and the
    // consent (the next authorization is a first consent again).
    for g in state.grants.values_mut() {
        if g.client_id == client_id && g.user_id == user_id {
            g.revoked = true;
        }
    }
    state.consented.remove(&(client_id, user_id));
    (StatusCode::OK, axum::Json(json!({}))).into_response()
}

/// `GET /oauth2/v3/userinfo` (OpenID Connect Core §5.3).
pub(super) async fn userinfo(
    AxState(fake): AxState<SimulatedClassroom>,
    headers: HeaderMap,
) -> Response {
    let state = fake.state();
    let info = fake
        .bearer_grant(&state, &headers)
        .and_then(|g| SimulatedClassroom::grant_info(&state, g));
    let Some((user_id, _, scopes)) = info
        .filter(|(_, _, s)| s.contains("openid") || s.contains("email") || s.contains("profile"))
    else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
            axum::Json(
                json!({"error": "invalid_request", "error_description": "Invalid Credentials"}),
            ),
        )
            .into_response();
    };
    let Some(user) = fake.user(&user_id) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut body = json!({"sub": user.id, "hd": data::DOMAIN});
    if scopes.contains("email") {
        body["email"] = json!(user.email);
        body["email_verified"] = json!(true);
    }
    if scopes.contains("profile") {
        body["name"] = json!(user.full_name());
        body["given_name"] = json!(user.given_name);
        body["family_name"] = json!(user.family_name);
    }
    axum::Json(body).into_response()
}
