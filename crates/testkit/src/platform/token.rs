//! The OAuth 2 token endpoint with JWT client assertions (Security Framework §4.1, RFC 7523,
//! RFC 6749 §4.4), and the bearer check every service endpoint runs (RFC 6750).

use super::respond::{Params, Refusal, media_type};
use super::stats::RejectReason;
use super::{IssuedToken, SimulatedLms, now, random_secret};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lti::claims::Audience;
use lti::{ags, nrps};
use serde::Deserialize;

/// The scopes this platform can grant.
const GRANTABLE: &[&str] = &[
    ags::SCOPE_LINEITEM,
    ags::SCOPE_LINEITEM_READONLY,
    ags::SCOPE_RESULT_READONLY,
    ags::SCOPE_SCORE,
    nrps::SCOPE_MEMBERSHIP_READONLY,
];

/// Clock difference tolerated on an assertion's `iat` and `nbf`.
const SKEW_SECONDS: i64 = 60;

/// The claims of a client assertion, all optional so that each missing one gets its own
/// answer instead of a parse error.
#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    iat: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
}

/// `POST /token`.
pub(super) async fn token(
    State(lms): State<SimulatedLms>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lms.count(|s| s.token_requests += 1);
    let result = lms.grant(&headers, &body).await;
    lms.answer(result)
}

/// An OAuth 2 error answer (RFC 6749 §5.2): 400, JSON, never cached.
fn oauth_error(reason: RejectReason, code: &str, description: &str) -> Refusal {
    Refusal::json(reason, StatusCode::BAD_REQUEST, code, description)
        .header(header::CACHE_CONTROL, "no-store")
}

fn invalid_client(reason: RejectReason, description: &str) -> Refusal {
    oauth_error(reason, "invalid_client", description)
}

