//! Roster sync through the product API, end to end over loopback: a student launches from a
//! simulated LMS that pages its NRPS answers by two, the product starts a sync of the
//! course, polls it until done and lists the members with their roles; then the LMS drops a
//! student and enrols another, a second full sync shows the first removed, and a
//! differences sync applies only what changed. Run on SQLite and, when configured,
//! PostgreSQL.

use lti::nrps::MemberStatus;
use lti::roles::LtiRole;
#[path = "common/harness.rs"]
mod harness;

use harness::Served;
use serde_json::{Value, json};
use server::AppBuilder;
use std::time::{Duration, Instant};
use store::NewPlatform;
use testkit::{Browser, LmsConfig, SimUser, SimulatedLms, SpawnedLms, ToolRegistration};
use url::Url;

/// How long a sync of a few pages may take on a loaded machine.
const SYNC_DONE: Duration = Duration::from_secs(30);

struct Harness {
    base: Url,
    api_key: String,
    lms: SimulatedLms,
    lms_server: Option<SpawnedLms>,
    app: server::App,
    http: reqwest::Client,
    served: Served,
}

impl Harness {
    /// lmsbridge serving on a free loopback port, with a tenant whose product page is a
    /// stub at `/product/launch`, and a simulated Canvas on its own port that knows it.
    async fn start(database_url: Option<String>) -> Self {
        let (mut settings, dir) = harness::settings("roster", database_url);
        let listener = lmsbridge::demo::bind(&mut settings).await.unwrap();
        let tool = ToolRegistration {
            client_id: "roster-tool".into(),
            deployment_id: "deployment-1".into(),
            login_url: settings.public("lti/login"),
            launch_url: settings.public("lti/launch"),
            jwks_url: settings.public(".well-known/jwks.json"),
        };
        // Pages of two, as small as a test can see paging with; Canvas pages at 50.
        let (lms, lms_server) =
            SimulatedLms::spawn_with(tool.clone(), |c| LmsConfig { page_size: 2, ..c })
                .await
                .unwrap();
        let running = AppBuilder::new(settings.clone()).build().await.unwrap();
        let app = running.app.clone();
        let actor = domain::Actor::system("test");
        let (tenant, key) = app
            .store()
            .create_tenant(
                "Roster School",
                Some(&settings.public("product/launch")),
                &actor,
            )
            .await
            .unwrap();
        let scope = app.store().tenant_scope(tenant.id).await.unwrap();
        app.store()
            .tenant(&scope)
            .add_platform(
                &NewPlatform {
                    kind: domain::PlatformKind::Canvas,
                    issuer: lms.issuer(),
                    client_id: tool.client_id.clone(),
                    auth_url: lms.auth_url(),
                    token_url: lms.token_url(),
                    jwks_url: lms.jwks_url(),
                    token_audience: None,
                    accept_new_deployments: false,
                    deployment_ids: vec![tool.deployment_id.clone()],
                },
                &actor,
            )
            .await
            .unwrap();
        let served = Served::spawn(
            listener,
            running,
            |app| {
                server::router(app).route(
                    "/product/launch",
                    axum::routing::get(|| async { "the product" }),
                )
            },
            false,
            dir,
        );
        Self {
            base: settings.public(""),
            api_key: key.secret().to_owned(),
            lms,
            lms_server: Some(lms_server),
            app,
            http: harness::http(true),
            served,
        }
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap()
    }

    async fn call(&self, method: reqwest::Method, path: &str, key: &str) -> (u16, Value) {
        let resp = self
            .http
            .request(method, self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, &self.api_key).await;
        assert_eq!(status, 200, "GET {path}: {body:#}");
        body
    }

