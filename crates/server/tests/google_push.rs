//! Classroom roster push end to end over loopback: `POST /google/push` refuses every token
//! Pub/Sub would not have signed (none, another audience, a key Google does not publish,
//! expired, another service account, unverified email, HS256) and records nothing; a valid
//! push for a registered course queues a roster re-sync that picks up the change, once per
//! message however often Pub/Sub redelivers it. Registrations are renewed before their
//! one-week expiry, driven by the clock parameter, and without push configured linked courses
//! are re-synced on their interval. Run on SQLite and, when configured, PostgreSQL.

use classroom::oauth::AuthorizationRequest;
use classroom::{ClientId, ClientSecret, OAuthClient, OAuthConfig};
use server::{AppBuilder, Settings};
use std::time::{Duration, Instant};
use store::crypto::MasterKey;
use store::google::{GoogleCourseInput, NewGoogleClient, NewGoogleGrant, SecretString};
use testkit::classroom::{
    ClassroomConfig, GooglePushSigner, OAuthClientRegistration, PushTokenClaims, SpawnedCerts,
};
use testkit::{SimulatedClassroom, SpawnedClassroom};
use url::Url;

const AUDIENCE: &str = "https://lmsbridge.test/google/push";
const ACCOUNT: &str = "classroom-push@school-project.iam.gserviceaccount.com";
const TOPIC: &str = "projects/school-project/topics/classroom-roster";
const DAY: i64 = 24 * 3600 * 1_000_000;

