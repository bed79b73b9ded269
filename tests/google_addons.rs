//! Google Classroom Add-ons end to end over loopback, against the simulated Classroom
//! (which checks every API request against Google's discovery document): a teacher opens
//! attachment discovery with `login_hint`, signs in with Google (PKCE, state single-use and
//! bound to the browser), is confirmed a teacher by `getAddOnContext` and picks catalog
//! content, which becomes a graded attachment in Classroom; the course is registered for
//! roster push. A student opens the student view, is confirmed a student, and the product
//! redeems the handoff code like an LTI launch's; its `POST /api/v1/scores` for the
//! attachment lands in Classroom as `pointsEarned` (and the draft grade), sent with the
//! teacher's offline grant after the teacher's own tokens expired. Hostile: a student on the
//! teacher view is refused; a callback without state, with a forged one, without the
//! browser's cookie, or replayed is refused. Run on SQLite and, when configured, PostgreSQL.

#[path = "common/harness.rs"]
mod harness;

use harness::{Api, Served};
use serde_json::json;
use server::AppBuilder;
use std::time::{Duration, Instant};
use store::crypto::MasterKey;
use store::{CatalogItemType, NewCatalogItem};
use testkit::classroom::{
    ClassroomConfig, GooglePushSigner, OAuthClientRegistration, SpawnedCerts,
};
use testkit::{Browser, SimulatedClassroom, SpawnedClassroom};
use url::Url;

const PATIENCE: Duration = Duration::from_secs(40);
const TOPIC: &str = "projects/school-project/topics/classroom-roster";

