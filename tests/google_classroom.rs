//! Google Classroom end to end over loopback, against the simulated Classroom (which checks
//! every API request against Google's discovery document): a teacher connects through a
//! connect link (OAuth with PKCE, the state bound to the browser's cookie and single use),
//! a course is linked and its roster synced into the product API, courseWork is created
//! through the API, and scores posted with `POST /api/v1/scores` land in Classroom scaled to
//! `maxPoints`, as `draftGrade` or as a returned `assignedGrade` per target. Faults: a 429
//! `RESOURCE_EXHAUSTED` is retried after its `Retry-After`; a courseWork made by another
//! Cloud project dies explaining ProjectPermissionDenied; a grant revoked at Google dies
//! with a clear reason and shows as revoked. Run on SQLite and, when configured, PostgreSQL.

#[path = "common/harness.rs"]
mod harness;

use harness::{Api, Served};
use serde_json::{Value, json};
use server::AppBuilder;
use std::time::{Duration, Instant};
use store::crypto::MasterKey;
use store::google::{GradeMode, NewGoogleCourseWork};
use testkit::classroom::{
    ClassroomConfig, ClassroomFault, Consent, OAuthClientRegistration, RetryAfter,
};
use testkit::{Browser, SimulatedClassroom, SpawnedClassroom};
use url::Url;

const PATIENCE: Duration = Duration::from_secs(40);

/// The Cloud Pub/Sub topic roster changes are published to.
const ROSTER_TOPIC: &str = "projects/lmsbridge-test/topics/classroom-roster";

struct Harness {
    api: Api,
    fake: SimulatedClassroom,
    _fake_server: SpawnedClassroom,
    app: server::App,
    scope: store::TenantScope,
    master: MasterKey,
    served: Served,
}

// The harness is the product API it calls, plus what it set up.
impl std::ops::Deref for Harness {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Harness {
    async fn start(database_url: Option<String>) -> Self {
        let (mut settings, dir) = harness::settings("google", database_url);
        let master = MasterKey::generate();
        settings.master_key = Some(master.to_base64());
        let listener = lmsbridge::demo::bind(&mut settings).await.unwrap();
        let redirect = settings.public("google/oauth/callback");
        let (fake, fake_server) = SimulatedClassroom::spawn_with(|c| ClassroomConfig {
            client: OAuthClientRegistration::new("lmsbridge-test", redirect.clone()),
            ..c
        })
        .await
        .unwrap();
        harness::point_at_classroom(&mut settings, &fake);
        // Push configured: a linked course is registered for roster changes.
        settings.google_pubsub_topic = Some(ROSTER_TOPIC.into());
        let worker = passback::WorkerConfig {
            poll_interval: Duration::from_millis(100),
            backoff: passback::Backoff {
                base: Duration::from_millis(200),
                cap: Duration::from_secs(2),
            },
            ..passback::WorkerConfig::default()
        };
        let running = AppBuilder::new(settings.clone())
            .worker_config(worker)
            .build()
            .await
            .unwrap();
        let app = running.app.clone();
        let school = harness::google_tenant(
            &app,
            "Google School",
            None,
            &fake,
            Some("424242"),
            &fake.urls().userinfo,
            &master,
        )
        .await;
        let scope = school.scope;
        let served = Served::spawn(listener, running, server::router, true, dir);
        Self {
            api: Api {
                http: harness::http(false),
                base: settings.public(""),
                api_key: school.api_key,
            },
            fake,
            _fake_server: fake_server,
            app,
            scope,
            master,
            served,
        }
    }

