//! LTI Dynamic Registration round trips against the simulated LMS, over loopback: the
//! platform opens the tenant's registration URL, lmsbridge registers itself, the registration
//! waits disabled until an admin enables it, and then launches work with the client id and
//! the per-registration URLs the platform was given.

use domain::{Actor, PlatformKind};
use server::{AppBuilder, Settings};
use store::testing::TestDatabase;
use testkit::{Browser, RegistrationStyle, SimulatedLms, SpawnedLms, ToolRegistration};
use url::Url;

struct Env {
    tool: Url,
    lms: SimulatedLms,
    _lms_server: SpawnedLms,
    app: server::App,
    scope: store::TenantScope,
    registration_url: Url,
    _db: TestDatabase,
}

async fn env(db: TestDatabase) -> Env {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tool = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    // The LMS starts knowing nothing usable about the tool: the registration teaches it.
    let (lms, lms_server) = SimulatedLms::spawn(ToolRegistration {
        client_id: "not-registered".into(),
        deployment_id: "dep-dyn".into(),
        login_url: tool.join("nowhere").unwrap(),
        launch_url: tool.join("nowhere").unwrap(),
        jwks_url: tool.join("nowhere").unwrap(),
    })
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("lmsbridge-dr-{}", uuid::Uuid::new_v4()));
    let mut settings = Settings::defaults_for(listener.local_addr().unwrap(), dir);
    settings.database_url = db.url.clone();
    settings.tool_name = "Quiz <Engine>".into();
    let running = AppBuilder::new(settings).build().await.unwrap();
    let store = running.app.store();
    let (tenant, _key) = store
        .create_tenant("School", None, &Actor::system("t"))
        .await
        .unwrap();
    let scope = store.tenant_scope(tenant.id).await.unwrap();
    let invite = store
        .tenant(&scope)
        .issue_registration_invite(Some("test"), 3600, &Actor::system("t"))
        .await
        .unwrap();
    let mut registration_url = tool.join("lti/register").unwrap();
    registration_url
        .query_pairs_mut()
        .append_pair("invite", invite.token());
    let app = running.app.clone();
    let router = server::router(running.app);
    tokio::spawn(async move { axum::serve(listener, router).await });
    tokio::spawn(running.worker.run(tokio::sync::watch::channel(false).1));
    Env {
        tool,
        lms,
        _lms_server: lms_server,
        app,
        scope,
        registration_url,
        _db: db,
    }
}

impl Env {
    async fn register(&self) -> testkit::Page {
        Browser::new()
            .get(self.lms.dynamic_registration_url(&self.registration_url))
            .await
            .unwrap()
    }

    async fn only_platform(&self) -> domain::Platform {
        let platforms = self
            .app
            .store()
            .tenant(&self.scope)
            .list_platforms()
            .await
            .unwrap();
        assert_eq!(platforms.len(), 1, "{platforms:?}");
        platforms.into_iter().next().unwrap()
    }

    /// A student launch from the LMS, as its browser would make it.
    async fn launch(&self) -> testkit::Page {
        Browser::new()
            .get(self.lms.launch_url("student-1", "resource-1"))
            .await
            .unwrap()
    }
}

