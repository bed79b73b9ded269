//! Forged, replayed and misdirected launches, each refused by the check it fails.
//!
//! The test is the platform: it holds the platform keys (served as a JWKS on loopback), logs
//! in through lmsbridge to obtain a real state, cookie and nonce, then posts an id_token it
//! built by hand. Every case asserts the HTTP status and the named check on the error page.

use base64::Engine;
use domain::{Actor, PlatformKind};
use jsonwebtoken::{Algorithm, EncodingKey};
use lti::ToolKey;
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use server::{AppBuilder, Settings};
use std::collections::HashMap;
use store::NewPlatform;
use store::testing::TestDatabase;
use url::Url;

const ISSUER: &str = "https://lms.hostile.example";
const CLIENT_ID: &str = "hostile-client";
const KID: &str = "platform-key-1";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn encoding_key(key: &ToolKey) -> EncodingKey {
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(key.pkcs8_der())
    );
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

/// Signs `header.payload` exactly as given, with any algorithm.
fn sign_raw(header: &Value, payload: &[u8], key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{sig}")
}

struct Harness {
    tool: Url,
    http: reqwest::Client,
    platform_key: ToolKey,
    /// Same kid, different key: what a forger would sign with.
    forger_key: ToolKey,
    /// Published with `alg: RS512`, so it must not verify RS256 tokens.
    rs512_key: ToolKey,
    public_n: Vec<u8>,
    app: server::App,
    master: store::crypto::MasterKey,
    _db: TestDatabase,
}

struct Pending {
    cookie: String,
    state: String,
    nonce: String,
}

async fn harness() -> Harness {
    let platform_key = ToolKey::generate(KID).unwrap();
    let forger_key = ToolKey::generate(KID).unwrap();
    let rs512_key = ToolKey::generate("rs512-key").unwrap();
    let mut rs512_jwk = serde_json::to_value(rs512_key.public_jwk()).unwrap();
    rs512_jwk["alg"] = "RS512".into();
    let jwks = json!({"keys": [platform_key.public_jwk(), rs512_jwk]});
    let public_n = {
        let n = jwks["keys"][0]["n"].as_str().unwrap();
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(n)
            .unwrap()
    };
    let jwks_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = Url::parse(&format!(
        "http://{}/jwks",
        jwks_listener.local_addr().unwrap()
    ))
    .unwrap();
    let jwks_router = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    tokio::spawn(async move { axum::serve(jwks_listener, jwks_router).await });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tool = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let db = TestDatabase::sqlite().await.unwrap();
    let dir = std::env::temp_dir().join(format!("lmsbridge-hostile-{}", uuid::Uuid::new_v4()));
    let mut settings = Settings::defaults_for(listener.local_addr().unwrap(), dir);
    settings.database_url = db.url.clone();
    let master = store::crypto::MasterKey::generate();
    settings.master_key = Some(master.to_base64());
    let running = AppBuilder::new(settings).build().await.unwrap();
    let store = running.app.store();
    let actor = Actor::system("test");
    let (tenant, _) = store.create_tenant("Hostile", None, &actor).await.unwrap();
    let scope = store.tenant_scope(tenant.id).await.unwrap();
    store
        .tenant(&scope)
        .add_platform(
            &NewPlatform {
                kind: PlatformKind::Canvas,
                issuer: ISSUER.into(),
                client_id: CLIENT_ID.into(),
                auth_url: Url::parse("https://lms.hostile.example/auth").unwrap(),
                token_url: Url::parse("https://lms.hostile.example/token").unwrap(),
                jwks_url,
                token_audience: None,
                accept_new_deployments: false,
                deployment_ids: vec!["dep-1".into()],
            },
            &actor,
        )
        .await
        .unwrap();
    let app = running.app.clone();
    let router = server::router(running.app);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Harness {
        app,
        master,
        tool,
        http: reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap(),
        platform_key,
        forger_key,
        rs512_key,
        public_n,
        _db: db,
    }
}

impl Harness {
    fn launch_url(&self) -> String {
        self.tool.join("lti/launch").unwrap().to_string()
    }

