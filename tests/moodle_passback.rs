//! Grade passback to Moodle end to end, on SQLite and PostgreSQL: lmsbridge serving with its
//! worker, a simulated LMS behaving as Moodle 4.2 does (`LmsBehaviour::Moodle`), learners who
//! launch from it, and scores sent through `POST /api/v1/scores`.
//!
//! * A progress score (not `FullyGraded`) after a delivered final grade would erase it: it is
//!   held, `GET /api/v1/scores/{id}` says why, the grade stays; the next final grade lands.
//! * Two scores for one learner within Moodle's second: the newer is refused with 409, sent
//!   again at least a second later under a fresh timestamp, and lands; when a newer score
//!   was queued meanwhile, the refused one is superseded by it instead.
//! * A score above the maximum is capped by Moodle and delivered as given.

#[path = "common/harness.rs"]
mod harness;

use harness::Served;
use serde_json::{Value, json};
use server::AppBuilder;
use std::time::{Duration, Instant};
use store::NewPlatform;
use testkit::{
    Browser, LmsBehaviour, LmsConfig, SimUser, SimulatedLms, SpawnedLms, ToolRegistration,
};
use url::Url;

const WAIT: Duration = Duration::from_secs(30);

struct Harness {
    base: Url,
    api_key: String,
    lms: SimulatedLms,
    _lms_server: SpawnedLms,
    http: reqwest::Client,
    served: Served,
}

fn learner(id: &str) -> SimUser {
    SimUser {
        id: id.into(),
        name: format!("Learner {id}"),
        given_name: "Learner".into(),
        family_name: id.into(),
        email: format!("{id}@example.edu"),
        role: lti::roles::LtiRole::Learner,
    }
}

impl Harness {
    async fn start(database_url: Option<String>) -> Self {
        let (mut settings, dir) = harness::settings("moodle", database_url);
        let listener = lmsbridge::demo::bind(&mut settings).await.unwrap();
        let tool = ToolRegistration {
            client_id: "moodle-tool".into(),
            deployment_id: "3".into(),
            login_url: settings.public("lti/login"),
            launch_url: settings.public("lti/launch"),
            jwks_url: settings.public(".well-known/jwks.json"),
        };
        let (lms, lms_server) = SimulatedLms::spawn_with(tool.clone(), |c| LmsConfig {
            behaviour: LmsBehaviour::Moodle,
            extra_users: ["m-1", "m-2", "m-3", "m-4", "m-5"].map(learner).to_vec(),
            ..c
        })
        .await
        .unwrap();
        let running = AppBuilder::new(settings.clone()).build().await.unwrap();
        let app = running.app.clone();
        let actor = domain::Actor::system("test");
        let (tenant, key) = app
            .store()
            .create_tenant(
                "Moodle School",
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
                    kind: domain::PlatformKind::Moodle,
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
            true,
            dir,
        );
        Self {
            base: settings.public(""),
            api_key: key.secret().to_owned(),
            lms,
            _lms_server: lms_server,
            http: harness::http(true),
            served,
        }
    }

    async fn stop(self) {
        self.served.stop().await;
    }