async fn moodle_round_trip(db: TestDatabase) {
    let env = env(db).await;
    let page = env.register().await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("org.imsglobal.lti.close"),
        "{}",
        page.body
    );
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("script-src 'nonce-")
    );

    // What the platform received is a complete, correct tool configuration.
    let requests = env.lms.registration_requests();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    let platform = env.only_platform().await;
    let id = platform.id.to_string();
    assert_eq!(req["client_name"], "Quiz <Engine>");
    assert_eq!(
        req["initiate_login_uri"],
        env.tool.join(&format!("lti/login/{id}")).unwrap().as_str()
    );
    assert_eq!(
        req["redirect_uris"][0],
        env.tool.join(&format!("lti/launch/{id}")).unwrap().as_str()
    );
    assert_eq!(
        req["jwks_uri"],
        env.tool.join(".well-known/jwks.json").unwrap().as_str()
    );
    let scope = req["scope"].as_str().unwrap();
    assert!(scope.contains("https://purl.imsglobal.org/spec/lti-ags/scope/score"));
    assert!(scope.contains("contextmembership.readonly"));
    let messages = req["https://purl.imsglobal.org/spec/lti-tool-configuration"]["messages"]
        .as_array()
        .unwrap();
    assert!(
        messages
            .iter()
            .any(|m| m["type"] == "LtiDeepLinkingRequest")
    );

    // Stored as the platform described itself, disabled, with Moodle's deployment.
    assert_eq!(platform.kind, PlatformKind::Moodle);
    assert_eq!(platform.issuer, env.lms.issuer());
    assert_eq!(platform.client_id, "dyn-client-1");
    assert_eq!(platform.auth_url, env.lms.auth_url());
    assert_eq!(platform.token_url, env.lms.token_url());
    assert_eq!(platform.jwks_url, env.lms.jwks_url());
    assert!(!platform.enabled);
    assert!(!platform.accept_new_deployments);
    let t = env.app.store().tenant(&env.scope);
    let deployments = t.deployments(platform.id).await.unwrap();
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0].deployment_id, "dep-dyn");
    let (via, config) = t.platform_origin(platform.id).await.unwrap();
    assert_eq!(via, "dynamic");
    assert_eq!(
        config.unwrap()["openid_configuration"]["issuer"],
        env.lms.issuer()
    );

    // Until an admin enables it, launches are refused with a clear page.
    let refused = env.launch().await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("registration_disabled"),
        "{}",
        refused.body
    );

    t.set_platform_enabled(platform.id, true, &Actor::system("admin"))
        .await
        .unwrap();
    let launched = env.launch().await;
    assert_eq!(launched.status, 200, "{}", launched.body);
    assert!(
        launched.url.path().ends_with(&format!("lti/launch/{id}")),
        "the launch came back to the registration's own URL: {}",
        launched.url
    );
    assert!(
        launched.body.contains("Launch received"),
        "{}",
        launched.body
    );
    assert!(
        launched.body.contains("<dd>student-1</dd>"),
        "{}",
        launched.body
    );
    assert!(
        launched.body.contains("<dd>moodle</dd>"),
        "{}",
        launched.body
    );

    // The audit chain saw the registration and the enabling.
    let report = env.app.store().verify_audit(None).await.unwrap();
    assert!(report.iter().all(|r| r.broken_at.is_none()), "{report:?}");
    let entries = env
        .app
        .store()
        .tenant(&env.scope)
        .audit_entries()
        .await
        .unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.contains(&"platform.registered_dynamically"),
        "{actions:?}"
    );
    assert!(actions.contains(&"platform.enabled"), "{actions:?}");
}

#[tokio::test]
async fn moodle_style_registration_round_trip_on_every_database() {
    for db in TestDatabase::all().await.unwrap() {
        moodle_round_trip(db).await;
    }
}

#[tokio::test]
async fn canvas_style_registration_learns_its_deployment_at_the_first_launch() {
    let env = env(TestDatabase::sqlite().await.unwrap()).await;
    env.lms.set_registration_style(RegistrationStyle::Canvas);
    let page = env.register().await;
    assert_eq!(page.status, 200, "{}", page.body);
    let platform = env.only_platform().await;
    assert_eq!(platform.kind, PlatformKind::Canvas);
    assert!(platform.accept_new_deployments);
    let req = &env.lms.registration_requests()[0];
    let lti = &req["https://purl.imsglobal.org/spec/lti-tool-configuration"];
    assert_eq!(
        lti["https://canvas.instructure.com/lti/privacy_level"],
        "public"
    );
    let t = env.app.store().tenant(&env.scope);
    assert!(t.deployments(platform.id).await.unwrap().is_empty());
    t.set_platform_enabled(platform.id, true, &Actor::system("admin"))
        .await
        .unwrap();
    // The first launch brings the deployment, which waits for approval like any new one.
    let first = env.launch().await;
    assert_eq!(first.status, 403, "{}", first.body);
    assert!(first.body.contains("deployment_pending"), "{}", first.body);
    t.approve_deployment(platform.id, "dep-dyn", &Actor::system("admin"))
        .await
        .unwrap();
    let second = env.launch().await;
    assert_eq!(second.status, 200, "{}", second.body);
}