    async fn login(&self) -> Pending {
        let mut url = self.tool.join("lti/login").unwrap();
        url.query_pairs_mut()
            .append_pair("iss", ISSUER)
            .append_pair("client_id", CLIENT_ID)
            .append_pair("login_hint", "user-1")
            .append_pair("target_link_uri", &self.launch_url())
            .append_pair("lti_deployment_id", "dep-1");
        let resp = self.http.get(url).send().await.unwrap();
        assert_eq!(resp.status(), 303);
        let cookie = resp.headers()["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_owned();
        let auth = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
        let q: HashMap<_, _> = auth.query_pairs().into_owned().collect();
        Pending {
            cookie,
            state: q["state"].clone(),
            nonce: q["nonce"].clone(),
        }
    }

    fn claims(&self, nonce: &str) -> Value {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        json!({
            "iss": ISSUER, "aud": CLIENT_ID, "sub": "user-1", "exp": now + 300, "iat": now,
            "nonce": nonce, "name": "Ada Lovelace",
            "https://purl.imsglobal.org/spec/lti/claim/message_type": "LtiResourceLinkRequest",
            "https://purl.imsglobal.org/spec/lti/claim/version": "1.3.0",
            "https://purl.imsglobal.org/spec/lti/claim/deployment_id": "dep-1",
            "https://purl.imsglobal.org/spec/lti/claim/target_link_uri": self.launch_url(),
            "https://purl.imsglobal.org/spec/lti/claim/resource_link": {"id": "rl-1", "title": "Quiz"},
            "https://purl.imsglobal.org/spec/lti/claim/roles": ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"],
            "https://purl.imsglobal.org/spec/lti/claim/context": {"id": "c-1", "title": "Biology"},
        })
    }

    async fn post(&self, cookie: Option<&str>, fields: &[(&str, &str)]) -> (u16, String) {
        let mut req = self.http.post(self.launch_url()).form(fields);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        (status, outcome(&body))
    }
}

/// The failed check named on an error page, or "accepted".
fn outcome(body: &str) -> String {
    let marker = "<dt>Check that failed</dt><dd>";
    match body.find(marker) {
        Some(i) => {
            let rest = &body[i + marker.len()..];
            rest[..rest.find('<').unwrap()].to_owned()
        }
        None if body.contains("Launch received") => "accepted".into(),
        None => format!("unrecognised page: {}", &body[..body.len().min(300)]),
    }
}

/// What a case changes, starting from a valid launch.
struct Attempt {
    header: Value,
    claims: Value,
    /// Bytes to sign instead of the claims' JSON.
    raw_payload: Option<Vec<u8>>,
    key: Signer,
    alg: Algorithm,
    /// Changes to the finished token.
    finish: fn(String) -> String,
    cookie: CookieMode,
    state: StateMode,
}

#[derive(Clone, Copy)]
enum Signer {
    Platform,
    Forger,
    Rs512Key,
    /// HMAC keyed with the platform's public modulus: the classic key-confusion attack.
    HmacWithPublicKey,
    Unsigned,
}

#[derive(Clone, Copy, PartialEq)]
enum CookieMode {
    Sent,
    Missing,
    Wrong,
}

#[derive(Clone, Copy, PartialEq)]
enum StateMode {
    Real,
    Forged,
    Missing,
}

type Mutate = fn(&mut Attempt);

fn keep(t: String) -> String {
    t
}

fn cases() -> Vec<(&'static str, Mutate, u16, &'static str)> {
    const LTI: &str = "https://purl.imsglobal.org/spec/lti/claim/";
    fn drop_claim(a: &mut Attempt, name: &str) {
        a.claims.as_object_mut().unwrap().remove(name);
    }
    vec![
        ("a valid launch is accepted", |_| {}, 200, "accepted"),
        (
            "alg none",
            |a| {
                a.header["alg"] = "none".into();
                a.key = Signer::Unsigned;
            },
            401,
            "alg_not_allowed",
        ),
        (
            "HS256 signed with the platform's public key",
            |a| {
                a.header["alg"] = "HS256".into();
                a.key = Signer::HmacWithPublicKey;
                a.alg = Algorithm::HS256;
            },
            401,
            "alg_not_allowed",
        ),
        (
            "RS512 instead of RS256",
            |a| {
                a.header["alg"] = "RS512".into();
                a.alg = Algorithm::RS512;
            },
            401,
            "alg_not_allowed",
        ),
        (
            "PS256 instead of RS256",
            |a| {
                a.header["alg"] = "PS256".into();
                a.alg = Algorithm::PS256;
            },
            401,
            "alg_not_allowed",
        ),
        (
            "no kid",
            |a| {
                a.header.as_object_mut().unwrap().remove("kid");
            },
            401,
            "kid_missing",
        ),
        (
            "unknown kid",
            |a| {
                a.header["kid"] = "nobody".into();
            },
            401,
            "kid_unknown",
        ),
        (
            "signed by another key under the platform's kid",
            |a| {
                a.key = Signer::Forger;
            },
            401,
            "signature_invalid",
        ),
        (
            "payload changed after signing",
            |a| {
                a.finish = |t| {
                    let p: Vec<&str> = t.split('.').collect();
                    let mut c: Value = serde_json::from_slice(
                        &base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .decode(p[1])
                            .unwrap(),
                    )
                    .unwrap();
                    c["sub"] = "teacher-1".into();
                    format!("{}.{}.{}", p[0], b64(c.to_string().as_bytes()), p[2])
                };
            },
            401,
            "signature_invalid",
        ),
        (
            "signature stripped",
            |a| {
                a.finish = |t| format!("{}.", &t[..t.rfind('.').unwrap()]);
            },
            401,
            "signature_invalid",
        ),
        (
            "a key published for RS512 used for RS256",
            |a| {
                a.header["kid"] = "rs512-key".into();
                a.key = Signer::Rs512Key;
            },
            401,
            "key_not_usable",
        ),
        (
            "expired",
            |a| {
                let now = a.claims["iat"].as_i64().unwrap();
                a.claims["exp"] = (now - 600).into();
                a.claims["iat"] = (now - 900).into();
            },
            401,
            "token_expired",
        ),
        (
            "issued in the future",
            |a| {
                let now = a.claims["iat"].as_i64().unwrap();
                a.claims["iat"] = (now + 600).into();
                a.claims["exp"] = (now + 900).into();
            },
            401,
            "iat_in_future",
        ),
        (
            "not valid yet (nbf)",
            |a| {
                let now = a.claims["iat"].as_i64().unwrap();
                a.claims["nbf"] = (now + 600).into();
            },
            401,
            "nbf_in_future",
        ),
        (
            "a little clock skew is tolerated",
            |a| {
                let now = a.claims["iat"].as_i64().unwrap();
                a.claims["iat"] = (now + 30).into();
            },
            200,
            "accepted",
        ),
        (
            "wrong issuer",
            |a| {
                a.claims["iss"] = "https://canvas.instructure.com".into();
            },
            401,
            "iss_mismatch",
        ),
        (
            "issuer differing in case",
            |a| {
                a.claims["iss"] = ISSUER.to_uppercase().into();
            },
            401,
            "iss_mismatch",
        ),
        (
            "wrong audience",
            |a| {
                a.claims["aud"] = "another-client".into();
            },
            401,
            "aud_mismatch",
        ),
        (
            "several audiences without azp",
            |a| {
                a.claims["aud"] = json!([CLIENT_ID, "another-client"]);
            },
            401,
            "azp_missing",
        ),
        (
            "several audiences with a foreign azp",
            |a| {
                a.claims["aud"] = json!([CLIENT_ID, "another-client"]);
                a.claims["azp"] = "another-client".into();
            },
            401,
            "azp_mismatch",
        ),
        (
            "several audiences with our azp",
            |a| {
                a.claims["aud"] = json!([CLIENT_ID, "another-client"]);
                a.claims["azp"] = CLIENT_ID.into();
            },
            200,
            "accepted",
        ),
        (
            "nonce of another login",
            |a| {
                a.claims["nonce"] = "a-nonce-we-never-issued".into();
            },
            401,
            "nonce_mismatch",
        ),
        (
            "missing state cookie",
            |a| {
                a.cookie = CookieMode::Missing;
            },
            400,
            "state_cookie_missing",
        ),
        (
            "state cookie of another browser",
            |a| {
                a.cookie = CookieMode::Wrong;
            },
            400,
            "state_cookie_missing",
        ),
        (
            "forged state",
            |a| {
                a.state = StateMode::Forged;
            },
            400,
            "state_unknown",
        ),
        (
            "no state",
            |a| {
                a.state = StateMode::Missing;
            },
            400,
            "login_parameter_missing",
        ),
        (
            "unknown deployment",
            |a| {
                a.claims[format!("{LTI}deployment_id")] = "dep-unknown".into();
            },
            403,
            "deployment_unknown",
        ),
        (
            "LTI version 1.1",
            |a| {
                a.claims[format!("{LTI}version")] = "1.1.0".into();
            },
            401,
            "version_unsupported",
        ),
        (
            "unknown message type",
            |a| {
                a.claims[format!("{LTI}message_type")] = "LtiStartProctoring".into();
            },
            401,
            "message_type_unsupported",
        ),
        (
            "no message type",
            |a| drop_claim(a, "https://purl.imsglobal.org/spec/lti/claim/message_type"),
            401,
            "claim_missing",
        ),
        (
            "no resource link",
            |a| drop_claim(a, "https://purl.imsglobal.org/spec/lti/claim/resource_link"),
            401,
            "claim_missing",
        ),
        (
            "empty resource link id",
            |a| {
                a.claims[format!("{LTI}resource_link")] = json!({"id": ""});
            },
            401,
            "claim_missing",
        ),
        (
            "no roles claim",
            |a| drop_claim(a, "https://purl.imsglobal.org/spec/lti/claim/roles"),
            401,
            "claim_missing",
        ),
        (
            "no deployment id",
            |a| drop_claim(a, "https://purl.imsglobal.org/spec/lti/claim/deployment_id"),
            401,
            "claim_missing",
        ),
        ("no exp", |a| drop_claim(a, "exp"), 401, "claim_missing"),
        ("no nonce", |a| drop_claim(a, "nonce"), 401, "claim_missing"),
        (
            "empty sub",
            |a| {
                a.claims["sub"] = "".into();
            },
            401,
            "claim_invalid",
        ),
        (
            "aud of the wrong type",
            |a| {
                a.claims["aud"] = 42.into();
            },
            401,
            "claims_malformed",
        ),
        (
            "payload that is not JSON",
            |a| {
                a.raw_payload = Some(b"{\"iss\": not json".to_vec());
            },
            401,
            "claims_malformed",
        ),
        (
            "target_link_uri elsewhere",
            |a| {
                a.claims[format!("{LTI}target_link_uri")] =
                    "https://evil.example/lti/launch".into();
            },
            401,
            "target_link_uri_mismatch",
        ),
        (
            "deep linking request without its settings",
            |a| {
                a.claims[format!("{LTI}message_type")] = "LtiDeepLinkingRequest".into();
            },
            401,
            "claim_missing",
        ),
        (
            "submission review without for_user",
            |a| {
                a.claims[format!("{LTI}message_type")] = "LtiSubmissionReviewRequest".into();
                a.claims["https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"] =
                    json!({"scope": [], "lineitem": "https://lms.hostile.example/li/1"});
            },
            401,
            "claim_missing",
        ),
        (
            "oversize token",
            |a| {
                a.finish = |t| format!("{t}{}", "A".repeat(70 * 1024));
            },
            401,
            "token_malformed",
        ),
        (
            "not a compact JWS",
            |a| {
                a.finish = |_| "only.two".into();
            },
            401,
            "token_malformed",
        ),
        (
            "header that is not JSON",
            |a| {
                a.finish = |t| format!("bm90IGpzb24{}", &t[t.find('.').unwrap()..]);
            },
            401,
            "token_malformed",
        ),
    ]
}

#[tokio::test]
async fn every_hostile_launch_is_refused_by_the_check_it_fails() {
    let h = harness().await;
    let platform = encoding_key(&h.platform_key);
    let forger = encoding_key(&h.forger_key);
    let rs512 = encoding_key(&h.rs512_key);
    let hmac = EncodingKey::from_secret(&h.public_n);
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() >= 40);
    for (name, mutate, status, expected) in all {
        let p = h.login().await;
        let mut a = Attempt {
            header: json!({"alg": "RS256", "typ": "JWT", "kid": KID}),
            claims: h.claims(&p.nonce),
            raw_payload: None,
            key: Signer::Platform,
            alg: Algorithm::RS256,
            finish: keep,
            cookie: CookieMode::Sent,
            state: StateMode::Real,
        };
        mutate(&mut a);
        let payload = a
            .raw_payload
            .clone()
            .unwrap_or_else(|| a.claims.to_string().into_bytes());
        let token = match a.key {
            Signer::Platform => sign_raw(&a.header, &payload, &platform, a.alg),
            Signer::Forger => sign_raw(&a.header, &payload, &forger, a.alg),
            Signer::Rs512Key => sign_raw(&a.header, &payload, &rs512, a.alg),
            Signer::HmacWithPublicKey => sign_raw(&a.header, &payload, &hmac, Algorithm::HS256),
            Signer::Unsigned => format!(
                "{}.{}.",
                b64(a.header.to_string().as_bytes()),
                b64(&payload)
            ),
        };
        let token = (a.finish)(token);
        let state = match a.state {
            StateMode::Real => p.state.clone(),
            StateMode::Forged => "forged-state-value".into(),
            StateMode::Missing => String::new(),
        };
        let cookie = match a.cookie {
            CookieMode::Sent => Some(p.cookie.clone()),
            CookieMode::Missing => None,
            CookieMode::Wrong => Some(format!(
                "{}=someone-elses-state",
                p.cookie.split('=').next().unwrap()
            )),
        };
        let mut fields = vec![("id_token", token.as_str())];
        if a.state != StateMode::Missing {
            fields.push(("state", state.as_str()));
        }
        let got = h.post(cookie.as_deref(), &fields).await;
        if got != (status, expected.to_owned()) {
            failures.push(format!(
                "{name}: expected {status} {expected}, got {} {}",
                got.0, got.1
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn a_launch_cannot_be_replayed() {
    let h = harness().await;
    let key = encoding_key(&h.platform_key);
    let p = h.login().await;
    let token = sign_raw(
        &json!({"alg": "RS256", "kid": KID}),
        h.claims(&p.nonce).to_string().as_bytes(),
        &key,
        Algorithm::RS256,
    );
    let fields = [("id_token", token.as_str()), ("state", p.state.as_str())];
    assert_eq!(
        h.post(Some(&p.cookie), &fields).await,
        (200, "accepted".to_owned())
    );
    // The same post again: its nonce was spent with the first launch.
    assert_eq!(
        h.post(Some(&p.cookie), &fields).await,
        (401, "nonce_replayed".to_owned())
    );
    // The same token under a fresh login: its nonce is not this login's.
    let fresh = h.login().await;
    let replay = [
        ("id_token", token.as_str()),
        ("state", fresh.state.as_str()),
    ];
    assert_eq!(
        h.post(Some(&fresh.cookie), &replay).await,
        (401, "nonce_mismatch".to_owned())
    );
}

#[tokio::test]
async fn error_pages_reflect_nothing_and_leak_nothing() {
    let h = harness().await;
    let p = h.login().await;
    let evil = "<img src=x onerror=alert(1)>";
    let resp = h
        .http
        .post(h.launch_url())
        .header("cookie", &p.cookie)
        .form(&[("id_token", evil), ("state", p.state.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    assert!(
        resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let body = resp.text().await.unwrap();
    assert!(!body.contains("<img"), "{body}");
    assert!(!body.contains(&p.state), "the state must not be echoed");
    assert!(body.contains("Reference"), "a correlation id for the admin");
}

#[tokio::test]
async fn lti_1_1_migration_ids_are_trusted_only_when_signed_with_the_old_secret() {
    let h = harness().await;
    let store = h.app.store();
    let reg = store
        .find_platforms(ISSUER, Some(CLIENT_ID))
        .await
        .unwrap()
        .remove(0);
    store
        .tenant(&reg.scope)
        .set_lti11_credentials(
            reg.platform.id,
            "old-consumer",
            "old-secret",
            &h.master,
            &Actor::system("t"),
        )
        .await
        .unwrap();
    let key = encoding_key(&h.platform_key);
    for (secret, expect) in [
        ("old-secret", "old-user-42 (verified)"),
        ("guessed", "old-user-42 (not verified)"),
    ] {
        let p = h.login().await;
        let mut claims = h.claims(&p.nonce);
        claims["https://purl.imsglobal.org/spec/lti/claim/lti1p1"] =
            json!({"user_id": "old-user-42", "oauth_consumer_key": "old-consumer"});
        let typed: lti::LaunchClaims = serde_json::from_value(claims.clone()).unwrap();
        claims["https://purl.imsglobal.org/spec/lti/claim/lti1p1"]["oauth_consumer_key_sign"] =
            lti::migration::sign(&typed, CLIENT_ID, "old-consumer", secret).into();
        let token = sign_raw(
            &json!({"alg": "RS256", "kid": KID}),
            claims.to_string().as_bytes(),
            &key,
            Algorithm::RS256,
        );
        let resp = h
            .http
            .post(h.launch_url())
            .header("cookie", &p.cookie)
            .form(&[("id_token", token.as_str()), ("state", p.state.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.text().await.unwrap();
        assert!(body.contains(expect), "{body}");
    }
}

#[tokio::test]
async fn per_registration_urls_resolve_logins_without_client_id_and_ambiguity_is_refused() {
    let h = harness().await;
    let store = h.app.store();
    let reg = store
        .find_platforms(ISSUER, Some(CLIENT_ID))
        .await
        .unwrap()
        .remove(0);
    // A second school on the same (Canvas-style) issuer.
    store
        .tenant(&reg.scope)
        .add_platform(
            &NewPlatform {
                kind: PlatformKind::Canvas,
                issuer: ISSUER.into(),
                client_id: "second-school".into(),
                auth_url: reg.platform.auth_url.clone(),
                token_url: reg.platform.token_url.clone(),
                jwks_url: reg.platform.jwks_url.clone(),
                token_audience: None,
                accept_new_deployments: false,
                deployment_ids: vec!["dep-1".into()],
            },
            &Actor::system("t"),
        )
        .await
        .unwrap();
    let login = |path: String| {
        let mut url = h.tool.join(&path).unwrap();
        url.query_pairs_mut()
            .append_pair("iss", ISSUER)
            .append_pair("login_hint", "user-1")
            .append_pair("target_link_uri", &h.launch_url());
        h.http.get(url).send()
    };
    // The shared issuer without client_id: refused, not guessed.
    let resp = login("lti/login".into()).await.unwrap();
    assert_eq!(
        outcome(&resp.text().await.unwrap()),
        "registration_ambiguous"
    );
    // The registration's own login URL resolves it, and sends the launch to its own URL.
    let resp = login(format!("lti/login/{}", reg.platform.id))
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let auth = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let q: HashMap<_, _> = auth.query_pairs().into_owned().collect();
    let own_launch = h
        .tool
        .join(&format!("lti/launch/{}", reg.platform.id))
        .unwrap();
    assert_eq!(q["redirect_uri"], own_launch.as_str());
    assert_eq!(q["client_id"], CLIENT_ID);
    let key = encoding_key(&h.platform_key);
    let token = sign_raw(
        &json!({"alg": "RS256", "kid": KID}),
        h.claims(&q["nonce"]).to_string().as_bytes(),
        &key,
        Algorithm::RS256,
    );
    let fields = [("id_token", token.as_str()), ("state", q["state"].as_str())];
    // Another registration's launch URL refuses a state that is not its own ...
    let other = store
        .find_platforms(ISSUER, Some("second-school"))
        .await
        .unwrap()
        .remove(0);
    let wrong = h
        .http
        .post(
            h.tool
                .join(&format!("lti/launch/{}", other.platform.id))
                .unwrap(),
        )
        .header("cookie", &cookie)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(
        outcome(&wrong.text().await.unwrap()),
        "registration_unknown"
    );
    // ... and the right one accepts a fresh login.
    let resp = login(format!("lti/login/{}", reg.platform.id))
        .await
        .unwrap();
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let auth = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let q: HashMap<_, _> = auth.query_pairs().into_owned().collect();
    let token = sign_raw(
        &json!({"alg": "RS256", "kid": KID}),
        h.claims(&q["nonce"]).to_string().as_bytes(),
        &key,
        Algorithm::RS256,
    );
    let ok = h
        .http
        .post(own_launch)
        .header("cookie", &cookie)
        .form(&[("id_token", token.as_str()), ("state", q["state"].as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(outcome(&ok.text().await.unwrap()), "accepted");
}
