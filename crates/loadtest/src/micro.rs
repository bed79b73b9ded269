//! Single-core costs of the cryptography and validation in a launch, measured in-process
//! with the same libraries lmsbridge uses: the platform's RS256 signature, lmsbridge's
//! signature check as `lti::launch` does it (a `DecodingKey` built from the JWK on every
//! launch), the same check with a key built once, and the whole `LaunchValidator::validate`.

use crate::platform::{self, Population, Registration};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lti::{LaunchExpectations, LaunchValidator};
use serde::Serialize;
use std::time::Instant;
use url::Url;

/// Microseconds per operation.
#[derive(Debug, Clone, Serialize)]
pub struct MicroResult {
    pub name: &'static str,
    pub iterations: usize,
    pub micros_per_op: f64,
}

fn time<F: FnMut()>(iterations: usize, mut f: F) -> f64 {
    // A few untimed rounds first: caches, lazy statics, the JWKS fetch.
    for _ in 0..iterations.min(20) {
        f();
    }
    let started = Instant::now();
    for _ in 0..iterations {
        f();
    }
    started.elapsed().as_secs_f64() * 1e6 / iterations as f64
}

fn decode_with(key: &DecodingKey, token: &str) -> bool {
    let mut v = Validation::new(Algorithm::RS256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    jsonwebtoken::decode::<serde_json::Value>(token, key, &v).is_ok()
}

/// Runs every measurement on the calling thread (one core).
pub fn run(iterations: usize) -> anyhow::Result<Vec<MicroResult>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let key = platform::load_or_create_key(None)?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    rt.block_on(platform::serve_jwks(listener, &key));
    let reg = Registration {
        issuer: format!("http://{addr}"),
        client_id: "bench".into(),
        deployment_id: "d1".into(),
    };
    let jwks_url = Url::parse(&format!("http://{addr}/jwks"))?;
    let target = "http://127.0.0.1:1/lti/launch";
    let user = Population {
        users: 1,
        contexts: 1,
    }
    .user(0);
    let claims = platform::launch_claims(&reg, &user, "nonce-1", target, platform::now_secs());
    let token = key.sign(&claims)?;

    let mut out = Vec::new();
    let mut push = |name, micros_per_op| {
        out.push(MicroResult {
            name,
            iterations,
            micros_per_op,
        })
    };

    push(
        "platform: RS256 sign of one id_token (ToolKey::sign)",
        time(iterations, || {
            let _ = key.sign(&claims);
        }),
    );
    let jwk = key.public_jwk().clone();
    push(
        "tool: DecodingKey::from_jwk + RS256 verify + JSON decode (as lti::launch does per launch)",
        time(iterations, || {
            let k = DecodingKey::from_jwk(&jwk).expect("public JWK");
            assert!(decode_with(&k, &token));
        }),
    );
    let prebuilt = DecodingKey::from_jwk(&jwk)?;
    push(
        "tool: RS256 verify + JSON decode with a DecodingKey built once",
        time(iterations, || assert!(decode_with(&prebuilt, &token))),
    );

    let http = reqwest::Client::builder().no_proxy().build()?;
    let validator = LaunchValidator::new(
        lti::jwks::JwksCache::new(http, lti::jwks::JwksCachePolicy::default()),
        60,
    );
    let expect = |now| LaunchExpectations {
        issuer: &reg.issuer,
        client_id: &reg.client_id,
        jwks_url: &jwks_url,
        nonce: "nonce-1",
        target_link_uri: target,
        now,
    };
    rt.block_on(async {
        validator
            .validate(&token, &expect(platform::now_secs()))
            .await
    })?;
    let now = platform::now_secs();
    push(
        "tool: lti::LaunchValidator::validate, JWKS cached (all id_token checks)",
        time(iterations, || {
            rt.block_on(validator.validate(&token, &expect(now)))
                .expect("valid token");
        }),
    );
    // The JWKS server lives on this runtime: keep it until the measurements are done.
    drop(rt);
    Ok(out)
}