/// SHA-256 of a bearer token: the form in which issued tokens are stored and looked up.
fn token_hash(token: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

impl SimulatedLms {
    async fn grant(&self, headers: &HeaderMap, body: &[u8]) -> Result<Response, Refusal> {
        // RFC 6749 §4.4.2: the request is form-encoded. Moodle refuses anything else.
        if media_type(headers).as_deref() != Some("application/x-www-form-urlencoded") {
            return Err(oauth_error(
                RejectReason::TokenContentType,
                "invalid_request",
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let p = Params::parse(body);
        if let Some(name) = p.repeated(&[
            "grant_type",
            "client_assertion_type",
            "client_assertion",
            "scope",
        ]) {
            return Err(oauth_error(
                RejectReason::DuplicateParameter,
                "invalid_request",
                &format!("{name} was sent more than once"),
            ));
        }
        if p.get("grant_type") != Some("client_credentials") {
            return Err(oauth_error(
                RejectReason::GrantType,
                "unsupported_grant_type",
                "grant_type must be client_credentials",
            ));
        }
        let (Some(assertion_type), Some(assertion)) =
            (p.get("client_assertion_type"), p.get("client_assertion"))
        else {
            return Err(oauth_error(
                RejectReason::AssertionMissing,
                "invalid_request",
                "client_assertion_type and client_assertion are required",
            ));
        };
        // RFC 7523 §2.2: the assertion type names a JWT bearer assertion.
        if assertion_type != lti::token::ASSERTION_TYPE {
            return Err(invalid_client(
                RejectReason::AssertionType,
                "client_assertion_type is not urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
        }
        self.verify_assertion(assertion).await?;
        let mut granted: Vec<&str> = Vec::new();
        for scope in p.get("scope").unwrap_or_default().split_whitespace() {
            if GRANTABLE.contains(&scope) && !granted.contains(&scope) {
                granted.push(scope);
            }
        }
        // Moodle answers a request for nothing it can grant this way; Canvas similarly.
        if granted.is_empty() {
            return Err(oauth_error(
                RejectReason::NoScopeGranted,
                "invalid_scope",
                "none of the requested scopes can be granted to this tool",
            ));
        }
        let ttl = self.inner.config.token_ttl;
        let access_token = random_secret();
        {
            let now = now();
            let mut state = self.state();
            // Expired tokens are kept a while so a late caller hears "expired", not "unknown".
            state
                .tokens
                .retain(|_, t| t.expires_at + time::Duration::hours(1) > now);
            state.tokens.insert(
                token_hash(&access_token),
                IssuedToken {
                    scopes: granted.iter().map(|s| (*s).to_owned()).collect(),
                    expires_at: now + ttl,
                    generation: self.faults().token_generation(),
                },
            );
        }
        self.count(|s| s.tokens_issued += 1);
        let body = serde_json::json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ttl.as_secs(),
            "scope": granted.join(" "),
        });
        // RFC 6749 §5.1: responses carrying tokens must not be cached.
        Ok((
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::PRAGMA, "no-cache"),
            ],
            axum::Json(body),
        )
            .into_response())
    }

    /// Verifies a client assertion against the tool's published keys (RFC 7523 §3).
    async fn verify_assertion(&self, assertion: &str) -> Result<(), Refusal> {
        let tool = &self.current_tool();
        let header = lti::jwt::inspect_header(assertion).map_err(|_| {
            invalid_client(
                RejectReason::AssertionMalformed,
                "client_assertion is not a compact JWS",
            )
        })?;
        // Security Framework §5.4: asymmetric signatures only; RS256 is the one every
        // platform supports.
        if header.alg != "RS256" {
            return Err(invalid_client(
                RejectReason::AssertionMalformed,
                "client_assertion must be signed with RS256",
            ));
        }
        let Some(kid) = header.kid else {
            return Err(invalid_client(
                RejectReason::AssertionKey,
                "client_assertion has no kid",
            ));
        };
        let jwk = self
            .inner
            .tool_keys
            .key(&tool.jwks_url, &kid)
            .await
            .map_err(|e| invalid_client(RejectReason::AssertionKey, &e.to_string()))?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| {
            invalid_client(
                RejectReason::AssertionKey,
                "the tool's key for this kid is not an RSA key",
            )
        })?;
        let mut validation = Validation::new(Algorithm::RS256);
        // Each claim is checked below with its own answer.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => invalid_client(
                    RejectReason::AssertionSignature,
                    "client_assertion signature does not verify",
                ),
                _ => invalid_client(
                    RejectReason::AssertionMalformed,
                    "client_assertion claims are malformed",
                ),
            })?
            .claims;
        // RFC 7523 §3 item 1-2: the client authenticates as itself.
        if claims.iss.as_deref() != Some(tool.client_id.as_str())
            || claims.sub.as_deref() != Some(tool.client_id.as_str())
        {
            return Err(invalid_client(
                RejectReason::AssertionIssuer,
                "iss and sub must both be the client_id",
            ));
        }
        // Item 3: the token endpoint is the audience.
        if !claims
            .aud
            .as_ref()
            .is_some_and(|aud| aud.contains(self.token_url().as_str()))
        {
            return Err(invalid_client(
                RejectReason::AssertionAudience,
                "aud must be the token endpoint URL",
            ));
        }
        let now = now().unix_timestamp();
        // Item 4: not expired.
        let Some(exp) = claims.exp else {
            return Err(invalid_client(
                RejectReason::AssertionMalformed,
                "exp is required",
            ));
        };
        if exp <= now {
            return Err(invalid_client(
                RejectReason::AssertionExpired,
                "client_assertion has expired",
            ));
        }
        // Items 5-6, and Security Framework §4.1.1 which requires iat.
        let Some(iat) = claims.iat else {
            return Err(invalid_client(
                RejectReason::AssertionMalformed,
                "iat is required",
            ));
        };
        if iat > now + SKEW_SECONDS || claims.nbf.is_some_and(|nbf| nbf > now + SKEW_SECONDS) {
            return Err(invalid_client(
                RejectReason::AssertionIssuedInFuture,
                "client_assertion is not valid yet",
            ));
        }
        // Item 7: a jti is used once; it is remembered until the assertion expires.
        let Some(jti) = claims.jti.filter(|j| !j.is_empty()) else {
            return Err(invalid_client(
                RejectReason::AssertionMalformed,
                "jti is required",
            ));
        };
        let mut state = self.state();
        state.used_jtis.retain(|_, until| *until > now);
        if state.used_jtis.contains_key(&jti) {
            return Err(invalid_client(
                RejectReason::AssertionReplayed,
                "this client_assertion jti was already used",
            ));
        }
        state.used_jtis.insert(jti, exp);
        Ok(())
    }

    /// Checks the bearer token of a service call: known, unexpired, and granted one of
    /// `any_of` (RFC 6750 §3.1).
    pub(super) fn authorize(&self, headers: &HeaderMap, any_of: &[&str]) -> Result<(), Refusal> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty());
        let Some(bearer) = bearer else {
            return Err(Refusal::json(
                RejectReason::TokenMissing,
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "a bearer access token is required",
            )
            .header(header::WWW_AUTHENTICATE, "Bearer"));
        };
        let unauthorized = |reason, description: &str| {
            Refusal::json(
                reason,
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                description,
            )
            .header(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")
        };
        let issued = self.state().tokens.get(&token_hash(bearer)).cloned();
        let Some(issued) = issued else {
            return Err(unauthorized(
                RejectReason::TokenUnknown,
                "the access token is not known",
            ));
        };
        if issued.expires_at <= now() || issued.generation != self.faults().token_generation() {
            return Err(unauthorized(
                RejectReason::TokenExpired,
                "the access token has expired",
            ));
        }
        if !issued.scopes.iter().any(|s| any_of.contains(&s.as_str())) {
            let needed = any_of.join(" ");
            return Err(Refusal::json(
                RejectReason::InsufficientScope,
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("the access token needs one of the scopes: {needed}"),
            )
            .header(
                header::WWW_AUTHENTICATE,
                &format!("Bearer error=\"insufficient_scope\", scope=\"{needed}\""),
            ));
        }
        Ok(())
    }
}