    /// A student launches from the LMS; the product redeems the code. Returns the launch.
    async fn launch(&self, user: &str) -> Value {
        let page = Browser::new()
            .get(self.lms.launch_url(user, "resource-1").as_str())
            .await
            .unwrap();
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(page.url.path(), "/product/launch", "{:?}", page.trail);
        let code = page
            .url
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("the launch handed the product a code");
        let resp = self
            .http
            .post(self.url("api/v1/launches/redeem"))
            .bearer_auth(&self.api_key)
            .json(&json!({"code": code}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Starts a sync; returns its first answer.
    async fn start_sync(&self, context: &str, query: &str) -> Value {
        let resp = self
            .http
            .post(self.url(&format!("api/v1/contexts/{context}/sync{query}")))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let id = resp.json::<Value>().await.unwrap();
        assert!(id["id"].is_string(), "{id:#}");
        id
    }

    /// Polls a sync until it is finished.
    async fn finished(&self, id: &str) -> Value {
        self.finished_observing(id).await.0
    }

    /// Polls a sync until it is finished; also returns every answer seen on the way.
    async fn finished_observing(&self, id: &str) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + SYNC_DONE;
        let mut seen = Vec::new();
        loop {
            let s = self.get(&format!("api/v1/roster-syncs/{id}")).await;
            match s["state"].as_str() {
                Some("done" | "failed") => return (s, seen),
                Some("queued" | "running") => seen.push(s.clone()),
                other => panic!("unexpected state {other:?}: {s:#}"),
            }
            assert!(
                Instant::now() < deadline,
                "sync {id} not finished in {SYNC_DONE:?}: {s:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// (user id, status, roles) of the members a listing returns, walking every page.
    async fn members(&self, context: &str, query: &str) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..20 {
            let sep = if query.is_empty() { "?" } else { "&" };
            let path = match &cursor {
                None => format!("api/v1/contexts/{context}/members{query}"),
                Some(c) => format!("api/v1/contexts/{context}/members{query}{sep}cursor={c}"),
            };
            let page = self.get(&path).await;
            for m in page["members"].as_array().unwrap() {
                out.push((
                    m["platform_user_id"].as_str().unwrap().to_owned(),
                    m["status"].as_str().unwrap().to_owned(),
                    m["roles"].clone(),
                ));
            }
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                out.sort_by(|a, b| a.0.cmp(&b.0));
                return out;
            }
        }
        panic!("more than 20 pages of members");
    }

    async fn stop(self) {
        self.served.stop().await;
    }
}

fn row(user: &str, status: &str, roles: Value) -> (String, String, Value) {
    (user.to_owned(), status.to_owned(), roles)
}

async fn roster_sync_through_the_api(mut h: Harness) {
    let launch = h.launch("student-1").await;
    let context = launch["context"]["id"]
        .as_str()
        .expect("the launch names its context")
        .to_owned();
    h.lms.offer_nrps_differences(true);

    // Nothing synced yet: only the launcher is known.
    assert_eq!(
        h.members(&context, "").await,
        [row("student-1", "active", json!(["learner"]))]
    );

    // The first sync reads the three members over two pages. The LMS answers slowly, so
    // the sync is seen part way, and asking again meanwhile gives the same sync.
    h.lms.faults().set_latency(Duration::from_millis(700));
    let started = h.start_sync(&context, "").await;
    assert_eq!(started["kind"], "full");
    assert_eq!(started["created"], true);
    assert!(matches!(
        started["state"].as_str(),
        Some("queued" | "running")
    ));
    let id = started["id"].as_str().unwrap().to_owned();
    let again = h.start_sync(&context, "").await;
    assert_eq!(again["id"], id.as_str(), "one sync per context: {again:#}");
    assert_eq!(again["created"], false);
    let (done, seen) = h.finished_observing(&id).await;
    h.lms.faults().set_latency(Duration::ZERO);
    assert!(
        seen.iter().any(|s| s["state"] == "running"
            && s["pages_fetched"] == 1
            && s["more_pages"] == true
            && s["members_seen"] == 2),
        "progress is written after each page: {seen:#?}"
    );
    assert_eq!(done["state"], "done", "{done:#}");
    assert_eq!(done["context_id"], context.as_str());
    assert_eq!(done["pages_fetched"], 2, "{done:#}");
    assert_eq!(done["members_seen"], 3, "{done:#}");
    assert_eq!(done["added"], 2, "{done:#}");
    assert_eq!(done["removed"], 0, "{done:#}");
    assert_eq!(done["more_pages"], false);
    assert_eq!(done["differences_available"], true);
    assert_eq!(done["error"], Value::Null);
    let queries = h.lms.nrps_queries();
    assert_eq!(queries.len(), 2, "{queries:?}");
    assert!(queries[1].contains("page=2"), "{queries:?}");

    assert_eq!(
        h.members(&context, "").await,
        [
            row("student-1", "active", json!(["learner"])),
            row("student-2", "active", json!(["learner"])),
            row("teacher-1", "active", json!(["instructor"])),
        ]
    );
    let page = h
        .get(&format!(
            "api/v1/contexts/{context}/members?role=instructor"
        ))
        .await;
    let teacher = &page["members"][0];
    assert_eq!(page["members"].as_array().unwrap().len(), 1, "{page:#}");
    assert_eq!(teacher["name"], "Grace Hopper");
    assert_eq!(teacher["email"], "grace.hopper@example.edu");
    assert_eq!(teacher["source"], "nrps");
    assert!(teacher["person_id"].is_string());
    // An LTI role URI names the same role.
    let learners = h
        .members(
            &context,
            "?role=http%3A%2F%2Fpurl.imsglobal.org%2Fvocab%2Flis%2Fv2%2Fmembership%23Learner&limit=1",
        )
        .await;
    assert_eq!(
        learners.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["student-1", "student-2"]
    );
    // The launcher is one person whether a launch or the roster names them.
    let launcher = h
        .get(&format!(
            "api/v1/contexts/{context}/members?role=learner&limit=200"
        ))
        .await["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform_user_id"] == "student-1")
        .cloned()
        .unwrap();
    assert_eq!(launcher["person_id"], launch["person"]["id"]);

    // The LMS drops student-2 and enrols student-3; the next full sync sees it.
    assert!(h.lms.remove_member("student-2"));
    h.lms.add_member(SimUser {
        id: "student-3".into(),
        name: "Rosalind Franklin".into(),
        given_name: "Rosalind".into(),
        family_name: "Franklin".into(),
        email: "rosalind.franklin@example.edu".into(),
        role: LtiRole::Learner,
    });
    let second = h.start_sync(&context, "?mode=full").await;
    let second = h.finished(second["id"].as_str().unwrap()).await;
    assert_eq!(second["state"], "done", "{second:#}");
    assert_eq!(
        (&second["added"], &second["removed"]),
        (&json!(1), &json!(1)),
        "{second:#}"
    );
    assert_eq!(
        h.members(&context, "").await,
        [
            row("student-1", "active", json!(["learner"])),
            row("student-3", "active", json!(["learner"])),
            row("teacher-1", "active", json!(["instructor"])),
        ]
    );
    assert_eq!(
        h.members(&context, "?status=deleted").await,
        [row("student-2", "deleted", json!(["learner"]))]
    );
    assert_eq!(h.members(&context, "?status=all").await.len(), 4);

    // Only what changed since: the teacher became inactive.
    let before = h.lms.nrps_queries().len();
    assert!(h.lms.set_member_status("teacher-1", MemberStatus::Inactive));
    let third = h.start_sync(&context, "?mode=differences").await;
    assert_eq!(third["kind"], "differences", "{third:#}");
    let third = h.finished(third["id"].as_str().unwrap()).await;
    assert_eq!(third["state"], "done", "{third:#}");
    assert_eq!(third["members_seen"], 1, "{third:#}");
    assert_eq!(third["updated"], 1, "{third:#}");
    let asked = &h.lms.nrps_queries()[before..];
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(asked[0].starts_with("since="), "{asked:?}");
    assert_eq!(
        h.members(&context, "?status=inactive").await,
        [row("teacher-1", "inactive", json!(["instructor"]))]
    );
    assert_eq!(
        h.members(&context, "").await.len(),
        2,
        "student-1 and student-3 stay active"
    );

    // An instance read page 1 and stopped (its lease ran out): another runner resumes the
    // sync at page 2, and page 1 is not read again.
    let scope = h
        .app
        .store()
        .authenticate_api_key(&h.api_key)
        .await
        .unwrap()
        .unwrap();
    let tenant = h.app.store().tenant(&scope);
    let context_id: domain::ContextId = context.parse().unwrap();
    let memberships = tenant
        .roster_source(context_id)
        .await
        .unwrap()
        .memberships_url
        .unwrap();
    let queued = tenant
        .queue_roster_sync(
            context_id,
            store::SyncKind::Full,
            &memberships,
            &domain::Actor::system("test"),
        )
        .await
        .unwrap();
    let crashed = tenant
        .claim_roster_sync(queued.sync.id, "stopped-instance", store::now_micros() - 1)
        .await
        .unwrap()
        .unwrap();
    let member =
        |id: &str, role: domain::Role, status: domain::EnrollmentStatus| store::RosterMemberInput {
            platform_user_id: id.into(),
            name: None,
            given_name: None,
            family_name: None,
            email: None,
            picture: None,
            lis_person_sourcedid: None,
            roles: vec![role],
            status,
        };
    let mut page_two = memberships.clone();
    page_two
        .query_pairs_mut()
        .append_pair("limit", "2")
        .append_pair("page", "2");
    tenant
        .record_roster_page(
            &crashed,
            &store::RosterPageInput {
                members: vec![
                    member(
                        "student-1",
                        domain::Role::Learner,
                        domain::EnrollmentStatus::Active,
                    ),
                    member(
                        "teacher-1",
                        domain::Role::Instructor,
                        domain::EnrollmentStatus::Inactive,
                    ),
                ],
                next_url: Some(page_two),
                differences_url: None,
            },
            store::now_micros() - 1,
        )
        .await
        .unwrap()
        .expect("the stopped instance still held its lease when it wrote page 1");
    let before = h.lms.nrps_queries().len();
    let runner = server::roster_sync::RosterSyncs::new(
        h.app.store().clone(),
        reqwest::Client::new(),
        h.app.keyring().clone(),
        server::roster_sync::RosterSyncConfig::default(),
    );
    runner.resume_abandoned().await.unwrap();
    let resumed = h.finished(&queued.sync.id.to_string()).await;
    assert_eq!(resumed["state"], "done", "{resumed:#}");
    assert_eq!(resumed["pages_fetched"], 2, "{resumed:#}");
    assert_eq!(resumed["members_seen"], 3, "{resumed:#}");
    assert_eq!(resumed["removed"], 0, "{resumed:#}");
    let asked = &h.lms.nrps_queries()[before..];
    assert_eq!(asked, ["limit=2&page=2"], "only page 2 was read again");
    assert_eq!(h.members(&context, "?status=all").await.len(), 4);

    // A context whose launches carried no NRPS claim cannot be synced, and says why.
    let platform = tenant.list_platforms().await.unwrap().remove(0);
    let no_nrps = tenant
        .record_launch(&store::NewLaunch {
            platform_id: platform.id,
            deployment_id: "deployment-1".into(),
            nonce: "no-nrps-nonce".into(),
            nonce_expires_at: store::now_micros() + 3_600_000_000,
            message_type: "LtiResourceLinkRequest".into(),
            person: Some(store::LaunchPerson {
                platform_user_id: "student-1".into(),
                ..Default::default()
            }),
            roles: vec![domain::Role::Learner],
            context: Some(store::LaunchContext {
                platform_context_id: "course-without-nrps".into(),
                ..Default::default()
            }),
            resource: None,
            line_item: None,
            extras: json!({}),
            handoff_code_hash: "no-nrps-code".into(),
            handoff_expires_at: store::now_micros() + 60_000_000,
        })
        .await
        .unwrap();
    let (got, body) = h
        .call(
            reqwest::Method::POST,
            &format!("api/v1/contexts/{}/sync", no_nrps.context_id.unwrap()),
            &h.api_key,
        )
        .await;
    assert_eq!(got, 422, "{body:#}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Names and Roles")),
        "{body:#}"
    );