    /// `user` launches `resource`; returns (grade target id, person id).
    async fn launch(&self, user: &str, resource: &str) -> (String, String) {
        let page = Browser::new()
            .get(self.lms.launch_url(user, resource).as_str())
            .await
            .unwrap();
        assert_eq!(page.status, 200, "{}", page.body);
        let code = page
            .url
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("the launch handed the product a code");
        let resp = self
            .http
            .post(self.base.join("api/v1/launches/redeem").unwrap())
            .bearer_auth(&self.api_key)
            .json(&json!({"code": code}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let launch: Value = resp.json().await.unwrap();
        (
            launch["grade_target_id"].as_str().unwrap().to_owned(),
            launch["person"]["id"].as_str().unwrap().to_owned(),
        )
    }

    /// Sends a score; returns its id.
    async fn score(&self, pair: &(String, String), given: Option<f64>, progress: &str) -> String {
        let resp = self
            .http
            .post(self.base.join("api/v1/scores").unwrap())
            .bearer_auth(&self.api_key)
            .json(&json!({
                "grade_target_id": pair.0, "person_id": pair.1,
                "score_given": given, "score_maximum": given.map(|_| 10.0),
                "grading_progress": progress,
                "activity_progress": if progress == "FullyGraded" { "Completed" } else { "Submitted" },
                "actor": {"kind": "ai_grader", "id": "grader-v3"},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let body: Value = resp.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    async fn get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(self.base.join(path).unwrap())
            .bearer_auth(&self.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.unwrap()
    }

    /// Polls a score until it is in `state`.
    async fn until_state(&self, id: &str, state: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.get(&format!("api/v1/scores/{id}")).await;
            if s["state"] == state {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "score {id} never became {state}: {s:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Moodle's grade for `user` in the line item of `resource` (out of 100), once
    /// `done` holds for it.
    async fn grade_when(
        &self,
        user: &str,
        line_item: &str,
        done: impl Fn(Option<f64>) -> bool,
    ) -> Option<f64> {
        let deadline = Instant::now() + WAIT;
        loop {
            let grade = self
                .lms
                .gradebook()
                .into_iter()
                .find(|g| g.user_id == user && g.line_item_id == line_item)
                .and_then(|g| g.result_score);
            if done(grade) {
                return grade;
            }
            assert!(Instant::now() < deadline, "{user}: Moodle shows {grade:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The audit actions about one score, oldest first.
    async fn audit_actions(&self, id: &str) -> Vec<String> {
        let audit = self.get("api/v1/audit?limit=1000").await;
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["subject"] == format!("score:{id}"))
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// (a) A progress score would erase the final grade: held, visibly; the grade stays.
async fn progress_after_a_final_grade_is_held(h: &Harness) {
    let pair = h.launch("m-1", "resource-1").await;
    let final_grade = h.score(&pair, Some(8.0), "FullyGraded").await;
    h.until_state(&final_grade, "delivered").await;
    assert_eq!(h.grade_when("m-1", "1", |g| g.is_some()).await, Some(80.0));

    let progress = h.score(&pair, None, "Pending").await;
    let held = h.until_state(&progress, "held").await;
    let reason = held["last_error"].as_str().unwrap();
    assert!(
        reason.contains("FullyGraded") && reason.contains("Moodle"),
        "the product can see why: {reason}"
    );
    assert_eq!(held["attempts"], 0);
    assert!(
        held["attempt_log"].as_array().unwrap().is_empty(),
        "never sent"
    );
    assert!(
        h.lms
            .scores()
            .iter()
            .all(|s| !(s.user_id == "m-1" && s.grading_progress == "Pending")),
        "Moodle never received it"
    );
    assert_eq!(
        h.grade_when("m-1", "1", |_| true).await,
        Some(80.0),
        "the grade stays"
    );
    assert_eq!(
        h.audit_actions(&progress).await,
        ["score.corrected", "score.held"]
    );

    // The next final grade is sent as usual.
    let regrade = h.score(&pair, Some(9.0), "FullyGraded").await;
    h.until_state(&regrade, "delivered").await;
    assert_eq!(
        h.grade_when("m-1", "1", |g| g == Some(90.0)).await,
        Some(90.0)
    );

    // Before any final grade, a progress score erases nothing and is sent.
    let fresh = h.launch("m-2", "resource-1").await;
    let early = h.score(&fresh, None, "PendingManual").await;
    h.until_state(&early, "delivered").await;
    assert!(
        h.lms
            .scores()
            .iter()
            .any(|s| s.user_id == "m-2" && s.grading_progress == "PendingManual")
    );
}

/// (b) Two scores within Moodle's second: the newer is refused, then sent again with a
/// fresh timestamp at least a second later, and lands.
async fn a_score_refused_as_stale_is_restamped_and_lands(h: &Harness) {
    let pair = h.launch("m-3", "resource-2").await;
    // Moodle takes its time saving the first score: the second is queued before that save,
    // so its timestamp is not later than Moodle's stored time, whatever the clock's second.
    h.lms.faults().set_latency(Duration::from_secs(2));
    let first = h.score(&pair, Some(5.0), "FullyGraded").await;
    h.until_state(&first, "sending").await;
    let second = h.score(&pair, Some(6.0), "FullyGraded").await;
    let queued = h.get(&format!("api/v1/scores/{second}")).await;
    h.lms.faults().set_latency(Duration::ZERO);
    h.until_state(&first, "delivered").await;
    let delivered = h.until_state(&second, "delivered").await;
    assert_eq!(
        h.grade_when("m-3", "2", |g| g == Some(60.0)).await,
        Some(60.0)
    );

    let log = delivered["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2, "{delivered:#}");
    assert_eq!(
        (log[0]["status"].as_i64(), log[0]["outcome"].as_str()),
        (Some(409), Some("restamped"))
    );
    assert_eq!(
        (log[1]["status"].as_i64(), log[1]["outcome"].as_str()),
        (Some(200), Some("delivered"))
    );
    let waited = log[1]["started_at"].as_i64().unwrap() - log[0]["started_at"].as_i64().unwrap();
    assert!(
        waited >= 1_000_000,
        "sent again after at least a second: {waited} µs"
    );
    let (old_ts, new_ts) = (
        queued["timestamp_micros"].as_i64().unwrap(),
        delivered["timestamp_micros"].as_i64().unwrap(),
    );
    assert!(
        new_ts >= old_ts + 1_000_000,
        "a fresh timestamp, stored: {old_ts} -> {new_ts}"
    );
    // What Moodle received: the refused timestamp, then the fresh one.
    let sent: Vec<_> = h
        .lms
        .score_requests()
        .into_iter()
        .filter(|r| r.user_id.as_deref() == Some("m-3") && r.score_given == Some(6.0))
        .map(|r| r.status)
        .collect();
    assert_eq!(sent, [409, 200]);
    assert_eq!(
        h.audit_actions(&second).await,
        ["score.corrected", "score.restamped", "score.delivered"]
    );

    // A newer score queued while the refused one was being sent: that one is superseded by
    // it, and the newest lands. (Past Moodle's second first, so that the first of these is
    // taken at once.)
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    h.lms.faults().set_latency(Duration::from_secs(2));
    let a = h.score(&pair, Some(7.0), "FullyGraded").await;
    h.until_state(&a, "sending").await;
    let b = h.score(&pair, Some(8.0), "FullyGraded").await;
    h.until_state(&a, "delivered").await;
    h.until_state(&b, "sending").await;
    let c = h.score(&pair, Some(9.5), "FullyGraded").await;
    h.lms.faults().set_latency(Duration::ZERO);
    let refused = h.until_state(&b, "superseded").await;
    assert_eq!(refused["last_status"], 409, "{refused:#}");
    assert!(refused["last_error"].as_str().unwrap().contains(&c));
    h.until_state(&c, "delivered").await;
    assert_eq!(
        h.grade_when("m-3", "2", |g| g == Some(95.0)).await,
        Some(95.0)
    );
}

/// (c) Above the maximum: Moodle caps it; the score is delivered as the product gave it.
async fn a_score_above_the_maximum_is_capped_by_moodle(h: &Harness) {
    let pair = h.launch("m-4", "resource-1").await;
    let id = h.score(&pair, Some(12.0), "FullyGraded").await;
    let delivered = h.until_state(&id, "delivered").await;
    assert_eq!(delivered["score_given"], 12.0);
    assert_eq!(h.grade_when("m-4", "1", |g| g.is_some()).await, Some(100.0));
    let received: Vec<_> = h
        .lms
        .scores()
        .into_iter()
        .filter(|s| s.user_id == "m-4")
        .collect();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].score_given, Some(12.0));
}

/// (d) `GET /api/v1/scores/{id}` says, in `status`, what a product shows: the attempt count
/// and next attempt time of a score being retried, the platform's answer to a delivered one,
/// the platform's reason for a dead one.
async fn the_state_reads_as_a_product_shows_it(h: &Harness) {
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;
    let pair = h.launch("m-5", "resource-1").await;
    h.lms.faults().fail_next_scores(
        1,
        testkit::FaultKind::TooManyRequests {
            retry_after_secs: 3,
        },
    );
    let id = h.score(&pair, Some(6.0), "FullyGraded").await;
    let retrying = h.until_state(&id, "retrying").await;
    let status = &retrying["status"];
    assert_eq!(status["state"], "retrying", "{retrying:#}");
    assert_eq!(status["attempts"], 1);
    assert_eq!(status["last_platform_status"], 429);
    let next = OffsetDateTime::parse(status["next_attempt_at"].as_str().unwrap(), &Rfc3339)
        .expect("an RFC 3339 time");
    assert!(
        next >= OffsetDateTime::now_utc() + time::Duration::seconds(1),
        "not before the Retry-After: {next}"
    );
    let delivered = h.until_state(&id, "delivered").await;
    let status = &delivered["status"];
    assert_eq!(status["platform_status"], 200, "{delivered:#}");
    assert_eq!(status["attempts"], 2);
    OffsetDateTime::parse(status["delivered_at"].as_str().unwrap(), &Rfc3339)
        .expect("an RFC 3339 time");

    h.lms
        .faults()
        .fail_next_scores(1, testkit::FaultKind::ConcludedCourse422);
    let id = h.score(&pair, Some(7.0), "FullyGraded").await;
    let dead = h.until_state(&id, "dead").await;
    let status = &dead["status"];
    assert_eq!(status["platform_status"], 422, "{dead:#}");
    assert_eq!(
        status["attempts"], 1,
        "a refusal retrying cannot fix is not retried"
    );
    assert!(
        status["reason"]
            .as_str()
            .unwrap()
            .contains("course has concluded"),
        "the platform's own reason: {status:#}"
    );
    assert!(status["replay"].as_str().unwrap().contains(&id));
}

async fn walk(database_url: Option<String>) {
    let h = Harness::start(database_url).await;
    progress_after_a_final_grade_is_held(&h).await;
    a_score_refused_as_stale_is_restamped_and_lands(&h).await;
    a_score_above_the_maximum_is_capped_by_moodle(&h).await;
    the_state_reads_as_a_product_shows_it(&h).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moodle_passback_on_sqlite() {
    walk(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moodle_passback_on_postgres() {
    let Some(db) = store::testing::TestDatabase::postgres().await.unwrap() else {
        return;
    };
    walk(Some(db.url.clone())).await;
    db.cleanup().await;
}
