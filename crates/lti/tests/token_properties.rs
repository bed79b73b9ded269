//! Properties of the token parser and validator: it never panics on any input, and it never
//! accepts a token it cannot verify.

use base64::Engine;
use lti::jwks::{JwksCache, JwksCachePolicy};
use lti::jwt::inspect_header;
use lti::{LaunchExpectations, LaunchValidator, ToolKey};
use proptest::prelude::*;
use std::sync::OnceLock;
use url::Url;

const ISS: &str = "https://lms.example";
const TARGET: &str = "https://tool.example/lti/launch";

fn key() -> &'static ToolKey {
    static KEY: OnceLock<ToolKey> = OnceLock::new();
    KEY.get_or_init(|| ToolKey::generate("k").unwrap())
}

fn validator() -> &'static LaunchValidator {
    static V: OnceLock<LaunchValidator> = OnceLock::new();
    V.get_or_init(|| {
        LaunchValidator::new(
            JwksCache::new(reqwest::Client::new(), JwksCachePolicy::default()),
            60,
        )
    })
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn valid_claims() -> serde_json::Value {
    let now = now();
    serde_json::json!({
        "iss": ISS, "aud": "client", "sub": "u", "exp": now + 300, "iat": now, "nonce": "n",
        "https://purl.imsglobal.org/spec/lti/claim/message_type": "LtiResourceLinkRequest",
        "https://purl.imsglobal.org/spec/lti/claim/version": "1.3.0",
        "https://purl.imsglobal.org/spec/lti/claim/deployment_id": "d",
        "https://purl.imsglobal.org/spec/lti/claim/target_link_uri": TARGET,
        "https://purl.imsglobal.org/spec/lti/claim/resource_link": {"id": "r"},
        "https://purl.imsglobal.org/spec/lti/claim/roles": [],
    })
}

fn check(token: &str) -> Result<lti::LaunchClaims, lti::LaunchError> {
    let jwks = Url::parse("http://127.0.0.1:9/jwks").unwrap();
    validator().validate_with_key(
        token,
        key().public_jwk(),
        &LaunchExpectations {
            issuer: ISS,
            client_id: "client",
            jwks_url: &jwks,
            nonce: "n",
            target_link_uri: TARGET,
            now: now(),
        },
    )
}

#[test]
fn the_untouched_token_is_accepted() {
    let token = key().sign(&valid_claims()).unwrap();
    assert!(check(&token).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn header_inspection_never_panics(s in ".{0,300}") {
        let _ = inspect_header(&s);
    }

    #[test]
    fn arbitrary_compact_tokens_never_panic_and_are_refused(
        h in proptest::collection::vec(any::<u8>(), 0..80),
        p in proptest::collection::vec(any::<u8>(), 0..200),
        sig in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let b = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = format!("{}.{}.{}", b(&h), b(&p), b(&sig));
        prop_assert!(check(&token).is_err());
    }

    #[test]
    fn any_single_byte_change_is_refused(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        static TOKEN: OnceLock<String> = OnceLock::new();
        let token = TOKEN.get_or_init(|| key().sign(&valid_claims()).unwrap()).clone();
        let mut bytes = token.clone().into_bytes();
        let i = pos.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let Ok(mutated) = String::from_utf8(bytes) else { return Ok(()); };
        // Base64url has a few encodings of the same final bits; only a token that decodes to
        // the very same bytes may pass.
        let same = {
            let parts = |t: &str| -> Option<Vec<Vec<u8>>> {
                t.split('.').map(|s| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()).collect()
            };
            parts(&mutated).is_some() && parts(&mutated) == parts(&token)
        };
        if !same {
            prop_assert!(check(&mutated).is_err(), "a changed token was accepted");
        }
    }

    #[test]
    fn signed_arbitrary_claims_never_panic_and_pass_only_when_every_check_holds(
        iss in prop_oneof![Just(ISS.to_owned()), ".{0,20}"],
        aud in prop_oneof![Just(serde_json::json!("client")), Just(serde_json::json!(["client", "x"])), Just(serde_json::json!(7)), Just(serde_json::json!(null))],
        exp_offset in -1000i64..1000,
        version in prop_oneof![Just("1.3.0".to_owned()), ".{0,6}"],
        drop in proptest::option::of(0usize..11),
    ) {
        let mut claims = valid_claims();
        claims["iss"] = iss.clone().into();
        claims["aud"] = aud.clone();
        claims["exp"] = (now() + exp_offset).into();
        claims["https://purl.imsglobal.org/spec/lti/claim/version"] = version.clone().into();
        if let Some(i) = drop {
            let k = claims.as_object().unwrap().keys().nth(i).cloned().unwrap();
            claims.as_object_mut().unwrap().remove(&k);
        }
        let token = key().sign(&claims).unwrap();
        if let Ok(c) = check(&token) {
            prop_assert_eq!(c.iss, ISS);
            prop_assert!(c.aud.contains("client"));
            prop_assert!(c.aud.len() == 1, "several audiences need azp");
            prop_assert!(c.exp + 60 >= now());
            prop_assert_eq!(c.version, "1.3.0");
            prop_assert!(drop.is_none() || c.sub.is_none(), "only the optional sub may be missing");
        }
    }
}
