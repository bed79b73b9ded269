//! id_token validation for LTI 1.3 launches (Security Framework §5.1.3, LTI Core §5).
//!
//! Each check is its own step with its own error, so an admin can be told exactly which one
//! failed. The verifier is secure by default: RS256 only, `aud` must contain the client id,
//! the expected nonce is a required argument and the clock is handed in.

use crate::claims::{self, LaunchClaims, MessageType};
use crate::jwks::{JwksCache, JwksError};
use crate::jwt::{JwsShapeError, inspect_header};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use url::Url;

pub const LTI_VERSION: &str = "1.3.0";

/// Every way a launch can be refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    #[error("id_token is malformed: {0}")]
    TokenShape(#[from] JwsShapeError),
    #[error("id_token algorithm {0:?} is not allowed (RS256 only)")]
    AlgorithmNotAllowed(String),
    #[error("id_token header has no kid")]
    MissingKid,
    #[error("{0}")]
    Key(#[from] JwksError),
    #[error("the platform key for this kid is not an RS256 RSA key")]
    KeyNotUsable,
    #[error("id_token signature does not verify")]
    BadSignature,
    #[error("id_token payload is not valid JSON claims")]
    MalformedClaims,
    #[error("id_token is missing the required claim {0}")]
    MissingClaim(&'static str),
    #[error("id_token claim {0} has the wrong type")]
    InvalidClaim(&'static str),
    #[error("iss does not match the registered issuer")]
    WrongIssuer,
    #[error("aud does not contain this tool's client_id")]
    WrongAudience,
    #[error("aud has several audiences but no azp")]
    MissingAzp,
    #[error("azp is not this tool's client_id")]
    WrongAzp,
    #[error("id_token has expired")]
    Expired,
    #[error("id_token was issued in the future")]
    IssuedInFuture,
    #[error("id_token is not valid yet (nbf)")]
    NotYetValid,
    #[error("nonce does not match the login request")]
    NonceMismatch,
    #[error("LTI version {0:?} is not supported (1.3.0 only)")]
    WrongVersion(String),
    #[error("message type {0:?} is not supported")]
    UnsupportedMessageType(String),
    #[error("deployment_id is not registered for this platform")]
    UnknownDeployment,
    #[error("target_link_uri does not match the login request")]
    TargetLinkUriMismatch,
}

impl LaunchError {
    /// A stable, short machine name for logs, metrics and the admin view.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::TokenShape(_) => "token_malformed",
            Self::AlgorithmNotAllowed(_) => "alg_not_allowed",
            Self::MissingKid => "kid_missing",
            Self::Key(JwksError::UnknownKid(_)) => "kid_unknown",
            Self::Key(JwksError::Fetch(_)) => "jwks_unavailable",
            Self::KeyNotUsable => "key_not_usable",
            Self::BadSignature => "signature_invalid",
            Self::MalformedClaims => "claims_malformed",
            Self::MissingClaim(_) => "claim_missing",
            Self::InvalidClaim(_) => "claim_invalid",
            Self::WrongIssuer => "iss_mismatch",
            Self::WrongAudience => "aud_mismatch",
            Self::MissingAzp => "azp_missing",
            Self::WrongAzp => "azp_mismatch",
            Self::Expired => "token_expired",
            Self::IssuedInFuture => "iat_in_future",
            Self::NotYetValid => "nbf_in_future",
            Self::NonceMismatch => "nonce_mismatch",
            Self::WrongVersion(_) => "version_unsupported",
            Self::UnsupportedMessageType(_) => "message_type_unsupported",
            Self::UnknownDeployment => "deployment_unknown",
            Self::TargetLinkUriMismatch => "target_link_uri_mismatch",
        }
    }
}

/// What the launch must match, taken from the registration and the stored login state.
#[derive(Debug, Clone)]
pub struct LaunchExpectations<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub jwks_url: &'a Url,
    /// The nonce we put in the authentication request.
    pub nonce: &'a str,
    /// The `target_link_uri` of the login request this launch answers.
    pub target_link_uri: &'a str,
    /// Seconds since the epoch, from the caller's clock.
    pub now: i64,
}

/// Validates launch id_tokens. One per process; cheap to clone.
#[derive(Debug, Clone)]
pub struct LaunchValidator {
    keys: JwksCache,
    /// Allowed clock difference with the platform, in seconds.
    skew: i64,
    /// The message types this tool handles; anything else is refused.
    accepted: Vec<MessageType>,
}

impl LaunchValidator {
    pub fn new(keys: JwksCache, skew_seconds: i64) -> Self {
        Self {
            keys,
            skew: skew_seconds,
            accepted: MessageType::ALL.to_vec(),
        }
    }