struct Harness {
    base: Url,
    api_key: String,
    app: server::App,
    scope: store::TenantScope,
    platform: domain::PlatformId,
    fake: SimulatedClassroom,
    _fake_server: SpawnedClassroom,
    signer: GooglePushSigner,
    _certs: SpawnedCerts,
    http: reqwest::Client,
    dir: std::path::PathBuf,
    server: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start(database_url: Option<String>, push: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("lmsbridge-gpush-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut settings = Settings::defaults_for(addr, dir.clone());
        if let Some(url) = database_url {
            settings.database_url = url;
        }
        let master = MasterKey::generate();
        settings.master_key = Some(master.to_base64());
        let redirect = settings.public("google/oauth/callback");
        let (fake, fake_server) = SimulatedClassroom::spawn_with(|c| ClassroomConfig {
            client: OAuthClientRegistration::new("lmsbridge-test", redirect.clone()),
            ..c
        })
        .await
        .unwrap();
        let (signer, certs) = GooglePushSigner::spawn().await.unwrap();
        let urls = fake.urls();
        settings.google_authorization_url = urls.authorization.clone();
        settings.google_token_url = urls.token.clone();
        settings.google_revocation_url = urls.revocation.clone();
        settings.google_userinfo_url = urls.userinfo.clone();
        settings.google_classroom_api_url = urls.api_base.clone();
        settings.google_push_audience = Some(AUDIENCE.into());
        settings.google_push_service_account = Some(ACCOUNT.into());
        settings.google_push_certs_url = signer.certs_url().clone();
        settings.google_pubsub_topic = push.then(|| TOPIC.to_owned());
        settings.google_resync_interval_secs = 3600;
        let running = AppBuilder::new(settings.clone()).build().await.unwrap();
        let app = running.app.clone();
        let actor = domain::Actor::system("test");
        let (tenant, key) = app
            .store()
            .create_tenant("Push School", None, &actor)
            .await
            .unwrap();
        let scope = app.store().tenant_scope(tenant.id).await.unwrap();
        let registered = fake.client();
        let platform = app
            .store()
            .tenant(&scope)
            .configure_google_client(
                &NewGoogleClient {
                    client_id: registered.client_id.clone(),
                    client_secret: SecretString::new(registered.client_secret.clone()),
                    project_number: None,
                    authorization_url: urls.authorization.clone(),
                    token_url: urls.token.clone(),
                    certs_url: signer.certs_url().clone(),
                },
                &master,
                &actor,
            )
            .await
            .unwrap()
            .id;
        let router = server::router(app.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let h = Self {
            base: settings.public(""),
            api_key: key.secret().to_owned(),
            app,
            scope,
            platform,
            fake,
            _fake_server: fake_server,
            signer,
            _certs: certs,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            dir,
            server,
        };
        h.connect_teacher(&master, redirect).await;
        h
    }

    /// Ada consents (rosters and push) through the fake's OAuth; her grant is stored and
    /// Algebra 1 linked with it, as the connect flow does.
    async fn connect_teacher(&self, master: &MasterKey, redirect: Url) {
        let registered = self.fake.client();
        let urls = self.fake.urls();
        let oauth = OAuthClient::new(
            self.http.clone(),
            OAuthConfig {
                client_id: ClientId::new(registered.client_id.clone()),
                client_secret: ClientSecret::new(registered.client_secret.clone()),
                redirect_uri: redirect,
                endpoints: classroom::GoogleEndpoints {
                    authorization: urls.authorization,
                    token: urls.token,
                    revocation: urls.revocation,
                    userinfo: urls.userinfo,
                    api_base: urls.api_base.clone(),
                },
            },
        );
        let mut scopes = classroom::scopes::SIGN_IN.to_vec();
        scopes.extend_from_slice(classroom::scopes::ROSTER);
        scopes.extend_from_slice(classroom::scopes::PUSH);
        let teacher = self.fake.teacher();
        let pending =
            oauth.authorization_url(&AuthorizationRequest::new(&scopes).login_hint(&teacher.email));
        let consent = self.http.get(pending.url.clone()).send().await.unwrap();
        let back = Url::parse(consent.headers()["location"].to_str().unwrap()).unwrap();
        let cb = OAuthClient::parse_callback(&back, &pending.state).unwrap();
        let grant = oauth
            .exchange_code(&cb.code, &pending.verifier)
            .await
            .unwrap();
        let tenant = self.app.store().tenant(&self.scope);
        let saved = tenant
            .save_google_grant(
                self.platform,
                &NewGoogleGrant {
                    google_sub: teacher.id.clone(),
                    email: Some(teacher.email.clone()),
                    name: Some(teacher.full_name()),
                    given_name: None,
                    family_name: None,
                    scopes: grant.scopes.iter().map(str::to_owned).collect(),
                    refresh_token: grant.refresh_token.map(|t| SecretString::new(t.secret())),
                },
                master,
                &domain::Actor::system("test"),
            )
            .await
            .unwrap();
        let algebra = self.fake.algebra_course_id();
        tenant
            .link_google_course(
                self.platform,
                saved.id,
                &GoogleCourseInput {
                    course_id: algebra.clone(),
                    name: Some("Algebra 1".into()),
                    section: None,
                    course_state: Some("ACTIVE".into()),
                },
                &adapters::course_roster_url(&urls.api_base, &algebra),
                &domain::Actor::system("test"),
            )
            .await
            .unwrap();
    }

    async fn push(&self, token: Option<&str>, body: &serde_json::Value) -> u16 {
        let mut req = self
            .http
            .post(self.base.join("google/push").unwrap())
            .json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().status().as_u16()
    }

    async fn members(&self, context: &str, status: &str) -> Vec<String> {
        let v: serde_json::Value = self
            .http
            .get(
                self.base
                    .join(&format!(
                        "api/v1/contexts/{context}/members?status={status}&limit=100"
                    ))
                    .unwrap(),
            )
            .bearer_auth(&self.api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["platform_user_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn stop(self) {
        self.server.abort();
        self.app.store().close().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until the context has no queued or running sync, after one was started.
async fn wait_for_sync(tenant: &store::TenantStore<'_>, context: domain::ContextId) {
    let started = Instant::now();
    loop {
        if tenant
            .roster_source(context)
            .await
            .unwrap()
            .active
            .is_none()
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the roster sync did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_push_tokens_are_refused_and_a_valid_push_resyncs_the_course() {
    store::testing::on_sqlite_then_postgres("the push flow", Duration::from_secs(120), push_flow)
        .await;
}

async fn push_flow(db: Option<String>) {
    let h = Harness::start(db, true).await;
    let algebra = h.fake.algebra_course_id();
    let tenant = h.app.store().tenant(&h.scope);

    // The course is registered for roster changes with the teacher's grant.
    let reg = server::google_push_renewal::register_course(
        &h.app,
        &h.scope,
        h.platform,
        &algebra,
        &h.fake.teacher().id,
    )
    .await
    .unwrap();
    let in_fake = h.fake.registrations();
    assert_eq!(in_fake.len(), 1);
    assert_eq!(in_fake[0].course_id, algebra);
    assert_eq!(in_fake[0].feed_type, "COURSE_ROSTER_CHANGES");
    assert_eq!(in_fake[0].topic, TOPIC);
    assert_eq!(reg.registration_id.as_deref(), Some(in_fake[0].id.as_str()));
    let lead = reg.expires_at - store::now_micros();
    assert!(lead > 6 * DAY && lead <= 7 * DAY, "a week: {lead}");

    // Every token Pub/Sub would not have sent is refused, and nothing is recorded.
    let body = GooglePushSigner::push_body("msg-1", &algebra, "DELETED");
    let valid = PushTokenClaims::valid(AUDIENCE, ACCOUNT);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let hs256 = {
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        jsonwebtoken::encode(
            &header,
            &valid,
            &jsonwebtoken::EncodingKey::from_secret(b"guessable"),
        )
        .unwrap()
    };
    let refusals: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("garbage", Some("not-a-jwt".into())),
        (
            "another audience",
            Some(h.signer.token(&PushTokenClaims {
                aud: "https://attacker.example/push".into(),
                ..valid.clone()
            })),
        ),
        (
            "a key Google does not publish",
            Some(GooglePushSigner::forged_token(&valid)),
        ),
        (
            "a key id Google does not publish",
            Some(
                lti::keys::ToolKey::generate("attacker-kid")
                    .unwrap()
                    .sign(&valid)
                    .unwrap(),
            ),
        ),
        (
            "expired",
            Some(h.signer.token(&PushTokenClaims {
                iat: now - 7200,
                exp: now - 3600,
                ..valid.clone()
            })),
        ),
        (
            "another service account",
            Some(h.signer.token(&PushTokenClaims {
                email: "someone@evil-project.iam.gserviceaccount.com".into(),
                ..valid.clone()
            })),
        ),
        (
            "unverified email",
            Some(h.signer.token(&PushTokenClaims {
                email_verified: false,
                ..valid.clone()
            })),
        ),
        (
            "not Google",
            Some(h.signer.token(&PushTokenClaims {
                iss: "https://accounts.evil.example".into(),
                ..valid.clone()
            })),
        ),
        ("HS256", Some(hs256)),
    ];
    for (what, token) in &refusals {
        assert_eq!(h.push(token.as_deref(), &body).await, 401, "{what}");
    }
    assert!(tenant.push_events(10).await.unwrap().is_empty());

    // A student leaves Algebra; the valid push re-syncs the course and the roster shows it.
    let linked = tenant
        .google_courses(h.platform)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.course_id == algebra)
        .unwrap();
    let context = linked.context_id.to_string();
    // The roster as first synced: every student.
    assert_eq!(
        server::google_push_renewal::resync_course(&h.app, &h.scope, h.platform, &algebra)
            .await
            .unwrap(),
        "resync_queued"
    );
    wait_for_sync(&tenant, linked.context_id).await;
    let leaving = h.fake.students().last().unwrap().id.clone();
    assert!(h.members(&context, "active").await.contains(&leaving));
    assert!(h.fake.remove_student(&algebra, &leaving));
    let token = h.signer.token(&valid);
    assert_eq!(h.push(Some(&token), &body).await, 204);
    let events = tenant.push_events(10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].course_id, algebra);
    assert_eq!(events[0].event_type.as_deref(), Some("DELETED"));
    assert_eq!(events[0].outcome, "resync_queued");
    wait_for_sync(&tenant, linked.context_id).await;
    let active = h.members(&context, "active").await;
    assert!(!active.contains(&leaving), "{active:?}");
    assert_eq!(
        active.len(),
        h.fake.students().len() - 1 + 2,
        "six students, two teachers"
    );
    assert!(h.members(&context, "deleted").await.contains(&leaving));

    // Pub/Sub redelivers: the same message is acknowledged and queues nothing more.
    let syncs_before = h.fake.requests().len();
    assert_eq!(h.push(Some(&token), &body).await, 204);
    assert_eq!(tenant.push_events(10).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.fake.requests().len(),
        syncs_before,
        "no second sync read Classroom"
    );
    // A push for a course nobody registered is acknowledged and recorded nowhere.
    let other = GooglePushSigner::push_body("msg-2", "999999", "CREATED");
    assert_eq!(h.push(Some(&token), &other).await, 204);
    assert_eq!(tenant.push_events(10).await.unwrap().len(), 1);
    // Not a Pub/Sub body at all.
    assert_eq!(
        h.push(Some(&token), &serde_json::json!({"hello": "world"}))
            .await,
        400
    );

    // Renewal by the clock: nothing is due now; six and a half days on, the registration is
    // created again (Classroom extends it) and its new expiry stored; a second pass at that
    // moment finds it leased.
    let now = store::now_micros();
    assert_eq!(
        server::google_push_renewal::renew_due(&h.app, now)
            .await
            .unwrap(),
        0
    );
    assert_eq!(h.fake.registrations().len(), 1);
    let later = now + 6 * DAY + DAY / 2;
    // The first attempt fails at Classroom: the failure is kept, and the registration stays
    // leased to that pass for a while before it is tried again.
    h.fake
        .faults()
        .fail_next(1, testkit::classroom::ClassroomFault::Internal);
    assert_eq!(
        server::google_push_renewal::renew_due(&h.app, later)
            .await
            .unwrap(),
        0
    );
    let failed = tenant
        .push_registration(h.platform, &algebra)
        .await
        .unwrap()
        .unwrap();
    assert!(failed.last_error.is_some());
    assert_eq!(
        server::google_push_renewal::renew_due(&h.app, later + 1_000_000)
            .await
            .unwrap(),
        0,
        "leased to the pass that tried"
    );
    let after_lease = later + 6 * 60 * 1_000_000;
    assert_eq!(
        server::google_push_renewal::renew_due(&h.app, after_lease)
            .await
            .unwrap(),
        1
    );
    let in_fake = h.fake.registrations();
    assert_eq!(in_fake.len(), 2, "created again before the week ran out");
    assert!(in_fake.iter().all(|r| r.course_id == algebra));
    let renewed = tenant
        .push_registration(h.platform, &algebra)
        .await
        .unwrap()
        .unwrap();
    assert!(renewed.renewed_at.is_some());
    assert!(renewed.last_error.is_none());
    assert!(renewed.expires_at > reg.expires_at);
    assert_eq!(
        renewed.registration_id.as_deref(),
        Some(in_fake[1].id.as_str())
    );
    assert_eq!(
        server::google_push_renewal::renew_due(&h.app, store::now_micros())
            .await
            .unwrap(),
        0,
        "a week ahead again"
    );
    // No interval re-sync while a live registration covers the course; once it lapsed
    // (renewal failing for a month), the interval takes over.
    assert_eq!(
        server::google_push_renewal::resync_stale_courses(&h.app, now + 2 * 3600 * 1_000_000)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        server::google_push_renewal::resync_stale_courses(&h.app, now + 30 * DAY)
            .await
            .unwrap(),
        1
    );
    wait_for_sync(&tenant, linked.context_id).await;
    let invalid = h.fake.invalid_requests();
    assert!(invalid.is_empty(), "{invalid:#?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_push_linked_courses_are_resynced_on_their_interval() {
    let h = Harness::start(None, false).await;
    let now = store::now_micros();
    assert_eq!(
        server::google_push_renewal::resync_stale_courses(&h.app, now)
            .await
            .unwrap(),
        0,
        "just linked"
    );
    assert_eq!(
        server::google_push_renewal::resync_stale_courses(&h.app, now + 3601 * 1_000_000)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        server::google_push_renewal::register_linked_courses(&h.app)
            .await
            .unwrap(),
        0,
        "no registrations without a topic"
    );
    assert!(h.fake.registrations().is_empty());
    // The push endpoint still checks its token; a valid push for an unregistered course is
    // acknowledged.
    let token = h.signer.token(&PushTokenClaims::valid(AUDIENCE, ACCOUNT));
    let body = GooglePushSigner::push_body("m", &h.fake.algebra_course_id(), "CREATED");
    assert_eq!(h.push(Some(&token), &body).await, 204);
    assert_eq!(h.push(None, &body).await, 401);
    h.stop().await;
}