struct Harness {
    api: Api,
    fake: SimulatedClassroom,
    _fake_server: SpawnedClassroom,
    _certs: SpawnedCerts,
    platform: domain::PlatformId,
    app: server::App,
    scope: store::TenantScope,
    master: MasterKey,
    graded_item: String,
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
        let (mut settings, dir) = harness::settings("gaddon", database_url);
        let master = MasterKey::generate();
        settings.master_key = Some(master.to_base64());
        let listener = lmsbridge::demo::bind(&mut settings).await.unwrap();
        let mut client = OAuthClientRegistration::new(
            "lmsbridge-test",
            settings.public("google/oauth/callback"),
        );
        client
            .redirect_uris
            .push(settings.public("google/addons/callback"));
        let (fake, fake_server) =
            SimulatedClassroom::spawn_with(|c| ClassroomConfig { client, ..c })
                .await
                .unwrap();
        let (signer, certs) = GooglePushSigner::spawn().await.unwrap();
        harness::point_at_classroom(&mut settings, &fake);
        settings.google_pubsub_topic = Some(TOPIC.into());
        settings.google_push_audience = Some("https://lmsbridge.test/google/push".into());
        settings.google_push_service_account =
            Some("push@school-project.iam.gserviceaccount.com".into());
        settings.google_push_certs_url = signer.certs_url().clone();
        let worker = passback::WorkerConfig {
            poll_interval: Duration::from_millis(100),
            ..passback::WorkerConfig::default()
        };
        let running = AppBuilder::new(settings.clone())
            .worker_config(worker)
            .build()
            .await
            .unwrap();
        let app = running.app.clone();
        let actor = domain::Actor::system("test");
        // The product's launch URL: any page of ours that answers 200 will do, the test
        // reads the code from the address.
        let product = settings.public("health");
        let school = harness::google_tenant(
            &app,
            "Add-on School",
            Some(&product),
            &fake,
            None,
            signer.certs_url(),
            &master,
        )
        .await;
        let (scope, platform) = (school.scope, school.platform);
        let t = app.store().tenant(&scope);
        let graded = t
            .create_catalog_item(
                &NewCatalogItem {
                    item_type: CatalogItemType::LtiResourceLink,
                    title: "Fractions <practice>".into(),
                    text: None,
                    url: Some(Url::parse("https://product.example/fractions").unwrap()),
                    custom: Default::default(),
                    score_maximum: Some(10.0),
                },
                &actor,
            )
            .await
            .unwrap();
        t.create_catalog_item(
            &NewCatalogItem {
                item_type: CatalogItemType::LtiResourceLink,
                title: "Reading corner".into(),
                text: None,
                url: Some(Url::parse("https://product.example/reading").unwrap()),
                custom: Default::default(),
                score_maximum: None,
            },
            &actor,
        )
        .await
        .unwrap();
        let served = Served::spawn(listener, running, server::router, true, dir);
        Self {
            api: Api {
                http: harness::http(false),
                base: settings.public(""),
                api_key: school.api_key,
            },
            fake,
            _fake_server: fake_server,
            _certs: certs,
            platform,
            app,
            scope,
            master,
            graded_item: graded.id.to_string(),
            served,
        }
    }

    fn view(&self, view: &str, params: &[(&str, &str)]) -> Url {
        let mut url = self
            .base
            .join(&format!("google/addons/{}/{view}", self.platform))
            .unwrap();
        url.query_pairs_mut().extend_pairs(params);
        url
    }

    async fn stop(self) {
        self.served.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teacher_attaches_student_opens_product_grades_through_classroom() {
    store::testing::on_sqlite_then_postgres("the add-on flow", Duration::from_secs(180), run).await;
}

async fn run(db: Option<String>) {
    let label = if db.is_some() { "postgres" } else { "sqlite" };
    let h = Harness::start(db).await;
    let ada = h.fake.teacher();
    let alan = h.fake.students()[0].clone();
    let course = h.fake.algebra_course_id();
    // An assignment the teacher made in the Classroom web app: only an add-on attachment
    // lets another project grade it.
    let post = h.fake.foreign_course_work_id();
    let add_on_token = h.fake.issue_add_on_token(&course, &post);

    // 1. Attachment discovery: not signed in yet, so the page offers Google sign-in.
    let teacher = Browser::new();
    let discovery = h.view(
        "discovery",
        &[
            ("courseId", course.as_str()),
            ("itemId", post.as_str()),
            ("itemType", "courseWork"),
            ("addOnToken", add_on_token.as_str()),
            ("login_hint", ada.email.as_str()),
        ],
    );
    let page = teacher.get(discovery.as_str()).await.unwrap();
    assert_eq!(page.status, 200, "{label}: {}", page.body);
    assert!(page.body.contains("Sign in with Google"));
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("frame-ancestors https://classroom.google.com;"),
        "{csp}"
    );
    assert!(!csp.contains("frame-ancestors *"));
    let page = page.click("Sign in with Google").await.unwrap();
    assert_eq!(page.status, 200, "{label}: {}", page.body);
    let form = page.form("addon-pick").expect("the catalog picker");
    assert!(page.body.contains("Fractions &lt;practice&gt;"), "escaped");
    let auth = h.fake.authorizations().last().cloned().unwrap();
    assert_eq!(auth.login_hint.as_deref(), Some(ada.email.as_str()));
    assert_eq!(auth.user_id.as_deref(), Some(ada.id.as_str()));
    assert_eq!(auth.code_challenge_method.as_deref(), Some("S256"));
    assert_eq!(auth.access_type.as_deref(), Some("offline"));
    for s in [
        "https://www.googleapis.com/auth/classroom.addons.teacher",
        "https://www.googleapis.com/auth/classroom.push-notifications",
    ] {
        assert!(auth.scopes.iter().any(|x| x == s), "{s}: {:?}", auth.scopes);
    }
    assert!(
        !auth
            .scopes
            .iter()
            .any(|s| s.contains("rosters") || s.contains("coursework")),
        "only what the add-on needs: {:?}",
        auth.scopes
    );
    let contexts = |h: &Harness| {
        h.fake
            .requests()
            .into_iter()
            .filter(|r| {
                r.method_id.as_deref() == Some("classroom.courses.courseWork.getAddOnContext")
            })
            .count()
    };
    assert_eq!(contexts(&h), 1, "the role was asked of Classroom");
    assert!(form.field("pick").is_some());

    // 2. The teacher picks the graded item: Classroom holds a graded attachment.
    let page = page
        .submit("addon-pick", &[("item", h.graded_item.as_str())])
        .await
        .unwrap();
    assert_eq!(page.status, 200, "{label}: {}", page.body);
    assert!(page.body.contains("graded out of 10"), "{}", page.body);
    assert!(page.body.contains("closeIframe"));
    assert_eq!(contexts(&h), 2, "confirmed again before creating");
    let attachments = h.fake.attachments();
    assert_eq!(attachments.len(), 1);
    let attachment = attachments[0].clone();
    assert_eq!(attachment.max_points, Some(10.0));
    assert!(attachment.grade_sync_enabled);
    assert_eq!(attachment.project, "lmsbridge-test");
    assert_eq!(attachment.item_id, post);
    // The same pick cannot be submitted twice.
    let again = teacher
        .submit_form(
            &form,
            &form.fields_with(&[("item", h.graded_item.as_str())]),
        )
        .await
        .unwrap();
    assert_eq!(again.status, 400, "{}", again.body);
    assert_eq!(h.fake.attachments().len(), 1);
    // The pick is audited once, as the add-on's own action (not as an LTI deep link).
    let (status, audit) = h
        .call(reqwest::Method::GET, "api/v1/audit?limit=1000", None)
        .await;
    assert_eq!(status, 200, "{audit:#}");
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "google.addon_item_picked")
            .count(),
        1,
        "{actions:?}"
    );
    assert!(!actions.contains(&"deep_linking.response_sent"));
    // The course is registered for roster changes with the teacher's grant.
    let started = Instant::now();
    while h.fake.registrations().is_empty() {
        assert!(started.elapsed() < PATIENCE, "no roster registration");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reg = h.fake.registrations()[0].clone();
    assert_eq!(
        (reg.course_id.as_str(), reg.topic.as_str()),
        (course.as_str(), TOPIC)
    );
    assert_eq!(reg.user_id, ada.id);

    // 3. A student opens the student view: signed in (online, student scope), confirmed a
    //    student, handed to the product with a one-time code.
    let student_view = h.view(
        "student",
        &[
            ("courseId", course.as_str()),
            ("itemId", post.as_str()),
            ("itemType", "courseWork"),
            ("attachmentId", attachment.id.as_str()),
            ("login_hint", alan.email.as_str()),
        ],
    );
    let student = Browser::new();
    let page = student.get(student_view.as_str()).await.unwrap();
    let page = page.click("Sign in with Google").await.unwrap();
    assert_eq!(page.status, 200, "{label}: {}", page.body);
    assert_eq!(
        page.url.path(),
        "/health",
        "handed to the product: {}",
        page.url
    );
    let code = harness::handoff_code(&page.url);
    let auth = h.fake.authorizations().last().cloned().unwrap();
    assert_eq!(auth.user_id.as_deref(), Some(alan.id.as_str()));
    assert_eq!(auth.access_type.as_deref(), Some("online"));
    assert!(
        auth.scopes
            .iter()
            .any(|s| s.ends_with("classroom.addons.student"))
    );
    assert!(
        !auth
            .scopes
            .iter()
            .any(|s| s.ends_with("classroom.addons.teacher"))
    );
    let (s, launch) = h.redeem(&code).await;
    assert_eq!(s, 200, "{launch:#}");
    assert_eq!(launch["platform"], "google_classroom");
    assert_eq!(launch["roles"], json!(["learner"]));
    assert_eq!(launch["person"]["platform_user_id"], alan.id.as_str());
    assert_eq!(launch["person"]["email"], alan.email.as_str());
    assert_eq!(launch["context"]["platform_context_id"], course.as_str());
    let g = &launch["google_classroom"];
    assert_eq!(g["view"], "student_view");
    assert_eq!(g["attachment_id"], attachment.id.as_str());
    assert_eq!(g["item_id"], post.as_str());
    let alan_submission = h.fake.submission_of(&post, &alan.id).unwrap();
    assert_eq!(g["submission_id"], alan_submission.id.as_str());
    let target = launch["grade_target_id"].clone();
    assert!(target.is_string(), "{launch:#}");
    let (s, _) = h.redeem(&code).await;
    assert_ne!(s, 200, "a code works once");

    // 5. Hostile: the student opens the teacher view; Classroom says student, so no.
    let teacher_view = h.view(
        "teacher",
        &[
            ("courseId", course.as_str()),
            ("itemId", post.as_str()),
            ("itemType", "courseWork"),
            ("attachmentId", attachment.id.as_str()),
            ("login_hint", alan.email.as_str()),
        ],
    );
    let refused = student.get(teacher_view.as_str()).await.unwrap();
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("for the course&#39;s teachers"),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("Reference"));
    // Another student comes to the teacher view without a session: they sign in as a
    // teacher view asks (offline), Classroom says student, and no grant of theirs is kept.
    let katherine = h.fake.students()[1].clone();
    let mut their_view = teacher_view.clone();
    their_view.set_query(None);
    their_view.query_pairs_mut().extend_pairs([
        ("courseId", course.as_str()),
        ("itemId", post.as_str()),
        ("attachmentId", attachment.id.as_str()),
        ("login_hint", katherine.email.as_str()),
    ]);
    let page = Browser::new().get(their_view.as_str()).await.unwrap();
    let page = page.click("Sign in with Google").await.unwrap();
    assert_eq!(page.status, 403, "{}", page.body);
    assert_eq!(
        h.fake
            .authorizations()
            .last()
            .unwrap()
            .access_type
            .as_deref(),
        Some("offline")
    );
    let tenant = h.app.store().tenant(&h.scope);
    assert!(
        tenant
            .google_grant_for_user(h.platform, &katherine.id)
            .await
            .unwrap()
            .is_none(),
        "a student's offline grant is not stored"
    );
    let ada_grant = tenant
        .google_grant_for_user(h.platform, &ada.id)
        .await
        .unwrap()
        .expect("the teacher's grant");
    assert!(ada_grant.has_refresh_token);
    assert!(ada_grant.has_scope("https://www.googleapis.com/auth/classroom.addons.teacher"));
    // The teacher on the teacher view is handed off as an instructor.
    let mut ada_view = teacher_view.clone();
    ada_view.set_query(None);
    ada_view.query_pairs_mut().extend_pairs([
        ("courseId", course.as_str()),
        ("itemId", post.as_str()),
        ("attachmentId", attachment.id.as_str()),
        ("login_hint", ada.email.as_str()),
    ]);
    let page = teacher.get(ada_view.as_str()).await.unwrap();
    assert_eq!(page.url.path(), "/health", "{}", page.body);
    let code = harness::handoff_code(&page.url);
    let (_, teacher_launch) = h.redeem(&code).await;
    assert_eq!(teacher_launch["roles"], json!(["instructor"]));
    assert_eq!(teacher_launch["google_classroom"]["view"], "teacher_view");
    // Student work review: the teacher, on a student's submission.
    let review = h.view(
        "review",
        &[
            ("courseId", course.as_str()),
            ("itemId", post.as_str()),
            ("attachmentId", attachment.id.as_str()),
            ("submissionId", alan_submission.id.as_str()),
            ("login_hint", ada.email.as_str()),
        ],
    );
    let asked = contexts(&h);
    let page = teacher.get(review.as_str()).await.unwrap();
    assert_eq!(page.url.path(), "/health", "{}", page.body);
    assert_eq!(contexts(&h), asked + 1, "Classroom is asked on every open");
    let code = harness::handoff_code(&page.url);
    let (_, reviewed) = h.redeem(&code).await;
    assert_eq!(reviewed["google_classroom"]["view"], "student_work_review");
    assert_eq!(
        reviewed["google_classroom"]["submission_id"],
        alan_submission.id.as_str()
    );
    assert_eq!(reviewed["roles"], json!(["instructor"]));
    assert_eq!(
        reviewed["google_classroom"]["reviewed_person_id"], launch["person"]["id"],
        "the student whose work is shown, as Classroom says"
    );
    let mut forged_review = review.clone();
    forged_review.set_query(None);
    forged_review.query_pairs_mut().extend_pairs([
        ("courseId", course.as_str()),
        ("itemId", post.as_str()),
        ("attachmentId", attachment.id.as_str()),
        ("submissionId", "5999999999"),
        ("login_hint", ada.email.as_str()),
    ]);
    let page = teacher.get(forged_review.as_str()).await.unwrap();
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body.contains("did not find this student"),
        "{}",
        page.body
    );
    // Link upgrade: a pasted catalog link becomes its (ungraded) attachment; another link
    // does not.
    let upgrade = |to: &str| {
        h.view(
            "upgrade",
            &[
                ("courseId", course.as_str()),
                ("itemId", post.as_str()),
                ("itemType", "courseWork"),
                ("addOnToken", add_on_token.as_str()),
                ("urlToUpgrade", to),
                ("login_hint", ada.email.as_str()),
            ],
        )
    };
    let page = teacher
        .get(upgrade("https://product.example/reading").as_str())
        .await
        .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    let upgraded: Vec<_> = h
        .fake
        .attachments()
        .into_iter()
        .filter(|a| a.title == "Reading corner")
        .collect();
    assert_eq!(upgraded.len(), 1);
    assert_eq!(upgraded[0].max_points, None);
    let page = teacher
        .get(upgrade("https://elsewhere.example/x").as_str())
        .await
        .unwrap();
    assert_eq!(page.status, 404, "{}", page.body);
    assert_eq!(h.fake.attachments().len(), 2);

    // 4. The teacher is long gone (every access token Google issued has expired); the
    //    product grades and the score reaches Classroom with the stored offline grant.
    h.fake.faults().expire_access_tokens();
    // And Classroom answers the first patch with 429 RESOURCE_EXHAUSTED: retried after its
    // Retry-After by the durable queue.
    h.fake.faults().fail_next(
        1,
        testkit::classroom::ClassroomFault::ResourceExhausted {
            retry_after: Some(testkit::classroom::RetryAfter::Seconds(1)),
        },
    );
    let v = h.score(&target, &launch["person"]["id"], 4.0, 5.0).await;
    assert_eq!(v["status"]["state"], "delivered", "{label}: {v:#}");
    let log = v["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2, "{v:#}");
    assert!(
        log[0]["detail"].as_str().unwrap().contains("rate limited"),
        "{v:#}"
    );
    let held = h.fake.attachments()[0].clone();
    assert_eq!(
        held.points,
        vec![(alan_submission.id.clone(), 8.0)],
        "4/5 of 10"
    );
    let sub = h.fake.submission_of(&post, &alan.id).unwrap();
    assert_eq!(
        sub.draft_grade,
        Some(8.0),
        "grade sync shows it as the draft grade"
    );
    // A person Classroom never gave a submission for (the teacher) cannot be graded: the
    // score dies saying why.
    let v = h
        .score(&target, &teacher_launch["person"]["id"], 1.0, 5.0)
        .await;
    assert_eq!(v["status"]["state"], "dead", "{v:#}");
    assert!(v.to_string().contains("must open the attachment"), "{v:#}");
    assert_eq!(h.fake.attachments()[0].points.len(), 1);

    // 6. Hostile: the OAuth callback without state, with a forged one, without the cookie
    //    of the browser that began it, and replayed.
    let callback = h.base.join("google/addons/callback").unwrap();
    let r = h.http.get(callback.clone()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let mut forged = callback.clone();
    forged
        .query_pairs_mut()
        .append_pair("state", "forged")
        .append_pair("code", "4/0x");
    let r = h.http.get(forged).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("expired or was already used")
    );
    let other = Browser::new();
    let page = other.get(student_view.as_str()).await.unwrap();
    let link = page
        .links()
        .into_iter()
        .find(|l| l.text.contains("Sign in with Google"))
        .unwrap();
    let walk = harness::sign_in_without_cookies(&h.http, link.href.clone()).await;
    assert_eq!(walk.start_status, 303);
    assert!(walk.cookie.contains("HttpOnly"), "{}", walk.cookie);
    assert!(
        walk.callback.starts_with(callback.as_str()),
        "{}",
        walk.callback
    );
    assert_eq!(walk.without_cookie.0, 400);
    assert!(walk.without_cookie.1.contains("cookie"));
    assert_eq!(walk.replayed.0, 400, "the state was spent");

    assert_eq!(
        h.fake.registrations().len(),
        1,
        "a second attachment in the course does not register it again"
    );

    // 7. The teacher revokes lmsbridge at Google: the next add-on score dies saying she must
    //    sign in again, and her grant shows as revoked.
    let tenant = h.app.store().tenant(&h.scope);
    let grant = tenant
        .google_grant_for_user(h.platform, &ada.id)
        .await
        .unwrap()
        .unwrap();
    let refresh = tenant
        .google_refresh_token(grant.id, &h.master)
        .await
        .unwrap()
        .unwrap();
    let revoked = h
        .http
        .post(h.fake.urls().revocation)
        .form(&[("token", refresh.secret())])
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    h.fake.faults().expire_access_tokens();
    let v = h.score(&target, &launch["person"]["id"], 5.0, 5.0).await;
    assert_eq!(v["status"]["state"], "dead", "{v:#}");
    assert!(v.to_string().contains("again"), "{v:#}");
    let grant = tenant
        .google_grant_for_user(h.platform, &ada.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(grant.status, store::google::GrantStatus::Revoked);
    assert_eq!(
        h.fake.attachments()[0].points,
        vec![(alan_submission.id.clone(), 8.0)],
        "nothing changed in Classroom"
    );
    // Everything lmsbridge sent Classroom was valid against the discovery document.
    let invalid = h.fake.invalid_requests();
    assert!(invalid.is_empty(), "{invalid:#?}");
    h.stop().await;
}
