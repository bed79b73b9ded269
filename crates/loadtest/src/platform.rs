//! The simulated LTI platform: its RS256 signing key, its JWKS endpoint (LTI Security
//! Framework §6.3, served on loopback by this process) and the id_tokens it issues
//! (LTI Core §5.3 resource link launch, with the AGS endpoint claim of AGS §3.1).

use anyhow::Context as _;
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use lti::ToolKey;
use lti::claims::{
    CLAIM_AGS, CLAIM_CONTEXT, CLAIM_DEPLOYMENT_ID, CLAIM_MESSAGE_TYPE, CLAIM_RESOURCE_LINK,
    CLAIM_ROLES, CLAIM_TARGET_LINK_URI, CLAIM_TOOL_PLATFORM, CLAIM_VERSION,
};
use serde_json::json;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use url::Url;

/// The `kid` of the platform key: fixed, so that a tool's cached JWKS stays valid from one
/// generator run to the next when the key is kept in a file.
pub const PLATFORM_KID: &str = "lmsbridge-loadtest-platform-1";

const ROLE_LEARNER: &str = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner";
const ROLE_INSTRUCTOR: &str = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor";

/// Loads the platform key from `path` (PKCS#8 DER) or generates one, writing it there when a
/// path is given.
pub fn load_or_create_key(path: Option<&Path>) -> anyhow::Result<ToolKey> {
    if let Some(p) = path
        && p.exists()
    {
        let der = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        return ToolKey::from_pkcs8_der(PLATFORM_KID, &der)
            .with_context(|| format!("{} is not a PKCS#8 RSA key", p.display()));
    }
    let key = ToolKey::generate(PLATFORM_KID).context("generating the platform key")?;
    if let Some(p) = path {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        std::fs::write(p, key.pkcs8_der()).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(key)
}

/// Serves `GET /jwks` (the platform's public key set, cacheable for an hour) until the
/// process ends. Only the JWKS is real: the generator answers the authentication request
/// itself, so the auth and token URLs are never fetched.
pub async fn serve_jwks(listener: tokio::net::TcpListener, key: &ToolKey) {
    let body = json!({ "keys": [key.public_jwk()] }).to_string();
    let router = Router::new().route(
        "/jwks",
        get(move || {
            let body = body.clone();
            async move {
                let mut resp = body.into_response();
                let h = resp.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                h.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                );
                resp
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
}

/// What the platform knows of the tool it launches.
#[derive(Debug, Clone)]
pub struct Registration {
    pub issuer: String,
    pub client_id: String,
    pub deployment_id: String,
}

/// The simulated users, courses and links: launch `i` belongs to user `i % users` in course
/// `i % contexts`, so upserts see a realistic mix of new and returning people.
#[derive(Debug, Clone, Copy)]
pub struct Population {
    pub users: usize,
    pub contexts: usize,
}

/// One simulated person launching one link.
#[derive(Debug, Clone)]
pub struct VirtualUser {
    pub sub: String,
    index: usize,
    context: usize,
    resource: usize,
    instructor: bool,
}

impl Population {
    pub fn user(&self, launch: usize) -> VirtualUser {
        let user = launch % self.users.max(1);
        let context = user % self.contexts.max(1);
        VirtualUser {
            sub: format!("bench-user-{user}"),
            index: user,
            context,
            resource: launch % 3,
            instructor: user.is_multiple_of(25),
        }
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The claims of a resource link launch answering a login that produced `nonce`.
pub fn launch_claims(
    reg: &Registration,
    user: &VirtualUser,
    nonce: &str,
    target_link_uri: &str,
    now: i64,
) -> serde_json::Value {
    let course = format!("bench-course-{}", user.context);
    let link = format!("{course}-link-{}", user.resource);
    let lineitems = format!("{}/api/lti/courses/{course}/line_items", reg.issuer);
    let role = if user.instructor {
        ROLE_INSTRUCTOR
    } else {
        ROLE_LEARNER
    };
    json!({
        "iss": reg.issuer,
        "aud": reg.client_id,
        "sub": user.sub,
        "exp": now + 600,
        "iat": now,
        "nonce": nonce,
        "name": format!("Bench User {}", user.index),
        "given_name": "Bench",
        "family_name": format!("User {}", user.index),
        "email": format!("{}@bench.invalid", user.sub),
        CLAIM_MESSAGE_TYPE: "LtiResourceLinkRequest",
        CLAIM_VERSION: "1.3.0",
        CLAIM_DEPLOYMENT_ID: reg.deployment_id,
        CLAIM_TARGET_LINK_URI: target_link_uri,
        CLAIM_RESOURCE_LINK: { "id": link, "title": format!("Quiz {}", user.resource) },
        CLAIM_ROLES: [role],
        CLAIM_CONTEXT: {
            "id": course,
            "label": format!("BENCH{}", user.context),
            "title": format!("Benchmark Course {}", user.context),
            "type": ["http://purl.imsglobal.org/vocab/lis/v2/course#CourseOffering"],
        },
        CLAIM_TOOL_PLATFORM: {
            "guid": "lmsbridge-loadtest",
            "name": "lmsbridge load generator",
            "product_family_code": "loadtest",
            "version": env!("CARGO_PKG_VERSION"),
        },
        CLAIM_AGS: {
            "scope": [
                "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
                "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
                "https://purl.imsglobal.org/spec/lti-ags/scope/score",
            ],
            "lineitems": lineitems,
            "lineitem": format!("{lineitems}/{link}"),
        },
    })
}

/// True for an address a load test may target: the loopback range only.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_carry_what_every_tool_requires() {
        let reg = Registration {
            issuer: "http://127.0.0.1:9".into(),
            client_id: "bench".into(),
            deployment_id: "d1".into(),
        };
        let pop = Population {
            users: 10,
            contexts: 3,
        };
        let c = launch_claims(&reg, &pop.user(12), "n-1", "http://127.0.0.1:8/launch", 100);
        assert_eq!(c["sub"], "bench-user-2");
        assert_eq!(c["nonce"], "n-1");
        assert_eq!(c["exp"], 700);
        assert_eq!(c[CLAIM_RESOURCE_LINK]["id"], "bench-course-2-link-0");
        assert_eq!(c[CLAIM_CONTEXT]["id"], "bench-course-2");
        assert!(
            c[CLAIM_AGS]["lineitem"]
                .as_str()
                .unwrap()
                .starts_with("http://127.0.0.1:9/")
        );
        assert_eq!(c[CLAIM_ROLES][0], ROLE_LEARNER);
    }

    #[test]
    fn only_loopback_targets_are_allowed() {
        for ok in [
            "http://127.0.0.1:1/",
            "http://127.3.2.1/",
            "http://localhost/",
            "http://[::1]:8/",
        ] {
            assert!(is_loopback(&Url::parse(ok).unwrap()), "{ok}");
        }
        for bad in [
            "http://10.0.0.1/",
            "http://example.com/",
            "http://192.168.1.1/",
        ] {
            assert!(!is_loopback(&Url::parse(bad).unwrap()), "{bad}");
        }
    }
}
