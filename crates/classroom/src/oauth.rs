//! Google OAuth 2.0 for web server applications (RFC 6749 §4.1 authorization code grant,
//! RFC 7636 PKCE with S256, RFC 6749 §6 refresh, RFC 7009 revocation, OpenID Connect
//! UserInfo), as Google's "Using OAuth 2.0 for Web Server Applications" guide profiles it:
//! `access_type=offline` for a refresh token, `include_granted_scopes=true` for incremental
//! authorization, `prompt=consent` to be issued a new refresh token, `login_hint`.
//!
//! Every endpoint is configuration ([`GoogleEndpoints`]) so that tests point it at a fake.

use crate::error::{clean, parse_retry_after, transport_detail};
use crate::ids::{ClientId, UserId};
use crate::secret::{
    AccessToken, AuthorizationCode, ClientSecret, CsrfState, PkceVerifier, RefreshToken,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use url::Url;

/// Google's endpoints. [`GoogleEndpoints::google`] gives the production ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleEndpoints {
    pub authorization: Url,
    pub token: Url,
    pub revocation: Url,
    pub userinfo: Url,
    /// The Classroom API root; method paths (`v1/courses`) are joined onto it.
    pub api_base: Url,
}

impl GoogleEndpoints {
    /// The production endpoints (Google's OpenID discovery document and the Classroom
    /// discovery document's `rootUrl`).
    pub fn google() -> Self {
        let parse = |s: &str| Url::parse(s).expect("constant URL parses");
        Self {
            authorization: parse("https://accounts.google.com/o/oauth2/v2/auth"),
            token: parse("https://oauth2.googleapis.com/token"),
            revocation: parse("https://oauth2.googleapis.com/revoke"),
            userinfo: parse("https://openidconnect.googleapis.com/v1/userinfo"),
            api_base: parse("https://classroom.googleapis.com/"),
        }
    }
}

/// Our OAuth client as registered in the Google Cloud project.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    pub client_id: ClientId,
    pub client_secret: ClientSecret,
    /// The redirect URI registered for the client; sent on the authorization request and
    /// again, identical, on the code exchange.
    pub redirect_uri: Url,
    pub endpoints: GoogleEndpoints,
}

/// The scopes Google granted, from a token answer's `scope` or the consent redirect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantedScopes(BTreeSet<String>);

impl GrantedScopes {
    /// Parses a space-separated scope list (RFC 6749 §3.3).
    pub fn parse(scope: &str) -> Self {
        Self(scope.split_whitespace().map(str::to_owned).collect())
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    /// Those of `wanted` that were not granted: with granular consent a user may untick
    /// some of the scopes asked for.
    pub fn missing<'a>(&self, wanted: &[&'a str]) -> Vec<&'a str> {
        wanted
            .iter()
            .copied()
            .filter(|s| !self.contains(s))
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What to ask the user to consent to.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest<'a> {
    scopes: &'a [&'a str],
    login_hint: Option<&'a str>,
    offline: bool,
    force_consent: bool,
}

impl<'a> AuthorizationRequest<'a> {
    /// Offline access to `scopes`, added to what the user granted before.
    pub fn new(scopes: &'a [&'a str]) -> Self {
        Self {
            scopes,
            login_hint: None,
            offline: true,
            force_consent: false,
        }
    }

    /// The account to sign in with (email or `sub`): the add-on iframes' `login_hint`, or
    /// the teacher who connected before.
    pub fn login_hint(mut self, hint: &'a str) -> Self {
        self.login_hint = Some(hint);
        self
    }

    /// `prompt=consent`: Google issues a refresh token only at first consent, so when we
    /// hold none for this account (lost, revoked) the consent screen must be shown again.
    pub fn require_refresh_token(mut self) -> Self {
        self.offline = true;
        self.force_consent = true;
        self
    }

    /// `access_type=online`: no refresh token, for a signed-in teacher's short session.
    pub fn online(mut self) -> Self {
        self.offline = false;
        self.force_consent = false;
        self
    }
}

/// An authorization request on its way: the URL to send the browser to, and the state and
/// verifier the caller keeps (sealed, server side) until the redirect comes back.
#[derive(Debug)]
pub struct PendingAuthorization {
    pub url: Url,
    pub state: CsrfState,
    pub verifier: PkceVerifier,
}