    // Bad input is refused with a reason, and nothing changes.
    for (path, status) in [
        (
            format!("api/v1/contexts/{context}/members?status=gone"),
            422,
        ),
        (format!("api/v1/contexts/{context}/members?limit=0"), 422),
        (format!("api/v1/contexts/{context}/members?cursor=abc"), 422),
        (format!("api/v1/contexts/{context}/members?colour=red"), 422),
        ("api/v1/contexts/not-a-context/members".to_owned(), 404),
        (
            format!("api/v1/contexts/{}/members", uuid::Uuid::new_v4()),
            404,
        ),
        ("api/v1/roster-syncs/nope".to_owned(), 404),
    ] {
        let (got, body) = h.call(reqwest::Method::GET, &path, &h.api_key).await;
        assert_eq!(got, status, "{path}: {body:#}");
        assert!(body["error"].is_string(), "{path}: {body:#}");
    }
    let (got, body) = h
        .call(
            reqwest::Method::POST,
            &format!("api/v1/contexts/{context}/sync?mode=sideways"),
            &h.api_key,
        )
        .await;
    assert_eq!(got, 422, "{body:#}");
    let (got, _) = h
        .call(
            reqwest::Method::GET,
            &format!("api/v1/contexts/{context}/members"),
            "lmsb_wrong_key",
        )
        .await;
    assert_eq!(got, 401);