    async fn get(&self, path: &str) -> Value {
        let (s, v) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(s, 200, "GET {path}: {v:#}");
        v
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn connect_link(&self) -> Url {
        let (s, v) = self
            .post(
                "api/v1/google/connect-links",
                json!({"features": ["roster", "coursework"]}),
            )
            .await;
        assert_eq!(s, 201, "{v:#}");
        Url::parse(v["url"].as_str().unwrap()).unwrap()
    }

    async fn stop(self) {
        self.served.stop().await;
    }
}

async fn wait_sync(h: &Harness, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let v = h.get(&format!("api/v1/roster-syncs/{id}")).await;
        if v["state"] == "done" || v["state"] == "failed" {
            return v;
        }
        assert!(started.elapsed() < PATIENCE, "sync stuck: {v:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_sync_create_and_grade_through_classroom() {
    store::testing::on_sqlite_then_postgres(
        "the Google Classroom flow",
        Duration::from_secs(180),
        run,
    )
    .await;
}

async fn run(db: Option<String>) {
    let label = if db.is_some() { "postgres" } else { "sqlite" };
    let h = Harness::start(db).await;
    let teacher = h.fake.teacher();

    // 1. The state is bound to the browser and single use: the callback without the
    //    cookie is refused, and after that the state is gone.
    let link = h.connect_link().await;
    let walk = harness::sign_in_without_cookies(&h.http, link.clone()).await;
    assert_eq!(walk.start_status, 302);
    let cookie = &walk.cookie;
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        walk.callback
            .starts_with(h.base.join("google/oauth/callback").unwrap().as_str())
    );
    assert_eq!(walk.without_cookie.0, 400);
    assert!(walk.without_cookie.1.contains("another browser"));
    assert_eq!(walk.replayed.0, 400);
    assert!(walk.replayed.1.contains("already used"));
    // A forged link does nothing.
    let forged = h
        .http
        .get(h.base.join("google/oauth/start?link=AAAA").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 400);

    // 1b. Google's refusals come back as pages that say what to do.
    for (consent, words) in [
        (Consent::Deny, "did not give consent"),
        (
            Consent::AdminBlocked,
            "administrator has not allowed this app",
        ),
    ] {
        h.fake.set_consent(consent);
        let page = Browser::new()
            .get(h.connect_link().await.as_str())
            .await
            .unwrap();
        assert_eq!(page.status, 400, "{}", page.body);
        assert!(page.body.contains(words), "{}", page.body);
    }
    h.fake.set_consent(Consent::GrantAll);
    assert!(
        h.get("api/v1/google").await["grants"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing stored from a refused consent"
    );

    // 2. The teacher connects in a browser that follows every redirect with its cookies.
    let browser = Browser::new();
    let page = browser.get(h.connect_link().await.as_str()).await.unwrap();
    assert_eq!(page.status, 200, "{label}: {}", page.body);
    assert!(
        page.body.contains("Google Classroom connected"),
        "{}",
        page.body
    );
    assert!(page.body.contains(&teacher.email));
    let auth = h.fake.authorizations().last().cloned().unwrap();
    assert_eq!(auth.access_type.as_deref(), Some("offline"));
    assert_eq!(auth.include_granted_scopes.as_deref(), Some("true"));
    assert_eq!(auth.code_challenge_method.as_deref(), Some("S256"));
    assert!(auth.refresh_token_promised);
    for s in [
        "https://www.googleapis.com/auth/classroom.courses.readonly",
        "https://www.googleapis.com/auth/classroom.rosters.readonly",
        "https://www.googleapis.com/auth/classroom.coursework.students",
    ] {
        assert!(auth.scopes.iter().any(|x| x == s), "{s} asked for");
    }
    assert!(
        !auth.scopes.iter().any(|s| s.contains("addons")),
        "only what the features need: {:?}",
        auth.scopes
    );
    assert!(
        auth.scopes
            .iter()
            .any(|s| s == "https://www.googleapis.com/auth/classroom.push-notifications"),
        "rosters with push configured ask to register for roster changes: {:?}",
        auth.scopes
    );
    let status = h.get("api/v1/google").await;
    assert_eq!(status["configured"], true);
    let grant = &status["grants"][0];
    assert_eq!(grant["google_sub"], teacher.id.as_str());
    assert_eq!(grant["status"], "active");
    assert_eq!(grant["has_refresh_token"], true);
    let grant_id = grant["id"].as_str().unwrap().to_owned();

    // 3. The teacher's courses, then one linked and its roster synced in the background.
    let courses = h
        .get(&format!("api/v1/google/courses?grant_id={grant_id}"))
        .await;
    let algebra = h.fake.algebra_course_id();
    assert!(
        courses["courses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["course_id"] == algebra.as_str()),
        "{courses:#}"
    );
    let (s, linked) = h
        .post(
            "api/v1/google/courses",
            json!({"grant_id": grant_id, "course_id": algebra}),
        )
        .await;
    assert_eq!(s, 201, "{linked:#}");
    assert_eq!(linked["roster_push"]["state"], "registered", "{linked:#}");
    let registrations = h.fake.registrations();
    assert_eq!(registrations.len(), 1, "{registrations:?}");
    assert_eq!(registrations[0].course_id, algebra.as_str());
    assert_eq!(registrations[0].topic, ROSTER_TOPIC);
    assert_eq!(registrations[0].user_id, teacher.id.as_str());
    let context = linked["course"]["context_id"].as_str().unwrap().to_owned();
    let sync_id = linked["sync"]["id"].as_str().unwrap().to_owned();
    let sync = wait_sync(&h, &sync_id).await;
    assert_eq!(sync["state"], "done", "{sync:#}");
    assert!(
        sync["pages_fetched"].as_i64().unwrap() >= 2,
        "students then teachers"
    );
    let members = h
        .get(&format!("api/v1/contexts/{context}/members?limit=100"))
        .await;
    let members = members["members"].as_array().unwrap().clone();
    let students = h.fake.students();
    assert_eq!(
        members
            .iter()
            .filter(|m| m["roles"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == "learner"))
            .count(),
        students.len(),
        "{members:#?}"
    );
    let ada = members
        .iter()
        .find(|m| m["platform_user_id"] == teacher.id.as_str())
        .expect("the teacher is a member");
    assert!(
        ada["roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "instructor")
    );
    assert_eq!(
        ada["person_id"], grant["person_id"],
        "one person for the teacher"
    );
    let student = &students[0];
    let member = members
        .iter()
        .find(|m| m["platform_user_id"] == student.id.as_str())
        .unwrap();
    assert_eq!(
        member["email"],
        student.email.as_str(),
        "emails with profile.emails"
    );
    assert_eq!(member["source"], "classroom", "{member:#}");
    let person = member["person_id"].clone();

    // 3b. Per-course isolation: a second course whose domain admin has not allowed the
    //     Classroom API fails its sync with a clear state; the first course is untouched.
    let stats = courses["courses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Geometry")
        .expect("the teacher teaches Geometry")["course_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, other) = h
        .post(
            "api/v1/google/courses",
            json!({"grant_id": grant_id, "course_id": stats}),
        )
        .await;
    assert_eq!(s, 201, "{other:#}");
    let other_context = other["course"]["context_id"].as_str().unwrap().to_owned();
    wait_sync(&h, other["sync"]["id"].as_str().unwrap()).await;
    h.fake.faults().fail_next(
        1,
        ClassroomFault::Error {
            http_status: 403,
            status: "PERMISSION_DENIED".into(),
            message: "@ClassroomApiDisabled The user is not permitted to access the Classroom API."
                .into(),
        },
    );
    let (s, resync) = h
        .post(&format!("api/v1/contexts/{other_context}/sync"), json!({}))
        .await;
    assert_eq!(s, 202, "{resync:#}");
    let failed = wait_sync(&h, resync["id"].as_str().unwrap()).await;
    assert_eq!(failed["state"], "failed", "{failed:#}");
    assert_eq!(
        failed["error"]["code"], "admin_approval_required",
        "{failed:#}"
    );
    let status = h.get("api/v1/google").await;
    let state_of = |id: &str| {
        status["courses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["context_id"] == id)
            .unwrap()["access_state"]
            .clone()
    };
    assert_eq!(state_of(&other_context), "admin_approval_required");
    assert_eq!(state_of(&context), "ok");
    let (s, again) = h
        .post(&format!("api/v1/contexts/{context}/sync"), json!({}))
        .await;
    assert_eq!(s, 202, "{again:#}");
    assert_eq!(
        wait_sync(&h, again["id"].as_str().unwrap()).await["state"],
        "done"
    );

    // 3c. A student leaves the course in Classroom: the next full sync marks them deleted.
    let leaver = students.last().unwrap().id.clone();
    assert!(h.fake.remove_student(&algebra, &leaver));
    let (s, resync) = h
        .post(&format!("api/v1/contexts/{context}/sync"), json!({}))
        .await;
    assert_eq!(s, 202, "{resync:#}");
    let done = wait_sync(&h, resync["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "done", "{done:#}");
    assert_eq!(done["removed"], 1, "{done:#}");
    let all = h
        .get(&format!(
            "api/v1/contexts/{context}/members?status=all&limit=100"
        ))
        .await;
    let gone = all["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform_user_id"] == leaver.as_str())
        .unwrap()
        .clone();
    assert_eq!(gone["status"], "deleted", "{gone:#}");

    // 4. courseWork through the API; a score lands as a draft grade, scaled to maxPoints.
    let (s, draft) = h
        .post(
            &format!("api/v1/contexts/{context}/google/course-work"),
            json!({"title": "Fractions quiz", "max_points": 20, "grade_mode": "draft"}),
        )
        .await;
    assert_eq!(s, 201, "{draft:#}");
    let draft_work = draft["course_work_id"].as_str().unwrap().to_owned();
    let made = h.fake.course_work(&draft_work).unwrap();
    assert_eq!(made.max_points, Some(20.0));
    assert_eq!(made.project, "lmsbridge-test");
    let v = h.score(&draft["grade_target_id"], &person, 8.5, 10.0).await;
    assert_eq!(v["status"]["state"], "delivered", "{label}: {v:#}");
    let sub = h.fake.submission_of(&draft_work, &student.id).unwrap();
    assert_eq!(sub.draft_grade, Some(17.0));
    assert_eq!(
        sub.assigned_grade, None,
        "draft mode leaves assignedGrade alone"
    );

    // 5. Assigned mode with return: the student sees it.
    let (s, assigned) = h
        .post(
            &format!("api/v1/contexts/{context}/google/course-work"),
            json!({"title": "Unit test", "max_points": 50, "grade_mode": "assigned", "return_on_grade": true}),
        )
        .await;
    assert_eq!(s, 201, "{assigned:#}");
    let assigned_work = assigned["course_work_id"].as_str().unwrap().to_owned();
    let v = h
        .score(&assigned["grade_target_id"], &person, 3.0, 4.0)
        .await;
    assert_eq!(v["status"]["state"], "delivered", "{v:#}");
    let sub = h.fake.submission_of(&assigned_work, &student.id).unwrap();
    assert_eq!(sub.assigned_grade, Some(37.5));
    assert_eq!(sub.state, "RETURNED");

    // 6. 429 RESOURCE_EXHAUSTED with Retry-After, then success.
    h.fake.faults().fail_next(
        1,
        ClassroomFault::ResourceExhausted {
            retry_after: Some(RetryAfter::Seconds(1)),
        },
    );
    let t = Instant::now();
    let v = h
        .score(&draft["grade_target_id"], &person, 10.0, 10.0)
        .await;
    assert_eq!(v["status"]["state"], "delivered", "{v:#}");
    assert!(v["status"]["attempts"].as_i64().unwrap() >= 2, "{v:#}");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "Retry-After honoured"
    );
    let sub = h.fake.submission_of(&draft_work, &student.id).unwrap();
    assert_eq!(sub.draft_grade, Some(20.0));

    // 6b. Google stops accepting the access token early: refreshed once, then delivered.
    let refreshes = h.fake.stats().refreshes;
    h.fake.faults().expire_access_tokens();
    let v = h.score(&draft["grade_target_id"], &person, 9.0, 10.0).await;
    assert_eq!(v["status"]["state"], "delivered", "{v:#}");
    assert_eq!(
        v["status"]["attempts"], 1,
        "the 401 was handled inside the attempt"
    );
    assert_eq!(h.fake.stats().refreshes, refreshes + 1);

    // 7. A courseWork another Cloud project made (the Classroom web app): dead, explained.
    let tenant = h.app.store().tenant(&h.scope);
    let platform = tenant.google_platform().await.unwrap().unwrap();
    let foreign = tenant
        .record_google_course_work(
            platform.id,
            &NewGoogleCourseWork {
                context_id: context.parse().unwrap(),
                grant_id: grant_id.parse().unwrap(),
                course_id: algebra.clone(),
                course_work_id: h.fake.foreign_course_work_id(),
                title: "Reading log".into(),
                max_points: 20.0,
                grade_mode: GradeMode::Draft,
                return_on_grade: false,
            },
            &domain::Actor::system("test"),
        )
        .await
        .unwrap();
    let v = h
        .score(&json!(foreign.grade_target_id), &person, 5.0, 10.0)
        .await;
    assert_eq!(v["status"]["state"], "dead", "{v:#}");
    let reason = v["status"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("only the Google Cloud project that created this assignment"),
        "{reason}"
    );
    assert_eq!(v["status"]["attempts"], 1, "not retried");

    // 8. The teacher revokes access at Google: the grant is marked revoked, the score dies
    //    saying so, and nothing is retried.
    let grant_uuid = grant_id.parse().unwrap();
    let refresh = tenant
        .google_refresh_token(grant_uuid, &h.master)
        .await
        .unwrap()
        .unwrap();
    let revoked = reqwest::Client::new()
        .post(h.fake.urls().revocation)
        .form(&[("token", refresh.secret())])
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    let before = h.fake.stats().refreshes;
    let v = h.score(&draft["grade_target_id"], &person, 1.0, 10.0).await;
    assert_eq!(v["status"]["state"], "dead", "{v:#}");
    let reason = v["status"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("connect Google Classroom again"),
        "{reason}"
    );
    let status = h.get("api/v1/google").await;
    assert_eq!(status["grants"][0]["status"], "revoked", "{status:#}");
    assert!(
        status["grants"][0]["status_reason"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    let v = h.score(&draft["grade_target_id"], &person, 2.0, 10.0).await;
    assert_eq!(v["status"]["state"], "dead");
    assert!(
        v["status"]["reason"]
            .as_str()
            .unwrap()
            .contains("was revoked")
    );
    assert!(
        h.fake.stats().refreshes <= before + 1,
        "a revoked grant is not refreshed again"
    );

    // 8b. The teacher connects again: the same grant is active with a new token, and grades
    //     flow; then the product disconnects them, which revokes at Google too.
    let page = browser.get(h.connect_link().await.as_str()).await.unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    let status = h.get("api/v1/google").await;
    assert_eq!(status["grants"].as_array().unwrap().len(), 1);
    assert_eq!(status["grants"][0]["id"], grant_id.as_str());
    assert_eq!(status["grants"][0]["status"], "active", "{status:#}");
    let v = h.score(&draft["grade_target_id"], &person, 4.0, 10.0).await;
    assert_eq!(v["status"]["state"], "delivered", "{v:#}");
    let revocations = h.fake.stats().revocations;
    let (s, gone) = h
        .call(
            reqwest::Method::DELETE,
            &format!("api/v1/google/grants/{grant_id}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{gone:#}");
    assert_eq!(gone["revoked_at_google"], true);
    assert_eq!(h.fake.stats().revocations, revocations + 1);
    let v = h.score(&draft["grade_target_id"], &person, 5.0, 10.0).await;
    assert_eq!(v["status"]["state"], "dead", "{v:#}");
    assert!(
        v["status"]["reason"]
            .as_str()
            .unwrap()
            .contains("disconnected"),
        "{v:#}"
    );

    // 9. Every API request we sent was valid against the discovery document.
    let requests = h.fake.requests();
    assert!(requests.len() >= 8);
    for r in &requests {
        assert!(
            r.invalid.is_none(),
            "{} {}: {:?}",
            r.method,
            r.path,
            r.invalid
        );
        assert!(r.method_id.is_some(), "{} {}", r.method, r.path);
    }
    h.stop().await;
}

/// `lmsbridge google configure / status / connect-link` as an admin runs them.
#[test]
fn cli_configures_google_and_issues_connect_links() {
    let dir = std::env::temp_dir().join(format!("lmsbridge-google-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let master = MasterKey::generate();
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_lmsbridge"));
        for (k, _) in std::env::vars() {
            if k.starts_with("LMSBRIDGE_") {
                c.env_remove(k);
            }
        }
        c.env("RUST_LOG", "warn")
            .env("LMSBRIDGE_MASTER_KEY", master.to_base64())
            .env("LMSBRIDGE_PUBLIC_URL", "https://lmsbridge.example/")
            .args(args)
            .arg("--data-dir")
            .arg(&dir)
            .output()
            .unwrap()
    };
    let json = |out: &std::process::Output| -> Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let tenant = json(&run(&["tenant", "create", "--name", "Cli School"]));
    let tenant = tenant["id"].as_str().unwrap().to_owned();
    let secret_file = dir.join("secret.txt");
    std::fs::write(&secret_file, "GOCSPX-cli-secret\n").unwrap();
    let configure = |client: &str| {
        run(&[
            "google",
            "configure",
            "--tenant",
            &tenant,
            "--client-id",
            client,
            "--client-secret-file",
            secret_file.to_str().unwrap(),
            "--project-number",
            "123456789012",
        ])
    };
    let out = configure("cli.apps.googleusercontent.com");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("GOCSPX"),
        "the secret is never printed: {text}"
    );
    let configured = json(&out);
    assert_eq!(
        configured["redirect_uri"],
        "https://lmsbridge.example/google/oauth/callback"
    );
    assert!(
        configured["scopes"]["roster"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "https://www.googleapis.com/auth/classroom.rosters.readonly")
    );
    // Configuring again updates the one Google platform.
    let again = json(&configure("cli2.apps.googleusercontent.com"));
    assert_eq!(again["platform_id"], configured["platform_id"]);

    let status = json(&run(&["google", "status", "--tenant", &tenant]));
    assert_eq!(status["configured"], true);
    assert_eq!(status["client_id"], "cli2.apps.googleusercontent.com");
    assert_eq!(status["grants"], json!([]));

    let link = json(&run(&[
        "google",
        "connect-link",
        "--tenant",
        &tenant,
        "--features",
        "roster",
    ]));
    let url = Url::parse(link["url"].as_str().unwrap()).unwrap();
    assert_eq!(url.path(), "/google/oauth/start");
    let token = url
        .query_pairs()
        .find(|(k, _)| k == "link")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let opened = server::google::ConnectLink::open(&token, &master).expect("a sealed link");
    assert_eq!(opened.features, vec![server::google::Feature::Roster]);
    assert_eq!(opened.tenant.to_string(), tenant);
    assert!(server::google::ConnectLink::open(&token, &MasterKey::generate()).is_none());

    let bad = run(&[
        "google",
        "connect-link",
        "--tenant",
        &tenant,
        "--features",
        "grades",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown feature"));
    let _ = std::fs::remove_dir_all(&dir);
}
