//! The LTI 1.1 → 1.3 migration claim (1EdTech "LTI 1.1 to 1.3 migration": the `lti1p1`
//! claim). A platform that knows the tool's old LTI 1.1 consumer secret signs the claim so
//! the tool can trust the LTI 1.1 ids in it and map users and resources it already has.

use crate::claims::LaunchClaims;
use aws_lc_rs::hmac;
use base64::Engine;

/// How the migration claim of a launch checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lti1p1Check {
    /// No `lti1p1` claim, or no signature in it.
    Absent,
    /// Signed with the secret of the expected consumer key.
    Verified,
    /// Signed, but not by that secret or not for that consumer key.
    Invalid,
}

/// The string the platform signs: `oauth_consumer_key & deployment_id & iss & client_id & exp & nonce`.
fn base_string(claims: &LaunchClaims, consumer_key: &str, client_id: &str) -> String {
    [
        consumer_key,
        &claims.deployment_id,
        &claims.iss,
        client_id,
        &claims.exp.to_string(),
        &claims.nonce,
    ]
    .join("&")
}

/// Checks `oauth_consumer_key_sign` against the tenant's LTI 1.1 consumer key and secret.
pub fn check(
    claims: &LaunchClaims,
    client_id: &str,
    consumer_key: &str,
    secret: &str,
) -> Lti1p1Check {
    let Some(m) = &claims.lti1p1 else {
        return Lti1p1Check::Absent;
    };
    let (Some(key), Some(sign)) = (&m.oauth_consumer_key, &m.oauth_consumer_key_sign) else {
        return Lti1p1Check::Absent;
    };
    if key != consumer_key {
        return Lti1p1Check::Invalid;
    }
    let Ok(presented) = base64::engine::general_purpose::STANDARD.decode(sign.trim()) else {
        return Lti1p1Check::Invalid;
    };
    let k = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    match hmac::verify(
        &k,
        base_string(claims, consumer_key, client_id).as_bytes(),
        &presented,
    ) {
        Ok(()) => Lti1p1Check::Verified,
        Err(_) => Lti1p1Check::Invalid,
    }
}

/// Signs a claim as a platform does (for simulators and tests).
pub fn sign(claims: &LaunchClaims, client_id: &str, consumer_key: &str, secret: &str) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&k, base_string(claims, consumer_key, client_id).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Lti1p1Claim;

    fn claims() -> LaunchClaims {
        let mut c: LaunchClaims = serde_json::from_value(serde_json::json!({
            "iss": "https://lms.example", "aud": "client-1", "exp": 1_900_000_000, "iat": 1_899_999_000,
            "nonce": "n-1",
            "https://purl.imsglobal.org/spec/lti/claim/message_type": "LtiResourceLinkRequest",
            "https://purl.imsglobal.org/spec/lti/claim/version": "1.3.0",
            "https://purl.imsglobal.org/spec/lti/claim/deployment_id": "dep-1",
        }))
        .unwrap();
        c.lti1p1 = Some(Lti1p1Claim {
            user_id: Some("old-user-42".into()),
            oauth_consumer_key: Some("consumer".into()),
            ..Default::default()
        });
        c
    }

    #[test]
    fn a_signature_by_the_old_secret_verifies_and_nothing_else_does() {
        let mut c = claims();
        assert_eq!(
            check(&c, "client-1", "consumer", "s3cret"),
            Lti1p1Check::Absent
        );
        let sig = sign(&c, "client-1", "consumer", "s3cret");
        c.lti1p1.as_mut().unwrap().oauth_consumer_key_sign = Some(sig);
        assert_eq!(
            check(&c, "client-1", "consumer", "s3cret"),
            Lti1p1Check::Verified
        );
        assert_eq!(
            check(&c, "client-1", "consumer", "other"),
            Lti1p1Check::Invalid
        );
        assert_eq!(
            check(&c, "client-1", "another-key", "s3cret"),
            Lti1p1Check::Invalid
        );
        assert_eq!(
            check(&c, "client-2", "consumer", "s3cret"),
            Lti1p1Check::Invalid
        );
        c.nonce = "n-2".into();
        assert_eq!(
            check(&c, "client-1", "consumer", "s3cret"),
            Lti1p1Check::Invalid,
            "bound to this launch"
        );
        c.lti1p1.as_mut().unwrap().oauth_consumer_key_sign = Some("not base64!".into());
        assert_eq!(
            check(&c, "client-1", "consumer", "s3cret"),
            Lti1p1Check::Invalid
        );
    }

    #[test]
    fn the_base_string_follows_the_migration_guide() {
        let c = claims();
        assert_eq!(
            base_string(&c, "consumer", "client-1"),
            "consumer&dep-1&https://lms.example&client-1&1900000000&n-1"
        );
    }
}