#[tokio::test]
async fn registrations_without_a_valid_invite_or_configuration_are_refused() {
    let env = env(TestDatabase::sqlite().await.unwrap()).await;
    let browser = Browser::new();

    // No invite, a forged one, and a revoked one: nothing is fetched, nothing stored.
    let mut forged = env.tool.join("lti/register").unwrap();
    forged
        .query_pairs_mut()
        .append_pair("invite", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    for url in [env.tool.join("lti/register").unwrap(), forged] {
        let page = browser
            .get(env.lms.dynamic_registration_url(&url))
            .await
            .unwrap();
        assert_eq!(page.status, 404, "{}", page.body);
        assert!(page.body.contains("invite_invalid"));
    }
    assert!(env.lms.registration_requests().is_empty());

    // The invite is good but the platform's parameters are not.
    let bad_configs = [
        ("javascript:alert(1)", "openid_configuration_invalid"),
        ("ftp://127.0.0.1/x", "openid_configuration_invalid"),
        // A configuration that is not where the issuer says it is (another loopback port).
        (
            "http://127.0.0.1:9/.well-known/openid-configuration",
            "openid_configuration_unreachable",
        ),
    ];
    for (config, code) in bad_configs {
        let mut url = env.registration_url.clone();
        url.query_pairs_mut()
            .append_pair("openid_configuration", config)
            .append_pair("registration_token", "x");
        let page = browser.get(url).await.unwrap();
        assert!(page.status >= 400, "{config}: {}", page.body);
        assert!(page.body.contains(code), "{config}: {}", page.body);
        assert!(!page.body.contains("<script>alert"), "no reflected input");
    }
    let page = browser.get(env.registration_url.clone()).await.unwrap();
    assert_eq!(page.status, 400);
    assert!(page.body.contains("openid_configuration_missing"));

    // A registration token the platform did not issue: the platform refuses, we say so.
    let mut url = env.registration_url.clone();
    url.query_pairs_mut()
        .append_pair(
            "openid_configuration",
            env.lms.openid_configuration_url().as_str(),
        )
        .append_pair("registration_token", "forged-token");
    let page = browser.get(url).await.unwrap();
    assert_eq!(page.status, 502, "{}", page.body);
    assert!(page.body.contains("registration_refused"), "{}", page.body);
    assert!(page.body.contains("HTTP 401"), "{}", page.body);
    assert!(
        env.app
            .store()
            .tenant(&env.scope)
            .list_platforms()
            .await
            .unwrap()
            .is_empty()
    );

    // A revoked invite stops working.
    let t = env.app.store().tenant(&env.scope);
    let invites = t.registration_invites().await.unwrap();
    assert_eq!(invites.len(), 1);
    assert!(invites[0].used_count >= 4, "{invites:?}");
    t.revoke_registration_invite(&invites[0].id, &Actor::system("admin"))
        .await
        .unwrap();
    let page = env.register().await;
    assert_eq!(page.status, 404, "{}", page.body);
}

#[tokio::test]
async fn an_issuer_that_does_not_match_the_configuration_url_is_refused() {
    // The configuration is served from 127.0.0.1 but claims another issuer host.
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let evil = axum::Router::new().route(
        "/.well-known/openid-configuration",
        get(move || async move {
            axum::Json(serde_json::json!({
                "issuer": "https://canvas.instructure.com",
                "authorization_endpoint": format!("http://{addr}/auth"),
                "token_endpoint": format!("http://{addr}/token"),
                "jwks_uri": format!("http://{addr}/jwks"),
                "registration_endpoint": format!("http://{addr}/register"),
                "id_token_signing_alg_values_supported": ["RS256"],
            }))
        }),
    );
    tokio::spawn(async move { axum::serve(listener, evil).await });
    let env = env(TestDatabase::sqlite().await.unwrap()).await;
    let mut url = env.registration_url.clone();
    url.query_pairs_mut().append_pair(
        "openid_configuration",
        &format!("http://{addr}/.well-known/openid-configuration"),
    );
    let page = Browser::new().get(url).await.unwrap();
    assert_eq!(page.status, 502, "{}", page.body);
    assert!(page.body.contains("issuer_mismatch"), "{}", page.body);
}