    /// Restricts the message types accepted (all three by default).
    #[must_use]
    pub fn accepting(mut self, types: &[MessageType]) -> Self {
        self.accepted = types.to_vec();
        self
    }

    /// The key cache, shared with other users of platform keys.
    pub fn keys(&self) -> &JwksCache {
        &self.keys
    }

    /// Runs every check and returns the typed claims. Two checks need the caller's storage
    /// and are the caller's to make: the deployment is registered (`UnknownDeployment`) and
    /// the nonce has not been used before.
    pub async fn validate(
        &self,
        id_token: &str,
        expect: &LaunchExpectations<'_>,
    ) -> Result<LaunchClaims, LaunchError> {
        // Security Framework §5.1.3 step 1-2: only the configured asymmetric algorithm.
        let header = inspect_header(id_token)?;
        if header.alg != "RS256" {
            return Err(LaunchError::AlgorithmNotAllowed(header.alg));
        }
        let kid = header.kid.ok_or(LaunchError::MissingKid)?;
        // Boxed: the fetch it may make is a large future, which would otherwise make this one
        // large, and futures are copied when they move.
        let jwk = Box::pin(self.keys.key(expect.jwks_url, &kid)).await?;
        let payload = verify_signature(id_token, &jwk)?;
        check_claims(&payload, expect, self.skew, &self.accepted)
    }

    /// Every check but the key lookup, against a key the caller already holds.
    pub fn validate_with_key(
        &self,
        id_token: &str,
        jwk: &Jwk,
        expect: &LaunchExpectations<'_>,
    ) -> Result<LaunchClaims, LaunchError> {
        let header = inspect_header(id_token)?;
        if header.alg != "RS256" {
            return Err(LaunchError::AlgorithmNotAllowed(header.alg));
        }
        let payload = verify_signature(id_token, jwk)?;
        check_claims(&payload, expect, self.skew, &self.accepted)
    }
}

/// Verifies the RS256 signature with one platform key and returns the decoded payload.
///
/// The steps of `jsonwebtoken::decode` with its claim checks off (its header parsed and its
/// algorithm matched, the signature verified, the payload base64url-decoded), with the same
/// errors; but the payload is left to [`check_claims`] to decode once, where `decode` parsed
/// it twice and the claims were then converted again into their types.
fn verify_signature(token: &str, jwk: &Jwk) -> Result<Vec<u8>, LaunchError> {
    use base64::Engine;
    use jsonwebtoken::errors::ErrorKind;
    // A key marked for another algorithm, or not RSA, must not verify RS256 tokens.
    if !matches!(jwk.algorithm, AlgorithmParameters::RSA(_))
        || jwk
            .common
            .key_algorithm
            .is_some_and(|a| a != KeyAlgorithm::RS256)
    {
        return Err(LaunchError::KeyNotUsable);
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| LaunchError::KeyNotUsable)?;
    let refused = |e: jsonwebtoken::errors::Error| match e.kind() {
        ErrorKind::InvalidSignature => LaunchError::BadSignature,
        ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::Base64(_) => {
            LaunchError::MalformedClaims
        }
        _ => LaunchError::BadSignature,
    };
    let header = jsonwebtoken::decode_header(token).map_err(refused)?;
    if header.alg != Algorithm::RS256 {
        return Err(LaunchError::BadSignature);
    }
    let (message, signature) = token.rsplit_once('.').ok_or(LaunchError::BadSignature)?;
    let (_, payload) = message.rsplit_once('.').ok_or(LaunchError::BadSignature)?;
    if !jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, Algorithm::RS256)
        .map_err(refused)?
    {
        return Err(LaunchError::BadSignature);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| LaunchError::MalformedClaims)
}

/// Decodes the verified payload and runs the claim checks, each with its own error.
///
/// The payload is decoded straight into the typed claims. One that does not decode that way
/// is read again as plain JSON, so that it gets the error it always got: the message type
/// and the required claims are named before a claim of the wrong type is.
fn check_claims(
    payload: &[u8],
    expect: &LaunchExpectations<'_>,
    skew: i64,
    accepted: &[MessageType],
) -> Result<LaunchClaims, LaunchError> {
    let Ok(decoded) = serde_json::from_slice::<claims::Decoded>(payload) else {
        let payload: serde_json::Value =
            serde_json::from_slice(payload).map_err(|_| LaunchError::MalformedClaims)?;
        return check_json_claims(payload, expect, skew, accepted);
    };
    let message = accepted_message(&decoded.claims.message_type, accepted)?;
    // LTI Core §5.3, DL §4.4, Submission Review §3: what each message must carry.
    for (key, name) in message.required_claims() {
        if !decoded.has(key) {
            return Err(LaunchError::MissingClaim(name));
        }
    }
    check_typed_claims(decoded.claims, message, expect, skew)
}

