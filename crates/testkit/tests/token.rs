//! The token endpoint: client credentials with a JWT client assertion verified against the
//! tool's JWKS served over loopback.

mod common;

use common::Setup;
use lti::ags::{SCOPE_LINEITEM, SCOPE_SCORE};
use lti::nrps::SCOPE_MEMBERSHIP_READONLY;
use serde_json::{Value, json};
use testkit::RejectReason;

/// Sends an assertion with the usual fields and returns the status and JSON body.
async fn exchange(s: &Setup, assertion: &str, scope: &str) -> (u16, Value) {
    let resp = s
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", lti::token::ASSERTION_TYPE),
            ("client_assertion", assertion),
            ("scope", scope),
        ])
        .await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_valid_assertion_gets_a_token_for_the_grantable_scopes_only() {
    let s = Setup::keys_only().await;
    let assertion = s.assertion(s.assertion_claims());
    let scope = format!("{SCOPE_SCORE} openid {SCOPE_MEMBERSHIP_READONLY} {SCOPE_SCORE}");
    let resp = s
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", lti::token::ASSERTION_TYPE),
            ("client_assertion", &assertion),
            ("scope", &scope),
        ])
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(
        body["scope"],
        format!("{SCOPE_SCORE} {SCOPE_MEMBERSHIP_READONLY}")
    );
    assert!(body["access_token"].as_str().unwrap().len() >= 32);
    let stats = s.lms.stats();
    assert_eq!((stats.token_requests, stats.tokens_issued), (1, 1));
}

#[tokio::test]
async fn the_lti_token_client_gets_a_token_and_caches_it() {
    let s = Setup::keys_only().await;
    let client = lti::token::TokenClient::new(reqwest::Client::new());
    let endpoint = s.token_endpoint();
    for _ in 0..3 {
        client
            .token(&endpoint, &[SCOPE_LINEITEM], &s.tool_key)
            .await
            .unwrap();
    }
    assert_eq!(client.request_count(), 1);
    assert_eq!(s.lms.stats().tokens_issued, 1);
}

#[tokio::test]
async fn bad_assertions_are_refused_as_invalid_client() {
    let s = Setup::keys_only().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let with = |patch: Value| {
        let mut claims = s.assertion_claims();
        for (k, v) in patch.as_object().unwrap() {
            claims[k] = v.clone();
        }
        s.assertion(claims)
    };
    let good = s.assertion(s.assertion_claims());
    let (head, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims = s.assertion_claims();
    claims["sub"] = json!("someone-else");
    let tampered = format!("{head}.{}.{sig}", b64.encode(claims.to_string()));
    let stranger = lti::ToolKey::generate("tool-key-1").unwrap();
    let signed_by_stranger = stranger.sign(&s.assertion_claims()).unwrap();
    let unknown_kid = lti::ToolKey::generate("not-published")
        .unwrap()
        .sign(&s.assertion_claims())
        .unwrap();

    let cases: Vec<(&str, String, RejectReason)> = vec![
        (
            "tampered payload",
            tampered,
            RejectReason::AssertionSignature,
        ),
        (
            "signed by another key",
            signed_by_stranger,
            RejectReason::AssertionSignature,
        ),
        (
            "kid not in the tool's JWKS",
            unknown_kid,
            RejectReason::AssertionKey,
        ),
        (
            "expired",
            with(json!({"iat": now - 600, "exp": now - 1})),
            RejectReason::AssertionExpired,
        ),
        (
            "issued in the future",
            with(json!({"iat": now + 600, "exp": now + 900})),
            RejectReason::AssertionIssuedInFuture,
        ),
        (
            "wrong aud",
            with(json!({"aud": "https://lms.example/token"})),
            RejectReason::AssertionAudience,
        ),
        (
            "wrong iss",
            with(json!({"iss": "someone-else"})),
            RejectReason::AssertionIssuer,
        ),
        (
            "no jti",
            with(json!({"jti": null})),
            RejectReason::AssertionMalformed,
        ),
        (
            "not a JWT",
            "abc.def".to_owned(),
            RejectReason::AssertionMalformed,
        ),
    ];
    for (what, assertion, reason) in cases {
        let before = s.lms.stats().rejections(reason);
        let (status, body) = exchange(&s, &assertion, SCOPE_SCORE).await;
        assert_eq!(status, 400, "{what}");
        assert_eq!(body["error"], "invalid_client", "{what}: {body}");
        assert_eq!(s.lms.stats().rejections(reason), before + 1, "{what}");
    }
    // aud as an array containing the token URL is fine.
    let array_aud = with(json!({"aud": ["https://other.example", s.lms.token_url().as_str()]}));
    assert_eq!(exchange(&s, &array_aud, SCOPE_SCORE).await.0, 200);
    assert_eq!(s.lms.stats().tokens_issued, 1);
    assert_eq!(s.lms.stats().total_rejections(), 9);
}

#[tokio::test]
async fn a_replayed_jti_is_refused() {
    let s = Setup::keys_only().await;
    let assertion = s.assertion(s.assertion_claims());
    assert_eq!(exchange(&s, &assertion, SCOPE_SCORE).await.0, 200);
    let (status, body) = exchange(&s, &assertion, SCOPE_SCORE).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client"))
    );
    assert_eq!(s.lms.stats().rejections(RejectReason::AssertionReplayed), 1);
}

#[tokio::test]
async fn the_request_itself_must_be_well_formed() {
    let s = Setup::keys_only().await;
    let assertion = s.assertion(s.assertion_claims());
    // JSON instead of a form.
    let resp = reqwest::Client::new()
        .post(s.lms.token_url())
        .json(&json!({
            "grant_type": "client_credentials",
            "client_assertion_type": lti::token::ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": SCOPE_SCORE,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );

    let (status, body) = async {
        let resp = s
            .token_request(&[
                ("grant_type", "authorization_code"),
                ("client_assertion_type", lti::token::ASSERTION_TYPE),
                ("client_assertion", &assertion),
                ("scope", SCOPE_SCORE),
            ])
            .await;
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    }
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );

    let resp = s
        .token_request(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            ),
            ("client_assertion", &assertion),
            ("scope", SCOPE_SCORE),
        ])
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );

    let resp = s
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("grant_type", "client_credentials"),
            ("client_assertion_type", lti::token::ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ])
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );

    let stats = s.lms.stats();
    assert_eq!(stats.rejections(RejectReason::TokenContentType), 1);
    assert_eq!(stats.rejections(RejectReason::GrantType), 1);
    assert_eq!(stats.rejections(RejectReason::AssertionType), 1);
    assert_eq!(stats.rejections(RejectReason::DuplicateParameter), 1);
    // None of these got as far as the assertion, so its jti is still unused.
    assert_eq!(exchange(&s, &assertion, SCOPE_SCORE).await.0, 200);
}

#[tokio::test]
async fn no_grantable_scope_is_invalid_scope() {
    let s = Setup::keys_only().await;
    for scope in [
        "",
        "openid profile",
        "https://purl.imsglobal.org/spec/lti-ags/scope/everything",
    ] {
        let (status, body) = exchange(&s, &s.assertion(s.assertion_claims()), scope).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_scope")),
            "{scope:?}"
        );
    }
    // The lti crate reads that answer as a configuration problem, not a transient one.
    let err = lti::token::TokenClient::new(reqwest::Client::new())
        .token(&s.token_endpoint(), &["openid"], &s.tool_key)
        .await
        .unwrap_err();
    assert_eq!(err.kind, lti::http_error::ServiceErrorKind::InvalidScope);
    assert_eq!(s.lms.stats().rejections(RejectReason::NoScopeGranted), 4);
}
