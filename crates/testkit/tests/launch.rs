//! Launches: the launch link, the OIDC authentication endpoint, the id_token and the JWKS,
//! checked with an independent JWT library and with the `lti` crate's own validator.

mod common;

use common::{CLIENT_ID, DEPLOYMENT_ID, Setup, serve};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lti::claims;
use lti::login::AuthRequest;
use std::collections::HashMap;
use testkit::{Browser, RejectReason, SimulatedLms};
use url::Url;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn query(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// Clicks the launch link and returns the login initiation parameters the tool receives.
async fn start_launch(lms: &SimulatedLms, user: &str, resource: &str) -> HashMap<String, String> {
    let resp = no_redirects()
        .get(lms.launch_url(user, resource))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let location = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let mut login = location.clone();
    login.set_query(None);
    assert_eq!(login, lms.tool().login_url);
    query(&location)
}

/// The authentication request a well-behaved tool sends after the login initiation.
fn auth_request(
    lms: &SimulatedLms,
    init: &HashMap<String, String>,
    state: &str,
    nonce: &str,
) -> Url {
    let auth_url = lms.auth_url();
    AuthRequest {
        auth_url: &auth_url,
        client_id: CLIENT_ID,
        redirect_uri: &lms.tool().launch_url,
        login_hint: &init["login_hint"],
        lti_message_hint: init.get("lti_message_hint").map(String::as_str),
        state,
        nonce,
    }
    .to_url()
}

/// GETs a URL and returns the status and the self-submitting form's action and fields.
async fn auto_form(url: Url) -> (u16, Option<(Url, HashMap<String, String>)>) {
    let resp = no_redirects().get(url.clone()).send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    let form = testkit::html::auto_submit_form(&body, &url)
        .map(|f| (f.action.clone(), f.fields.into_iter().collect()));
    (status, form)
}

#[tokio::test]
async fn launch_link_starts_a_third_party_login_at_the_tool() {
    let s = Setup::keys_only().await;
    let init = start_launch(&s.lms, "student-1", "resource-1").await;
    assert_eq!(init["iss"], s.lms.issuer());
    assert_eq!(init["login_hint"], "student-1");
    assert_eq!(init["target_link_uri"], s.lms.tool().launch_url.as_str());
    assert_eq!(init["client_id"], CLIENT_ID);
    assert_eq!(init["lti_deployment_id"], DEPLOYMENT_ID);
    let hint = &init["lti_message_hint"];
    assert!(
        hint.len() >= 32,
        "message hint should be an opaque random key: {hint}"
    );
    assert!(!hint.contains("student") && !hint.contains("resource"));
    // Each launch gets its own hint.
    let again = start_launch(&s.lms, "student-1", "resource-1").await;
    assert_ne!(again["lti_message_hint"], *hint);

    for (user, resource) in [("nobody", "resource-1"), ("student-1", "nothing"), ("", "")] {
        let resp = reqwest::get(s.lms.launch_url(user, resource))
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{user}/{resource}");
    }
    let stats = s.lms.stats();
    assert_eq!(stats.rejections(RejectReason::UnknownUser), 2);
    assert_eq!(stats.rejections(RejectReason::UnknownResource), 1);
}

#[tokio::test]
async fn id_token_verifies_against_the_jwks_and_carries_the_launch_claims() {
    let s = Setup::keys_only().await;
    let init = start_launch(&s.lms, "student-2", "resource-2").await;
    let (status, form) = auto_form(auth_request(&s.lms, &init, "state-abc", "nonce-xyz")).await;
    assert_eq!(status, 200);
    let (action, fields) = form.expect("the answer is a self-posting form");
    assert_eq!(action, s.lms.tool().launch_url);
    assert_eq!(fields["state"], "state-abc");
    let id_token = &fields["id_token"];

    let jwks_resp = reqwest::get(s.lms.jwks_url()).await.unwrap();
    assert_eq!(jwks_resp.headers()["cache-control"], "public, max-age=300");
    let jwks: JwkSet = jwks_resp.json().await.unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some(s.lms.platform_kid()));
    let jwk = jwks.find(s.lms.platform_kid()).expect("kid published");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[CLIENT_ID]);
    validation.set_issuer(&[s.lms.issuer()]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let c = jsonwebtoken::decode::<serde_json::Value>(
        id_token,
        &DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert_eq!(c["sub"], "student-2");
    assert_eq!(c["aud"], CLIENT_ID);
    assert_eq!(c["nonce"], "nonce-xyz");
    let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
    assert!((now - 5..=now + 1).contains(&iat));
    assert_eq!(exp - iat, 300);
    assert_eq!(c["name"], "Alan Turing");
    assert_eq!(c["given_name"], "Alan");
    assert_eq!(c["family_name"], "Turing");
    assert_eq!(c["email"], "alan.turing@example.edu");
    assert_eq!(c[claims::CLAIM_MESSAGE_TYPE], "LtiResourceLinkRequest");
    assert_eq!(c[claims::CLAIM_VERSION], "1.3.0");
    assert_eq!(c[claims::CLAIM_DEPLOYMENT_ID], DEPLOYMENT_ID);
    assert_eq!(
        c[claims::CLAIM_TARGET_LINK_URI],
        s.lms.tool().launch_url.as_str()
    );
    assert_eq!(
        c[claims::CLAIM_RESOURCE_LINK],
        serde_json::json!({"id": "resource-2", "title": "Photosynthesis essay"})
    );
    assert_eq!(
        c[claims::CLAIM_ROLES],
        serde_json::json!(["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"])
    );
    assert_eq!(
        c[claims::CLAIM_CONTEXT],
        serde_json::json!({
            "id": "course-1", "label": "BIO101", "title": "Introduction to Biology",
            "type": ["http://purl.imsglobal.org/vocab/lis/v2/course#CourseOffering"]
        })
    );
    assert_eq!(
        c[claims::CLAIM_TOOL_PLATFORM]["name"],
        "lmsbridge simulated LMS"
    );
    assert_eq!(
        c[claims::CLAIM_TOOL_PLATFORM]["product_family_code"],
        "lmsbridge-testkit"
    );
    assert_eq!(
        c[claims::CLAIM_LAUNCH_PRESENTATION],
        serde_json::json!({
            "document_target": "iframe",
            "return_url": s.lms.home_url().as_str(),
            "locale": "en"
        })
    );
    assert_eq!(c[claims::CLAIM_CUSTOM], serde_json::json!({}));
    let base = s.lms.issuer();
    assert_eq!(
        c[claims::CLAIM_AGS],
        serde_json::json!({
            "scope": [
                lti::ags::SCOPE_LINEITEM, lti::ags::SCOPE_LINEITEM_READONLY,
                lti::ags::SCOPE_RESULT_READONLY, lti::ags::SCOPE_SCORE
            ],
            "lineitems": format!("{base}/api/lti/courses/course-1/line_items"),
            "lineitem": format!("{base}/api/lti/courses/course-1/line_items/2"),
        })
    );
    assert_eq!(
        c[claims::CLAIM_NRPS],
        serde_json::json!({
            "context_memberships_url": format!("{base}/api/lti/courses/course-1/names_and_roles"),
            "service_versions": ["2.0"],
        })
    );

    // The lmsbridge validator accepts it too.
    let validator = lti::LaunchValidator::new(
        lti::jwks::JwksCache::new(reqwest::Client::new(), Default::default()),
        5,
    );
    let jwks_url = s.lms.jwks_url();
    let target = s.lms.tool().launch_url.to_string();
    let typed = validator
        .validate(
            id_token,
            &lti::LaunchExpectations {
                issuer: &base,
                client_id: CLIENT_ID,
                jwks_url: &jwks_url,
                nonce: "nonce-xyz",
                target_link_uri: &target,
                now,
            },
        )
        .await
        .unwrap();
    assert_eq!(typed.sub.as_deref(), Some("student-2"));
}

#[tokio::test]
async fn auth_by_post_works_like_get() {
    let s = Setup::keys_only().await;
    let init = start_launch(&s.lms, "teacher-1", "resource-1").await;
    let url = auth_request(&s.lms, &init, "st", "no");
    let resp = no_redirects()
        .post(s.lms.auth_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(url.query().unwrap().to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    let form = testkit::html::auto_submit_form(&body, &url).unwrap();
    assert!(form.field("id_token").is_some());
    let payload = form
        .field("id_token")
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap()
        .to_owned();
    use base64::Engine;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims[claims::CLAIM_ROLES],
        serde_json::json!(["http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"])
    );
}

#[tokio::test]
async fn wrong_redirect_uri_or_client_gets_a_page_and_nothing_is_sent_there() {
    let s = Setup::keys_only().await;
    let init = start_launch(&s.lms, "student-1", "resource-1").await;
    let good = auth_request(&s.lms, &init, "st", "no");
    let with = |name: &str, value: &str| {
        let mut url = good.clone();
        let pairs: Vec<(String, String)> = good
            .query_pairs()
            .into_owned()
            .map(|(k, v)| {
                if k == name {
                    (k, value.to_owned())
                } else {
                    (k, v)
                }
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        url
    };
    let evil = "https://evil.example/collect";
    for (url, reason) in [
        (
            with("redirect_uri", evil),
            RejectReason::RedirectUriMismatch,
        ),
        // A prefix or a trailing slash is not the registered URI.
        (
            with("redirect_uri", &format!("{}/", s.lms.tool().launch_url)),
            RejectReason::RedirectUriMismatch,
        ),
        (
            with("client_id", "someone-else"),
            RejectReason::UnknownClient,
        ),
    ] {
        let resp = no_redirects().get(url).send().await.unwrap();
        assert_eq!(resp.status(), 400);
        let body = resp.text().await.unwrap();
        assert!(
            !body.contains("evil.example"),
            "the page must not point at the bad URI"
        );
        assert!(!body.contains("id_token"));
        assert!(s.lms.stats().rejections(reason) > 0, "{reason:?}");
    }
    // Those refusals did not use up the message hint.
    let (status, form) = auto_form(good).await;
    assert_eq!(status, 200);
    assert!(form.unwrap().1.contains_key("id_token"));
}

#[tokio::test]
async fn message_hint_is_single_use() {
    let s = Setup::keys_only().await;
    let init = start_launch(&s.lms, "student-1", "resource-1").await;
    let (_, first) = auto_form(auth_request(&s.lms, &init, "st-1", "n-1")).await;
    assert!(first.unwrap().1.contains_key("id_token"));
    let (status, replay) = auto_form(auth_request(&s.lms, &init, "st-2", "n-2")).await;
    assert_eq!(status, 200);
    let (action, fields) = replay.expect("an OIDC error is posted back to the tool");
    assert_eq!(action, s.lms.tool().launch_url);
    assert_eq!(fields["error"], "invalid_request");
    assert_eq!(fields["state"], "st-2");
    assert!(!fields.contains_key("id_token"));
    assert_eq!(
        s.lms.stats().rejections(RejectReason::MessageHintUnknown),
        1
    );
}

#[tokio::test]
async fn each_bad_authentication_parameter_is_answered_with_an_oidc_error() {
    let s = Setup::keys_only().await;
    let cases: &[(&str, Option<&str>, &str, RejectReason)] = &[
        (
            "scope",
            Some("profile"),
            "invalid_scope",
            RejectReason::ScopeNotOpenid,
        ),
        (
            "response_type",
            Some("code"),
            "unsupported_response_type",
            RejectReason::ResponseTypeNotIdToken,
        ),
        (
            "response_mode",
            Some("fragment"),
            "invalid_request",
            RejectReason::ResponseModeNotFormPost,
        ),
        (
            "prompt",
            Some("login"),
            "invalid_request",
            RejectReason::PromptNotNone,
        ),
        ("nonce", None, "invalid_request", RejectReason::NonceMissing),
        ("state", None, "invalid_request", RejectReason::StateMissing),
        (
            "login_hint",
            Some("student-2"),
            "login_required",
            RejectReason::LoginHintMismatch,
        ),
        (
            "lti_message_hint",
            Some("made-up"),
            "invalid_request",
            RejectReason::MessageHintUnknown,
        ),
    ];
    for (name, value, error, reason) in cases {
        let init = start_launch(&s.lms, "student-1", "resource-1").await;
        let good = auth_request(&s.lms, &init, "st", "no");
        let mut url = good.clone();
        let pairs: Vec<(String, String)> = good
            .query_pairs()
            .into_owned()
            .filter_map(|(k, v)| match (k == *name, value) {
                (false, _) => Some((k, v)),
                (true, Some(new)) => Some((k, (*new).to_owned())),
                (true, None) => None,
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        let (status, form) = auto_form(url).await;
        assert_eq!(status, 200, "{name}");
        let (_, fields) = form.unwrap_or_else(|| panic!("{name}: no error form"));
        assert_eq!(fields["error"], *error, "{name}");
        assert!(!fields.contains_key("id_token"), "{name}");
        assert_eq!(
            fields.get("state").map(String::as_str),
            (*name != "state").then_some("st")
        );
        assert_eq!(s.lms.stats().rejections(*reason), 1, "{name}");
    }
}

#[tokio::test]
async fn a_browser_launches_the_tool_and_its_grade_reaches_the_gradebook() {
    let s = Setup::with_tool().await;
    let browser = Browser::new();
    let home = browser.get(s.lms.home_url()).await.unwrap();
    assert_eq!(home.status, 200);
    assert!(home.body.contains("Introduction to Biology"));
    let page = home
        .click("Launch Photosynthesis essay as Ada Lovelace")
        .await
        .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.url, s.lms.tool().launch_url);
    assert!(page.body.contains("Hello Ada Lovelace"), "{}", page.body);
    assert!(page.body.contains("resource-2"));
    let visited: Vec<String> = page.trail.iter().map(|u| u.path().to_owned()).collect();
    assert_eq!(visited, ["/launch", "/login", "/auth"]);
    assert!(browser.cookie("127.0.0.1", "lti_state").is_some());

    // The grade form carries hidden fields but does not submit itself.
    let sent = page.submit("grade", &[("score", "87")]).await.unwrap();
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(sent.body.contains("Grade sent: 200"));
    let gradebook = s.lms.gradebook();
    assert_eq!(gradebook.len(), 1);
    assert_eq!(gradebook[0].user_id, "student-1");
    assert_eq!(gradebook[0].line_item_id, "2");
    assert_eq!(gradebook[0].score_given, Some(87.0));
    assert_eq!(
        gradebook[0].comment.as_deref(),
        Some("Graded by the test tool")
    );

    let page = home.click("Gradebook").await.unwrap();
    assert!(page.body.contains("id=\"gradebook\""));
    let cell = r#"<td data-user="student-1" data-line-item="2" title="Completed · FullyGraded">87 / 100</td>"#;
    assert!(page.body.contains(cell), "{}", page.body);
    let stats = s.lms.stats();
    assert_eq!((stats.token_requests, stats.scores_accepted), (1, 1));
    assert_eq!(stats.total_rejections(), 0, "{stats:?}");
}

#[tokio::test]
async fn the_lms_works_nested_under_a_path_prefix() {
    let tool_key = lti::ToolKey::generate("nested-tool").unwrap();
    let jwks = serde_json::json!({ "keys": [tool_key.public_jwk()] });
    let (tool_base, _tool) = serve(axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || async move { axum::Json(jwks) }),
    ))
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = Url::parse(&format!("http://{}/lms/", listener.local_addr().unwrap())).unwrap();
    let lms = SimulatedLms::new(testkit::LmsConfig::new(
        base.clone(),
        common::registration(&tool_base),
    ));
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "the tool's own home" }))
        .nest("/lms", lms.router());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    assert_eq!(lms.issuer(), base.as_str().trim_end_matches('/'));
    let home = Browser::new().get(lms.home_url()).await.unwrap();
    assert_eq!(home.status, 200);
    let launch = home
        .links()
        .into_iter()
        .find(|l| l.text == "Launch Cell structure quiz as Alan Turing")
        .unwrap();
    assert_eq!(launch.href.path(), "/lms/launch");
    let init = start_launch(&lms, "student-2", "resource-1").await;
    assert_eq!(init["iss"], lms.issuer());
    let (status, form) = auto_form(auth_request(&lms, &init, "s", "n")).await;
    assert_eq!(status, 200);
    assert!(form.unwrap().1.contains_key("id_token"));
    assert_eq!(reqwest::get(lms.jwks_url()).await.unwrap().status(), 200);
    assert_eq!(
        reqwest::get(lms.gradebook_url()).await.unwrap().status(),
        200
    );

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let assertion = tool_key
        .sign(&serde_json::json!({
            "iss": CLIENT_ID, "sub": CLIENT_ID, "aud": lms.token_url().as_str(),
            "iat": now, "exp": now + 60, "jti": "nested-1",
        }))
        .unwrap();
    assert_eq!(lms.token_url().path(), "/lms/token");
    let resp = reqwest::Client::new()
        .post(lms.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", lti::token::ASSERTION_TYPE),
            ("client_assertion", &assertion),
            ("scope", lti::nrps::SCOPE_MEMBERSHIP_READONLY),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    server.abort();
}