/// The consent redirect's answer.
#[derive(Debug)]
pub struct AuthorizationCallback {
    pub code: AuthorizationCode,
    /// The `scope` Google lists in the redirect, when it does.
    pub scopes: Option<GrantedScopes>,
}

/// A token answer (RFC 6749 §5.1).
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub access_token: AccessToken,
    pub expires_in: Duration,
    /// Present after a first consent with `access_type=offline`, or with `prompt=consent`.
    pub refresh_token: Option<RefreshToken>,
    pub scopes: GrantedScopes,
}

/// The signed-in account (OpenID Connect Core §5.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    pub sub: UserId,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<bool>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    /// The Google Workspace domain of the account; absent for consumer accounts.
    #[serde(default)]
    pub hd: Option<String>,
}

/// What a revocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    Revoked,
    /// Google did not know the token: it was revoked or expired already.
    AlreadyInvalid,
}

/// Why an OAuth step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// `invalid_grant` on refresh: the teacher or an admin revoked access, the token expired
    /// (unused for six months, or a test-mode project's seven days), or the password changed.
    #[error(
        "Google no longer accepts this Classroom connection (the refresh token was revoked or expired); \
         the teacher must connect Google Classroom again ({description})"
    )]
    Revoked { description: String },
    /// `invalid_grant` on the code exchange: the code was used or expired, or the PKCE
    /// verifier or redirect URI does not match the authorization request.
    #[error("Google refused the authorization code ({description})")]
    CodeRejected { description: String },
    /// `invalid_client`: the client id or secret is wrong or the client was deleted.
    #[error(
        "Google refused our OAuth client credentials; check the client id and secret ({description})"
    )]
    InvalidClient { description: String },
    /// The consent redirect carried `error=access_denied`.
    #[error("the user did not give consent")]
    ConsentDenied,
    /// The consent redirect carried `error=admin_policy_enforced`.
    #[error(
        "the school's Google Workspace administrator has not allowed this app; an admin must \
         allow it in the Admin console (Security, API controls)"
    )]
    AdminPolicyEnforced,
    /// The redirect's `state` is missing or not ours: a forged or replayed redirect.
    #[error("the authorization response does not belong to this request")]
    StateMismatch,
    /// The redirect carried neither a code nor an error.
    #[error("the authorization response carries no code")]
    MissingCode,
    /// Another `error` on the consent redirect.
    #[error("Google refused the authorization ({error})")]
    AuthorizationFailed { error: String },
    /// Another OAuth error from the token or revocation endpoint.
    #[error("Google refused the token request (HTTP {http_status}, {error}): {description}")]
    Refused {
        http_status: u16,
        error: String,
        description: String,
    },
    #[error("Google's token endpoint is rate limiting us")]
    RateLimited { retry_after: Option<Duration> },
    #[error("Google's token endpoint failed (HTTP {http_status})")]
    Transient {
        http_status: u16,
        retry_after: Option<Duration>,
    },
    #[error("Google could not be reached: {detail}")]
    Transport { detail: String },
    #[error("Google's answer is unusable: {0}")]
    InvalidResponse(&'static str),
}

impl OAuthError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Transient { .. } | Self::Transport { .. }
        )
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } | Self::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn transport(e: &reqwest::Error) -> Self {
        Self::Transport {
            detail: transport_detail(e).to_owned(),
        }
    }
}

/// The OAuth client. Cheap to clone.
#[derive(Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
    config: Arc<OAuthConfig>,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Which request a token answer belongs to; `invalid_grant` means different things.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grant {
    Code,
    Refresh,
}

/// Largest token or userinfo answer read; both are well under a kilobyte.
const BODY_LIMIT: usize = 64 * 1024;