fn accepted_message(
    message_type: &str,
    accepted: &[MessageType],
) -> Result<MessageType, LaunchError> {
    MessageType::parse(message_type)
        .filter(|m| accepted.contains(m))
        .ok_or_else(|| LaunchError::UnsupportedMessageType(message_type.chars().take(64).collect()))
}

/// The claim checks on a payload that did not decode as a launch's claims.
fn check_json_claims(
    payload: serde_json::Value,
    expect: &LaunchExpectations<'_>,
    skew: i64,
    accepted: &[MessageType],
) -> Result<LaunchClaims, LaunchError> {
    let obj = payload.as_object().ok_or(LaunchError::MalformedClaims)?;
    let message_type = obj
        .get(claims::CLAIM_MESSAGE_TYPE)
        .ok_or(LaunchError::MissingClaim("message_type"))?
        .as_str()
        .ok_or(LaunchError::InvalidClaim("message_type"))?;
    let message = accepted_message(message_type, accepted)?;
    for (key, name) in message.required_claims() {
        if obj.get(*key).is_none_or(serde_json::Value::is_null) {
            return Err(LaunchError::MissingClaim(name));
        }
    }
    let claims: LaunchClaims =
        serde_json::from_value(payload).map_err(|_| LaunchError::MalformedClaims)?;
    check_typed_claims(claims, message, expect, skew)
}

/// The checks on the typed claims of an accepted message type.
fn check_typed_claims(
    claims: LaunchClaims,
    message: MessageType,
    expect: &LaunchExpectations<'_>,
    skew: i64,
) -> Result<LaunchClaims, LaunchError> {
    // OIDC Core §3.1.3.7 step 2: iss exactly as registered.
    if claims.iss != expect.issuer {
        return Err(LaunchError::WrongIssuer);
    }
    // Step 3: aud contains our client_id.
    if !claims.aud.contains(expect.client_id) {
        return Err(LaunchError::WrongAudience);
    }
    // Steps 4-5: several audiences need azp, and azp must be us.
    match &claims.azp {
        Some(azp) if azp != expect.client_id => return Err(LaunchError::WrongAzp),
        None if claims.aud.len() > 1 => return Err(LaunchError::MissingAzp),
        _ => {}
    }
    // Steps 9-10: time window with the configured skew.
    if claims.exp + skew < expect.now {
        return Err(LaunchError::Expired);
    }
    if claims.iat - skew > expect.now {
        return Err(LaunchError::IssuedInFuture);
    }
    if claims.nbf.is_some_and(|nbf| nbf - skew > expect.now) {
        return Err(LaunchError::NotYetValid);
    }
    // Step 11: the nonce we sent. Single use is enforced by the caller's store.
    if !constant_time_eq(claims.nonce.as_bytes(), expect.nonce.as_bytes()) {
        return Err(LaunchError::NonceMismatch);
    }
    // LTI Core §5.3.2-5.3.3.
    if claims.version != LTI_VERSION {
        return Err(LaunchError::WrongVersion(claims.version));
    }
    if claims.deployment_id.is_empty() {
        return Err(LaunchError::MissingClaim("deployment_id"));
    }
    if claims.sub.as_deref() == Some("") {
        return Err(LaunchError::InvalidClaim("sub"));
    }
    match message {
        MessageType::LtiResourceLinkRequest | MessageType::LtiSubmissionReviewRequest => {
            if claims
                .resource_link
                .as_ref()
                .is_none_or(|r| r.id.is_empty())
            {
                return Err(LaunchError::MissingClaim("resource_link.id"));
            }
        }
        MessageType::LtiDeepLinkingRequest => {
            let settings = claims
                .deep_linking_settings
                .as_ref()
                .ok_or(LaunchError::MissingClaim("deep_linking_settings"))?;
            if Url::parse(&settings.deep_link_return_url).is_err() {
                return Err(LaunchError::InvalidClaim("deep_link_return_url"));
            }
        }
    }
    if message == MessageType::LtiSubmissionReviewRequest
        && claims
            .for_user
            .as_ref()
            .is_none_or(|u| u.user_id.is_empty())
    {
        return Err(LaunchError::MissingClaim("for_user.user_id"));
    }
    // LTI Core §5.1.3: the launch goes where the login said it would. Deep linking
    // requests may leave the claim out; when present it must match too.
    match (&claims.target_link_uri, message) {
        (Some(t), _) if t != expect.target_link_uri => {
            return Err(LaunchError::TargetLinkUriMismatch);
        }
        (None, MessageType::LtiDeepLinkingRequest) | (Some(_), _) => {}
        (None, _) => return Err(LaunchError::MissingClaim("target_link_uri")),
    }
    Ok(claims)
}

/// Compares secrets without leaking where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}