    // Another tenant sees neither the context nor the sync.
    let (_, other) = h
        .app
        .store()
        .create_tenant("Other School", None, &domain::Actor::system("test"))
        .await
        .unwrap();
    for (method, path) in [
        (
            reqwest::Method::GET,
            format!("api/v1/contexts/{context}/members"),
        ),
        (
            reqwest::Method::POST,
            format!("api/v1/contexts/{context}/sync"),
        ),
        (reqwest::Method::GET, format!("api/v1/roster-syncs/{id}")),
    ] {
        let (got, body) = h.call(method, &path, other.secret()).await;
        assert_eq!(got, 404, "{path}: {body:#}");
    }

    // The platform goes away: the sync fails, saying why, and removes no one.
    drop(h.lms_server.take());
    let failed = h.start_sync(&context, "").await;
    let failed = h.finished(failed["id"].as_str().unwrap()).await;
    assert_eq!(failed["state"], "failed", "{failed:#}");
    assert_eq!(
        failed["error"]["code"], "platform_unreachable",
        "{failed:#}"
    );
    assert!(
        failed["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("could not be reached")),
        "{failed:#}"
    );
    assert_eq!(failed["removed"], 0);
    assert_eq!(h.members(&context, "?status=all").await.len(), 4);

    // Every roster change is in an intact audit chain.
    let reports = h.app.store().verify_audit(None).await.unwrap();
    assert!(reports.iter().all(|r| r.is_intact()), "{reports:?}");
    h.stop().await;
}

/// The whole scenario within a time limit: a hang fails the test instead of the suite.
async fn bounded(scenario: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(180), scenario)
        .await
        .expect("the roster scenario finished within 180 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_sync_through_the_api_on_sqlite() {
    bounded(roster_sync_through_the_api(Harness::start(None).await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_sync_through_the_api_on_postgres() {
    let Some(db) = store::testing::TestDatabase::postgres().await.unwrap() else {
        return;
    };
    bounded(roster_sync_through_the_api(
        Harness::start(Some(db.url.clone())).await,
    ))
    .await;
    db.cleanup().await;
}