impl OAuthClient {
    pub fn new(http: reqwest::Client, config: OAuthConfig) -> Self {
        Self {
            http,
            config: Arc::new(config),
        }
    }

    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// Builds the authorization URL with a fresh `state` and PKCE verifier (RFC 7636 §4.1-4.3,
    /// S256 only: `plain` would hand the verifier to anyone who sees the URL).
    pub fn authorization_url(&self, request: &AuthorizationRequest<'_>) -> PendingAuthorization {
        let state = CsrfState::new(random_urlsafe());
        let verifier = PkceVerifier::new(random_urlsafe());
        let mut url = self.config.endpoints.authorization.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", self.config.client_id.as_str())
                .append_pair("redirect_uri", self.config.redirect_uri.as_str())
                .append_pair("response_type", "code")
                .append_pair("scope", &request.scopes.join(" "))
                .append_pair("state", state.secret())
                .append_pair("code_challenge", &pkce_challenge(&verifier))
                .append_pair("code_challenge_method", "S256")
                .append_pair(
                    "access_type",
                    if request.offline { "offline" } else { "online" },
                )
                .append_pair("include_granted_scopes", "true");
            if request.force_consent {
                q.append_pair("prompt", "consent");
            }
            if let Some(hint) = request.login_hint {
                q.append_pair("login_hint", hint);
            }
        }
        PendingAuthorization {
            url,
            state,
            verifier,
        }
    }

    /// Reads the consent redirect (RFC 6749 §4.1.2). The `state` is checked first, in
    /// constant time, so that a forged redirect cannot even make us report its error.
    pub fn parse_callback(
        redirect: &Url,
        expected_state: &CsrfState,
    ) -> Result<AuthorizationCallback, OAuthError> {
        let mut state = None;
        let mut code = None;
        let mut error = None;
        let mut scope = None;
        for (k, v) in redirect.query_pairs() {
            let slot = match k.as_ref() {
                "state" => &mut state,
                "code" => &mut code,
                "error" => &mut error,
                "scope" => &mut scope,
                _ => continue,
            };
            // A parameter sent twice is ambiguous; refuse rather than pick one.
            if slot.replace(v.into_owned()).is_some() {
                return Err(OAuthError::StateMismatch);
            }
        }
        let state_ok = state.as_deref().is_some_and(|s| {
            aws_lc_rs::constant_time::verify_slices_are_equal(
                s.as_bytes(),
                expected_state.secret().as_bytes(),
            )
            .is_ok()
        });
        if !state_ok {
            return Err(OAuthError::StateMismatch);
        }
        if let Some(error) = error {
            return Err(match error.as_str() {
                "access_denied" => OAuthError::ConsentDenied,
                "admin_policy_enforced" => OAuthError::AdminPolicyEnforced,
                other => OAuthError::AuthorizationFailed {
                    error: clean(other, 64),
                },
            });
        }
        let code = code
            .filter(|c| !c.is_empty())
            .ok_or(OAuthError::MissingCode)?;
        Ok(AuthorizationCallback {
            code: AuthorizationCode::new(code),
            scopes: scope.map(|s| GrantedScopes::parse(&s)),
        })
    }

    /// Exchanges the code for tokens (RFC 6749 §4.1.3 with RFC 7636 §4.5).
    pub async fn exchange_code(
        &self,
        code: &AuthorizationCode,
        verifier: &PkceVerifier,
    ) -> Result<TokenGrant, OAuthError> {
        self.token_request(
            Grant::Code,
            &[
                ("grant_type", "authorization_code"),
                ("code", code.secret()),
                ("code_verifier", verifier.secret()),
                ("redirect_uri", self.config.redirect_uri.as_str()),
            ],
        )
        .await
    }

    /// A new access token for a refresh token (RFC 6749 §6).
    pub async fn refresh(&self, refresh_token: &RefreshToken) -> Result<TokenGrant, OAuthError> {
        self.token_request(
            Grant::Refresh,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.secret()),
            ],
        )
        .await
    }

    /// Revokes a refresh token, and with it the whole grant (RFC 7009 §2.1).
    pub async fn revoke(&self, token: &RefreshToken) -> Result<Revocation, OAuthError> {
        self.revoke_secret(token.secret()).await
    }

    /// Revokes an access token; Google revokes the grant it came from as well.
    pub async fn revoke_access_token(&self, token: &AccessToken) -> Result<Revocation, OAuthError> {
        self.revoke_secret(token.secret()).await
    }

    async fn revoke_secret(&self, token: &str) -> Result<Revocation, OAuthError> {
        let resp = self
            .http
            .post(self.config.endpoints.revocation.clone())
            .form(&[("token", token)])
            .send()
            .await
            .map_err(|e| OAuthError::transport(&e))?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(Revocation::Revoked);
        }
        let headers = resp.headers().clone();
        let body = read_limited(resp).await?;
        let err = classify_token_error(Grant::Refresh, status, &headers, &body);
        // RFC 7009 §2.2: an unknown token is not an error for the client; the outcome it
        // wanted holds.
        match err {
            OAuthError::Refused { ref error, .. } if error == "invalid_token" => {
                Ok(Revocation::AlreadyInvalid)
            }
            OAuthError::Revoked { .. } => Ok(Revocation::AlreadyInvalid),
            other => Err(other),
        }
    }

    /// The signed-in account, for a token granted `openid` (and `email`, `profile`).
    pub async fn userinfo(&self, token: &AccessToken) -> Result<UserInfo, OAuthError> {
        let resp = self
            .http
            .get(self.config.endpoints.userinfo.clone())
            .bearer_auth(token.secret())
            .send()
            .await
            .map_err(|e| OAuthError::transport(&e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = read_limited(resp).await?;
        if !(200..300).contains(&status) {
            return Err(classify_token_error(Grant::Code, status, &headers, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|_| OAuthError::InvalidResponse("the userinfo answer has no usable sub"))
    }

    async fn token_request(
        &self,
        grant: Grant,
        params: &[(&str, &str)],
    ) -> Result<TokenGrant, OAuthError> {
        let mut form: Vec<(&str, &str)> = vec![
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", self.config.client_secret.secret()),
        ];
        form.extend_from_slice(params);
        let resp = self
            .http
            .post(self.config.endpoints.token.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| OAuthError::transport(&e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = read_limited(resp).await?;
        if !(200..300).contains(&status) {
            return Err(classify_token_error(grant, status, &headers, &body));
        }
        let body: TokenBody = serde_json::from_slice(&body)
            .map_err(|_| OAuthError::InvalidResponse("the token answer is not a token response"))?;
        if body.access_token.is_empty()
            || body
                .token_type
                .as_deref()
                .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(OAuthError::InvalidResponse(
                "the token answer carries no bearer token",
            ));
        }
        Ok(TokenGrant {
            access_token: AccessToken::new(body.access_token),
            expires_in: Duration::from_secs(body.expires_in.unwrap_or(3600).max(1)),
            refresh_token: body
                .refresh_token
                .filter(|t| !t.is_empty())
                .map(RefreshToken::new),
            scopes: GrantedScopes::parse(body.scope.as_deref().unwrap_or_default()),
        })
    }
}

/// Classifies a token, revocation or userinfo endpoint error (RFC 6749 §5.2).
fn classify_token_error(
    grant: Grant,
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
) -> OAuthError {
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    if status == 429 {
        return OAuthError::RateLimited { retry_after };
    }
    if status >= 500 {
        return OAuthError::Transient {
            http_status: status,
            retry_after,
        };
    }
    let Ok(parsed) = serde_json::from_slice::<OAuthErrorBody>(body) else {
        return OAuthError::Refused {
            http_status: status,
            error: "unreadable".into(),
            description: clean(&String::from_utf8_lossy(body), 200),
        };
    };
    let description = clean(parsed.error_description.as_deref().unwrap_or_default(), 200);
    match (parsed.error.as_str(), grant) {
        ("invalid_grant", Grant::Refresh) => OAuthError::Revoked { description },
        ("invalid_grant", Grant::Code) => OAuthError::CodeRejected { description },
        ("invalid_client" | "unauthorized_client", _) => OAuthError::InvalidClient { description },
        (error, _) => OAuthError::Refused {
            http_status: status,
            error: clean(error, 64),
            description,
        },
    }
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, OAuthError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| OAuthError::transport(&e))? {
        if body.len() + chunk.len() > BODY_LIMIT {
            return Err(OAuthError::InvalidResponse("the answer is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// 256 random bits, base64url without padding: 43 characters, inside RFC 7636's 43-128 for
/// a verifier and plenty for a state.
fn random_urlsafe() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// `BASE64URL(SHA256(ASCII(code_verifier)))` (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &PkceVerifier) -> String {
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.secret().as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn client() -> OAuthClient {
        let mut endpoints = GoogleEndpoints::google();
        endpoints.authorization =
            Url::parse("https://accounts.example/auth?hd=school.example").unwrap();
        OAuthClient::new(
            reqwest::Client::new(),
            OAuthConfig {
                client_id: ClientId::new("123.apps.googleusercontent.com"),
                client_secret: ClientSecret::new("GOCSPX-secret"),
                redirect_uri: Url::parse("https://lmsbridge.example/google/callback").unwrap(),
                endpoints,
            },
        )
    }

    #[test]
    fn rfc7636_appendix_b_challenge() {
        let v = PkceVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert_eq!(
            pkce_challenge(&v),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn authorization_url_carries_every_parameter() {
        let c = client();
        let scopes = ["openid", crate::scopes::COURSES_READONLY];
        let p = c.authorization_url(
            &AuthorizationRequest::new(&scopes)
                .login_hint("ada@school.example")
                .require_refresh_token(),
        );
        let q: HashMap<_, _> = p.url.query_pairs().into_owned().collect();
        assert_eq!(q["hd"], "school.example", "existing query kept");
        assert_eq!(q["client_id"], "123.apps.googleusercontent.com");
        assert_eq!(
            q["redirect_uri"],
            "https://lmsbridge.example/google/callback"
        );
        assert_eq!(q["response_type"], "code");
        assert_eq!(
            q["scope"],
            format!("openid {}", crate::scopes::COURSES_READONLY)
        );
        assert_eq!(q["state"], p.state.secret());
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], pkce_challenge(&p.verifier));
        assert_ne!(q["code_challenge"], p.verifier.secret());
        assert_eq!(q["access_type"], "offline");
        assert_eq!(q["include_granted_scopes"], "true");
        assert_eq!(q["prompt"], "consent");
        assert_eq!(q["login_hint"], "ada@school.example");
        assert!(!q.contains_key("client_secret"));
        let online = c.authorization_url(&AuthorizationRequest::new(&scopes).online());
        let q: HashMap<_, _> = online.url.query_pairs().into_owned().collect();
        assert_eq!(q["access_type"], "online");
        assert!(!q.contains_key("prompt") && !q.contains_key("login_hint"));
        assert_ne!(online.state, p.state);
    }

    #[test]
    fn callback_checks_state_before_anything_else() {
        let state = CsrfState::new("s-123");
        let url = |q: &str| Url::parse(&format!("https://lmsbridge.example/cb?{q}")).unwrap();
        let ok = OAuthClient::parse_callback(
            &url("code=4/abc&state=s-123&scope=openid%20email"),
            &state,
        )
        .unwrap();
        assert_eq!(ok.code.secret(), "4/abc");
        assert!(ok.scopes.unwrap().contains("email"));
        for q in [
            "code=4/abc&state=s-124",
            "code=4/abc",
            "error=access_denied&state=other",
            "code=4/abc&state=s-123&state=s-123",
        ] {
            assert_eq!(
                OAuthClient::parse_callback(&url(q), &state).unwrap_err(),
                OAuthError::StateMismatch,
                "{q}"
            );
        }
        assert_eq!(
            OAuthClient::parse_callback(&url("error=access_denied&state=s-123"), &state)
                .unwrap_err(),
            OAuthError::ConsentDenied
        );
        assert_eq!(
            OAuthClient::parse_callback(&url("error=admin_policy_enforced&state=s-123"), &state)
                .unwrap_err(),
            OAuthError::AdminPolicyEnforced
        );
        assert_eq!(
            OAuthClient::parse_callback(&url("state=s-123"), &state).unwrap_err(),
            OAuthError::MissingCode
        );
    }

    #[test]
    fn invalid_grant_means_revoked_only_on_refresh() {
        let h = http::HeaderMap::new();
        let body = br#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#;
        assert!(matches!(
            classify_token_error(Grant::Refresh, 400, &h, body),
            OAuthError::Revoked { .. }
        ));
        assert!(matches!(
            classify_token_error(Grant::Code, 400, &h, body),
            OAuthError::CodeRejected { .. }
        ));
        assert!(matches!(
            classify_token_error(Grant::Refresh, 401, &h, br#"{"error":"invalid_client"}"#),
            OAuthError::InvalidClient { .. }
        ));
        assert!(classify_token_error(Grant::Refresh, 503, &h, b"").is_retryable());
    }

    #[test]
    fn granted_scopes() {
        let g = GrantedScopes::parse("openid  email\thttps://x/y");
        assert!(g.contains("https://x/y"));
        assert_eq!(g.missing(&["openid", "profile"]), vec!["profile"]);
    }
}
