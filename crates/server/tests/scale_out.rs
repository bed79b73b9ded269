//! Two lmsbridge instances on one PostgreSQL: a login begun on one finishes on the other,
//! and both publish the same keys.

use domain::{Actor, PlatformKind};
use reqwest::redirect::Policy;
use server::{AppBuilder, Settings};
use std::collections::HashMap;
use store::NewPlatform;
use store::crypto::MasterKey;
use store::testing::TestDatabase;
use testkit::{SimulatedLms, ToolRegistration};
use url::Url;

async fn instance(
    db_url: &str,
    master: &MasterKey,
    public: &Url,
    listener: tokio::net::TcpListener,
) -> server::App {
    let dir = std::env::temp_dir().join(format!("lmsbridge-scale-{}", uuid::Uuid::new_v4()));
    let mut settings = Settings::defaults_for(listener.local_addr().unwrap(), dir);
    settings.database_url = db_url.to_owned();
    settings.master_key = Some(master.to_base64());
    settings.public_url = public.clone();
    let running = AppBuilder::new(settings).build().await.unwrap();
    let app = running.app.clone();
    let router = server::router(running.app);
    tokio::spawn(async move { axum::serve(listener, router).await });
    app
}

#[tokio::test]
async fn login_on_one_instance_launch_on_the_other() {
    let Some(db) = TestDatabase::postgres().await.unwrap() else {
        return;
    };
    let a_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // The public URL is the load balancer's; here instance A's address stands in for it.
    let public = Url::parse(&format!("http://{}/", a_listener.local_addr().unwrap())).unwrap();
    let b = Url::parse(&format!("http://{}/", b_listener.local_addr().unwrap())).unwrap();
    let master = MasterKey::generate();
    let app_a = instance(&db.url, &master, &public, a_listener).await;
    let _app_b = instance(&db.url, &master, &public, b_listener).await;

    let (lms, _server) = SimulatedLms::spawn(ToolRegistration {
        client_id: "scale-client".into(),
        deployment_id: "dep-1".into(),
        login_url: public.join("lti/login").unwrap(),
        launch_url: public.join("lti/launch").unwrap(),
        jwks_url: public.join(".well-known/jwks.json").unwrap(),
    })
    .await
    .unwrap();
    let store = app_a.store();
    let (tenant, _) = store
        .create_tenant("Scaled", None, &Actor::system("t"))
        .await
        .unwrap();
    let scope = store.tenant_scope(tenant.id).await.unwrap();
    store
        .tenant(&scope)
        .add_platform(
            &NewPlatform {
                kind: PlatformKind::Lti,
                issuer: lms.issuer(),
                client_id: "scale-client".into(),
                auth_url: lms.auth_url(),
                token_url: lms.token_url(),
                jwks_url: lms.jwks_url(),
                token_audience: None,
                accept_new_deployments: false,
                deployment_ids: vec!["dep-1".into()],
            },
            &Actor::system("t"),
        )
        .await
        .unwrap();

    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    // Both instances publish the same keys.
    let jwks_a: serde_json::Value = http
        .get(public.join(".well-known/jwks.json").unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks_b: serde_json::Value = http
        .get(b.join(".well-known/jwks.json").unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks_a, jwks_b);

    for user in ["student-1", "student-2", "teacher-1"] {
        // Login on A ...
        let to_login = http
            .get(lms.launch_url(user, "resource-1"))
            .send()
            .await
            .unwrap();
        let login_url = Url::parse(to_login.headers()["location"].to_str().unwrap()).unwrap();
        assert_eq!(login_url.origin(), public.origin());
        let login = http.get(login_url).send().await.unwrap();
        assert_eq!(login.status(), 303);
        let cookie = login.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let auth = http
            .get(login.headers()["location"].to_str().unwrap())
            .send()
            .await
            .unwrap();
        let body = auth.text().await.unwrap();
        let field = |name: &str| {
            let m = format!("name=\"{name}\" value=\"");
            let s = body.find(&m).unwrap() + m.len();
            body[s..s + body[s..].find('"').unwrap()].to_owned()
        };
        let form: HashMap<&str, String> =
            [("id_token", field("id_token")), ("state", field("state"))].into();
        // ... launch on B.
        let launch = http
            .post(b.join("lti/launch").unwrap())
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = launch.status();
        let page = launch.text().await.unwrap();
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Launch received"));
        // The launch is spent for both instances now.
        let again = http
            .post(public.join("lti/launch").unwrap())
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 401);
    }
    let launches = store
        .tenant(&scope)
        .audit_entries()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "launch.accepted")
        .count();
    assert_eq!(launches, 3);
    assert!(
        store
            .verify_audit(None)
            .await
            .unwrap()
            .iter()
            .all(|r| r.is_intact())
    );
    db.cleanup().await;
}
