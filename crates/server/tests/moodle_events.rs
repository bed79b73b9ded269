//! `POST /moodle/events` against the real router on loopback, on SQLite and PostgreSQL: a
//! signed batch is stored once however often it is sent, every refusal has its code and
//! stores nothing, a malformed event is refused alone, each webhook is queued once with its
//! payload, late events do not overwrite newer state, a site reaches only its tenant, and
//! reconciliation against a fake of the plugin's web service fills what events missed.

use domain::{Actor, EnrollmentStatus, PlatformKind};
use reqwest::StatusCode;
use serde_json::{Value, json};
use server::moodle_reconcile::MoodleReconciler;
use server::{AppBuilder, Settings};
use store::crypto::{MasterKey, hmac_sha256_hex};
use store::testing::{TestDatabase, moodle_event_json as ev, seed_launch};
use store::{MoodleSiteId, Store, TenantScope, moodle_context_id, moodle_person_id};
use testkit::SpawnedMoodleWs;
use testkit::moodle_ws::{WsActivityCompletion, WsEnrolment};

struct Site {
    scope: TenantScope,
    platform: domain::PlatformId,
    id: MoodleSiteId,
    secret: String,
}

struct Harness {
    base: url::Url,
    store: Store,
    master: MasterKey,
    http: reqwest::Client,
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Harness {
    async fn start(db: &TestDatabase) -> Self {
        let master = MasterKey::generate();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dir = std::env::temp_dir().join(format!("lmsbridge-moodle-{}", uuid::Uuid::new_v4()));
        let mut settings = Settings::defaults_for(addr, dir.clone());
        settings.database_url = db.url.clone();
        settings.master_key = Some(master.to_base64());
        // Reconciliation is driven by the test.
        settings.moodle_reconcile_interval_secs = 0;
        let running = AppBuilder::new(settings).build().await.unwrap();
        // Nothing lands in the data directory: the key is a setting, the database the test's.
        let _ = std::fs::remove_dir(&dir);
        let store = running.app.store().clone();
        tokio::spawn(async move { axum::serve(listener, server::router(running.app)).await });
        Self {
            base: url::Url::parse(&format!("http://{addr}/")).unwrap(),
            store,
            master,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(20))
                .build()
                .unwrap(),
        }
    }

    /// A tenant with a Moodle platform paired with a site, and a webhook endpoint.
    async fn site(&self, name: &str, site_url: &url::Url, ws_token: Option<&str>) -> Site {
        let seed = seed_launch(
            &self.store,
            name,
            PlatformKind::Moodle,
            &url::Url::parse("https://moodle.example.edu/").unwrap(),
        )
        .await
        .unwrap();
        let t = self.store.tenant(&seed.scope);
        t.set_webhook(
            &url::Url::parse("https://product.example/hooks").unwrap(),
            &self.master,
            &Actor::system("test"),
        )
        .await
        .unwrap();
        let paired = t
            .pair_moodle_site(
                seed.platform.id,
                site_url,
                ws_token,
                &self.master,
                &Actor::system("test"),
            )
            .await
            .unwrap();
        Site {
            scope: seed.scope,
            platform: seed.platform.id,
            id: paired.site.id,
            secret: paired.secret.secret().to_owned(),
        }
    }

    /// Posts `body` with the given headers; the answer's status and JSON (or `null`).
    async fn post(&self, body: Vec<u8>, headers: &[(&str, String)]) -> (StatusCode, Value, String) {
        let mut req = self
            .http
            .post(self.base.join("moodle/events").unwrap())
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        )
    }

    /// Signs `body` at `ts` with `secret` as the plugin does and posts it for `site`.
    async fn signed(
        &self,
        site: &str,
        secret: &str,
        ts: i64,
        body: &[u8],
    ) -> (StatusCode, Value, String) {
        let mut message = format!("{ts}.").into_bytes();
        message.extend_from_slice(body);
        let mac = hmac_sha256_hex(secret.as_bytes(), &message);
        self.post(
            body.to_vec(),
            &[
                ("x-lmsbridge-site", site.to_owned()),
                ("x-lmsbridge-timestamp", ts.to_string()),
                ("x-lmsbridge-signature", format!("v1={mac}")),
            ],
        )
        .await
    }

    async fn send(&self, site: &Site, events: Value) -> (StatusCode, Value, String) {
        let body = batch(events);
        self.signed(site.id.as_str(), &site.secret, now_secs(), &body)
            .await
    }

    /// The webhooks queued since the last call, as (event, data).
    async fn webhooks(&self) -> Vec<(String, Value)> {
        store::testing::claim_queued_webhooks(&self.store).await
    }
}

fn batch(events: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "site_url": "https://moodle.example.edu", "plugin_version": 2026112800,
        "moodle_release": "4.5.1", "events": events,
    }))
    .unwrap()
}

fn enrolment(
    id: &str,
    seq: i64,
    kind: &str,
    at: i64,
    course: i64,
    user: i64,
    status: i64,
) -> Value {
    ev(
        id,
        seq,
        &format!("user_enrolment_{kind}"),
        at,
        course,
        user,
        None,
        json!({"enrol": "manual", "status": status, "timestart": 0, "timeend": 0, "roles": ["student"]}),
    )
}

fn site_url() -> url::Url {
    url::Url::parse("https://moodle.example.edu/").unwrap()
}

#[tokio::test]
async fn a_batch_is_stored_once_and_each_webhook_queued_once() {
    for db in TestDatabase::all().await.unwrap() {
        let h = Harness::start(&db).await;
        let s = h.site("once", &site_url(), None).await;
        h.webhooks().await;
        let t0 = now_secs() - 60;
        let events = json!([
            enrolment("8f0c0001", 1, "created", t0, 12, 34, 0),
            ev(
                "8f0c0002",
                2,
                "course_completed",
                t0 + 1,
                12,
                34,
                None,
                json!({"timecompleted": t0 + 1})
            ),
            ev(
                "8f0c0003",
                3,
                "course_module_completion_updated",
                t0 + 2,
                12,
                34,
                Some(77),
                json!({"completionstate": 1, "modname": "quiz", "instance_id": 5, "timemodified": t0 + 2})
            ),
            ev(
                "8f0c0004",
                4,
                "user_graded",
                t0 + 3,
                12,
                34,
                None,
                json!({"itemid": 9, "itemtype": "mod", "itemmodule": "quiz", "iteminstance": 5, "itemname": "Quiz 1",
                      "finalgrade": 7.5, "rawgrademax": 10.0, "overridden": true, "grader_id": 2})
            ),
        ]);
        let body = batch(events);
        let ts = now_secs();
        let (status, answer, _) = h.signed(s.id.as_str(), &s.secret, ts, &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(
            answer["accepted"],
            json!(["8f0c0001", "8f0c0002", "8f0c0003", "8f0c0004"])
        );
        assert_eq!(answer["duplicates"], json!([]));
        assert_eq!(answer["rejected"], json!([]));

        // The captured request replayed inside the window: every id a duplicate.
        let (status, again, _) = h.signed(s.id.as_str(), &s.secret, ts, &body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["accepted"], json!([]));
        assert_eq!(again["duplicates"], answer["accepted"]);
        let t = h.store.tenant(&s.scope);
        assert_eq!(t.moodle_event_count(&s.id).await.unwrap(), 4);
        // Outside the window it is refused.
        let (status, stale, _) = h.signed(s.id.as_str(), &s.secret, ts - 301, &body).await;
        assert_eq!(
            (status, stale),
            (
                StatusCode::UNAUTHORIZED,
                json!({"error": "stale_timestamp"})
            )
        );

        let person = moodle_person_id(s.platform, 34).to_string();
        let context = moodle_context_id(s.platform, 12).to_string();
        let hooks = h.webhooks().await;
        let mut names: Vec<&str> = hooks.iter().map(|(e, _)| e.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "activity.completed",
                "course.completed",
                "enrollment.changed",
                "grade.overridden"
            ],
            "each once"
        );
        let data = |name: &str| hooks.iter().find(|(e, _)| e == name).unwrap().1.clone();
        for (name, _) in &hooks {
            let d = data(name);
            assert_eq!(d["person_id"], person, "{name}");
            assert_eq!(d["context_id"], context, "{name}");
            assert_eq!(d["platform_user_id"], "34");
            assert_eq!(d["platform_context_id"], "12");
            assert_eq!(d["moodle"]["site_id"], s.id.as_str());
        }
        let e = data("enrollment.changed");
        assert_eq!(
            (e["status"].as_str(), e["roles"].clone()),
            (Some("active"), json!(["learner"]))
        );
        assert_eq!(e["moodle"]["event_id"], "8f0c0001");
        assert_eq!(data("course.completed")["completed_at"], t0 + 1);
        let a = data("activity.completed");
        assert_eq!(
            (a["activity_id"].as_str(), a["completion_state"].as_str()),
            (Some("77"), Some("complete"))
        );
        let g = data("grade.overridden");
        assert_eq!(
            (g["item_id"].as_str(), g["final_grade"].as_f64()),
            (Some("9"), Some(7.5))
        );
        assert_eq!(g["grader"]["platform_user_id"], "2");
        assert!(h.webhooks().await.is_empty(), "the replays queued nothing");
        assert!(store::testing::audit_intact(&h.store).await);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn refusals_have_their_codes_and_store_nothing() {
    for db in TestDatabase::all().await.unwrap() {
        let h = Harness::start(&db).await;
        let s = h.site("refuse", &site_url(), None).await;
        let t = h.store.tenant(&s.scope);
        let marker = "do-not-echo-3141";
        let body = batch(json!([enrolment(
            marker,
            1,
            "created",
            now_secs(),
            12,
            34,
            0
        )]));
        let site = s.id.as_str();
        let now = now_secs();
        let unauthorized = |code: &str| (StatusCode::UNAUTHORIZED, json!({"error": code}));

        // Signature: another secret, a body changed after signing, a malformed or missing header.
        let (st, v, text) = h.signed(site, &"x".repeat(43), now, &body).await;
        assert_eq!((st, v), unauthorized("bad_signature"));
        assert!(!text.contains(marker));
        let mut message = format!("{now}.").into_bytes();
        message.extend_from_slice(&body);
        let mac = hmac_sha256_hex(s.secret.as_bytes(), &message);
        let mut tampered = body.clone();
        let at = tampered.len() - 3;
        tampered[at] = b' ';
        let headers = |sig: String| {
            vec![
                ("x-lmsbridge-site", site.to_owned()),
                ("x-lmsbridge-timestamp", now.to_string()),
                ("x-lmsbridge-signature", sig),
            ]
        };
        let (st, v, _) = h.post(tampered, &headers(format!("v1={mac}"))).await;
        assert_eq!((st, v), unauthorized("bad_signature"));
        // The timestamp is signed too.
        let moved = vec![
            ("x-lmsbridge-site", site.to_owned()),
            ("x-lmsbridge-timestamp", (now - 1).to_string()),
            ("x-lmsbridge-signature", format!("v1={mac}")),
        ];
        let (st, v, _) = h.post(body.clone(), &moved).await;
        assert_eq!((st, v), unauthorized("bad_signature"));
        for sig in [
            "v1=zz".to_owned(),
            mac.clone(),
            format!("v2={mac}"),
            String::new(),
        ] {
            let (st, v, _) = h.post(body.clone(), &headers(sig.clone())).await;
            assert_eq!((st, v), unauthorized("bad_signature"), "{sig:?}");
        }
        // The right one, in upper case hex, is still the right one.
        let (st, _, _) = h
            .post(body.clone(), &headers(format!("v1={}", mac.to_uppercase())))
            .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(t.moodle_event_count(&s.id).await.unwrap(), 1);

        // Stale and future timestamps, and one that is no number.
        let fresh = batch(json!([enrolment(
            "t-1",
            2,
            "created",
            now_secs(),
            12,
            35,
            0
        )]));
        for ts in [now - 400, now + 400] {
            let (st, v, _) = h.signed(site, &s.secret, ts, &fresh).await;
            assert_eq!((st, v), unauthorized("stale_timestamp"), "{ts}");
        }
        let mut hs = headers(format!("v1={mac}"));
        hs[1].1 = "yesterday".into();
        let (st, v, _) = h.post(fresh.clone(), &hs).await;
        assert_eq!((st, v), unauthorized("stale_timestamp"));

        // Unknown sites: well-formed but never paired, malformed, absent.
        let (st, v, _) = h
            .signed("ms_AAAAAAAAAAAAAAAAAAAAAA", &s.secret, now, &fresh)
            .await;
        assert_eq!((st, v), unauthorized("unknown_site"));
        let (st, v, _) = h
            .signed("'; DROP TABLE moodle_sites; --", &s.secret, now, &fresh)
            .await;
        assert_eq!((st, v), unauthorized("unknown_site"));
        let (st, v, _) = h.post(fresh.clone(), &[]).await;
        assert_eq!((st, v), unauthorized("unknown_site"));
        assert_eq!(
            t.moodle_event_count(&s.id).await.unwrap(),
            1,
            "nothing stored"
        );

        // Malformed bodies, signed correctly.
        for bad in [&b"{not json"[..], br#"{"events": 5}"#, br#"[1, 2]"#] {
            let (st, v, _) = h.signed(site, &s.secret, now, bad).await;
            assert_eq!(st, StatusCode::BAD_REQUEST);
            assert_eq!(v["error"], "malformed_body");
            assert!(v["detail"].is_string());
        }

        // Too large: over 1 MiB, or over 500 events.
        let mut huge = batch(json!([]));
        huge.truncate(huge.len() - 2);
        huge.extend(std::iter::repeat_n(b' ', 1024 * 1024));
        huge.extend_from_slice(b"]}");
        let (st, _, _) = h.signed(site, &s.secret, now, &huge).await;
        assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
        let many: Vec<Value> = (0..501)
            .map(|i| enrolment(&format!("m-{i}"), i, "created", now_secs(), 12, 1000 + i, 0))
            .collect();
        let (st, v, _) = h.signed(site, &s.secret, now, &batch(json!(many))).await;
        assert_eq!(
            (st, v["error"].as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, Some("too_many_events"))
        );
        assert_eq!(
            t.moodle_event_count(&s.id).await.unwrap(),
            1,
            "nothing stored"
        );

        // One malformed event is refused alone.
        let mixed = json!([
            enrolment("ok-1", 10, "created", now_secs(), 12, 40, 0),
            ev("bad-1", 11, "course_module_completion_updated", now_secs(), 12, 40, Some(3),
               json!({"completionstate": 9, "modname": "quiz"})),
            {"seq": 12, "name": "\\core\\event\\course_completed"},
            ev("bad-2", 13, "something_else", now_secs(), 12, 40, None, json!({})),
            enrolment("ok-2", 14, "created", now_secs(), 12, 41, 0),
        ]);
        let (st, v, _) = h.send(&s, mixed).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["accepted"], json!(["ok-1", "ok-2"]));
        let rejected = v["rejected"].as_array().unwrap();
        assert_eq!(rejected.len(), 3);
        assert_eq!(rejected[0]["id"], "bad-1");
        assert!(
            rejected[0]["reason"]
                .as_str()
                .unwrap()
                .contains("completionstate")
        );
        assert_eq!(rejected[1]["id"], "");
        assert_eq!(rejected[2]["id"], "bad-2");
        assert_eq!(t.moodle_event_count(&s.id).await.unwrap(), 3);

        // Unpaired, the site is unknown.
        t.unpair_moodle_site(&s.id, &Actor::system("test"))
            .await
            .unwrap();
        let (st, v, _) = h
            .send(
                &s,
                json!([enrolment("late", 20, "created", now_secs(), 12, 50, 0)]),
            )
            .await;
        assert_eq!((st, v), unauthorized("unknown_site"));
        db.cleanup().await;
    }
}

#[tokio::test]
async fn late_events_do_not_overwrite_newer_state_and_sites_reach_only_their_tenant() {
    for db in TestDatabase::all().await.unwrap() {
        let h = Harness::start(&db).await;
        let a = h.site("tenant-a", &site_url(), None).await;
        let b = h.site("tenant-b", &site_url(), None).await;
        let now = now_secs();
        // Newer first (suspended at now-10), then the older create (active at now-100).
        let (st, v, _) = h
            .send(
                &a,
                json!([enrolment("n-2", 2, "updated", now - 10, 12, 34, 1)]),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let (st, _, _) = h
            .send(
                &a,
                json!([enrolment("n-1", 1, "created", now - 100, 12, 34, 0)]),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let ta = h.store.tenant(&a.scope);
        let person = moodle_person_id(a.platform, 34);
        let course = moodle_context_id(a.platform, 12);
        assert_eq!(
            ta.moodle_progress(person, course)
                .await
                .unwrap()
                .enrollment_status,
            Some(EnrollmentStatus::Inactive)
        );
        assert_eq!(
            ta.moodle_event_outcome(&a.id, "n-1")
                .await
                .unwrap()
                .as_deref(),
            Some("stale")
        );

        // Site A's id with B's secret, and B's id with A's secret: refused.
        let body = batch(json!([enrolment("x-1", 3, "created", now, 12, 34, 0)]));
        for (site, secret) in [(&a.id, &b.secret), (&b.id, &a.secret)] {
            let (st, v, _) = h.signed(site.as_str(), secret, now_secs(), &body).await;
            assert_eq!(
                (st, v),
                (StatusCode::UNAUTHORIZED, json!({"error": "bad_signature"}))
            );
        }
        // B's site changes B's rows only, though the Moodle ids are the same.
        let (st, _, _) = h.signed(b.id.as_str(), &b.secret, now_secs(), &body).await;
        assert_eq!(st, StatusCode::OK);
        let tb = h.store.tenant(&b.scope);
        assert_eq!(
            tb.moodle_progress(
                moodle_person_id(b.platform, 34),
                moodle_context_id(b.platform, 12)
            )
            .await
            .unwrap()
            .enrollment_status,
            Some(EnrollmentStatus::Active)
        );
        assert_eq!(
            ta.moodle_progress(person, course)
                .await
                .unwrap()
                .enrollment_status,
            Some(EnrollmentStatus::Inactive),
            "A untouched"
        );
        assert_eq!(ta.moodle_event_count(&a.id).await.unwrap(), 2);
        assert_eq!(tb.moodle_event_count(&b.id).await.unwrap(), 1);
        assert_eq!(tb.moodle_event_count(&a.id).await.unwrap(), 0);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn reconciliation_fills_what_events_missed_during_downtime() {
    for db in TestDatabase::all().await.unwrap() {
        let h = Harness::start(&db).await;
        let moodle = SpawnedMoodleWs::spawn("ws-token-123").await.unwrap();
        let s = h.site("reconcile", &moodle.url, Some("ws-token-123")).await;
        let t = h.store.tenant(&s.scope);
        let now = now_secs();
        // Before the downtime: users 1 and 2 enrolled in course 12, user 1 completed it;
        // course 13 known from an enrolment too.
        let (st, v, _) = h
            .send(
                &s,
                json!([
                    enrolment("p-1", 1, "created", now - 7200, 12, 1, 0),
                    enrolment("p-2", 2, "created", now - 7200, 12, 2, 0),
                    ev(
                        "p-3",
                        3,
                        "course_completed",
                        now - 7000,
                        12,
                        1,
                        None,
                        json!({"timecompleted": now - 7000})
                    ),
                    enrolment("p-4", 4, "created", now - 7200, 13, 5, 0),
                ]),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        h.webhooks().await;
        // During the downtime, in Moodle: user 2 completed course 12 and activity 88, user 3
        // was enrolled, user 1's enrolment was deleted; course 13 fails to answer.
        {
            let mut m = moodle.data.lock().unwrap();
            m.course_completions
                .insert(12, vec![(1, now - 7000), (2, now - 600)]);
            m.activity_completions.insert(
                12,
                vec![WsActivityCompletion {
                    user_id: 2,
                    cm_id: 88,
                    modname: "lti".into(),
                    instance_id: 4,
                    completionstate: 1,
                    timemodified: now - 650,
                }],
            );
            let student = |u| WsEnrolment {
                user_id: u,
                status: 0,
                roles: vec!["student".into()],
                timestart: 0,
                timeend: 0,
                enrol: None,
            };
            m.enrolments.insert(12, vec![student(2), student(3)]);
            m.failing_courses.insert(13);
        }
        let reconciler =
            MoodleReconciler::new(h.store.clone(), reqwest::Client::new(), h.master.clone());
        let report = reconciler.reconcile_site(&s.scope, &s.id).await.unwrap();
        let c12 = report.courses.iter().find(|c| c.course_id == 12).unwrap();
        let c13 = report.courses.iter().find(|c| c.course_id == 13).unwrap();
        assert_eq!(c12.error, None);
        assert!(
            c13.error.as_deref().unwrap().contains("dmlreadexception"),
            "{c13:?}"
        );
        assert_eq!(report.since, 0, "first run asks for everything");
        let calls = moodle.calls();
        assert!(calls.iter().all(|c| c.token_ok));
        assert!(
            calls
                .iter()
                .any(|c| c.function == "local_lmsbridge_get_enrolments" && c.course_id == Some(12))
        );

        let course = moodle_context_id(s.platform, 12);
        let p = |u| moodle_person_id(s.platform, u);
        let progress = |u| {
            let t = h.store.tenant(&s.scope);
            async move { t.moodle_progress(p(u), course).await.unwrap() }
        };
        assert_eq!(progress(2).await.course_completed_at, Some(now - 600));
        assert_eq!(progress(2).await.activities, [("88".to_owned(), 1)]);
        assert_eq!(
            progress(3).await.enrollment_status,
            Some(EnrollmentStatus::Active)
        );
        assert_eq!(
            progress(1).await.enrollment_status,
            Some(EnrollmentStatus::Deleted)
        );
        assert_eq!(progress(1).await.course_completed_at, Some(now - 7000));
        let hooks = h.webhooks().await;
        let mut seen: Vec<(String, String)> = hooks
            .iter()
            .map(|(e, d)| {
                (
                    e.clone(),
                    d["platform_user_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("activity.completed".to_owned(), "2".to_owned()),
                ("course.completed".to_owned(), "2".to_owned()),
                ("enrollment.changed".to_owned(), "1".to_owned()),
                ("enrollment.changed".to_owned(), "3".to_owned()),
            ],
            "only what was missed; user 1's completion was known"
        );
        assert!(
            hooks
                .iter()
                .all(|(_, d)| d["moodle"]["source"] == "reconcile")
        );

        // Again: the same made-up events are duplicates; nothing new.
        let stored = t.moodle_event_count(&s.id).await.unwrap();
        let again = reconciler.reconcile_site(&s.scope, &s.id).await.unwrap();
        let c12 = again.courses.iter().find(|c| c.course_id == 12).unwrap();
        assert_eq!(c12.accepted, 0, "{c12:?}");
        assert_eq!(t.moodle_event_count(&s.id).await.unwrap(), stored);
        assert!(h.webhooks().await.is_empty());

        // The plugin, back, sends the completion it had kept: stored, but no second webhook.
        let (st, v, _) = h
            .send(
                &s,
                json!([ev(
                    "p-9",
                    9,
                    "course_completed",
                    now - 600,
                    12,
                    2,
                    None,
                    json!({"timecompleted": now - 600})
                )]),
            )
            .await;
        assert_eq!(
            (st, v["accepted"].clone()),
            (StatusCode::OK, json!(["p-9"]))
        );
        assert!(h.webhooks().await.is_empty());

        // Course 13 answers now: the next run covers it; a run that fully succeeds advances
        // the time the one after asks from.
        moodle.data.lock().unwrap().failing_courses.clear();
        let third = reconciler.reconcile_site(&s.scope, &s.id).await.unwrap();
        assert!(third.courses.iter().all(|c| c.error.is_none()), "{third:?}");
        assert_eq!(third.since, 0, "the runs before had a failing course");
        let fourth = reconciler.reconcile_site(&s.scope, &s.id).await.unwrap();
        assert!(
            fourth.since > now - 3700 && fourth.since <= now - 3500,
            "{}",
            fourth.since
        );

        // An unpaired site is not reconciled.
        h.store
            .tenant(&s.scope)
            .unpair_moodle_site(&s.id, &Actor::system("test"))
            .await
            .unwrap();
        let err = reconciler.reconcile_site(&s.scope, &s.id).await;
        assert!(err.is_err(), "an unpaired site is not reconciled");
        db.cleanup().await;
    }
}

#[tokio::test]
async fn reconciliation_compares_enrolment_methods_when_moodle_lists_them() {
    for db in TestDatabase::all().await.unwrap() {
        let h = Harness::start(&db).await;
        let moodle = SpawnedMoodleWs::spawn("tok").await.unwrap();
        let s = h.site("methods", &moodle.url, Some("tok")).await;
        let now = now_secs();
        let by = |id: &str, seq, enrol: &str, user| {
            ev(
                id,
                seq,
                "user_enrolment_created",
                now - 3600,
                20,
                user,
                None,
                json!({"enrol": enrol, "status": 0, "timestart": 0, "timeend": 0, "roles": ["student"]}),
            )
        };
        let (st, _, _) = h
            .send(
                &s,
                json!([by("m-1", 1, "manual", 7), by("m-2", 2, "self", 7)]),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        h.webhooks().await;
        // Meanwhile: user 7's manual enrolment suspended and self enrolment removed; user 8
        // enrolled by cohort.
        let listed = |user, status, enrol: &str| WsEnrolment {
            user_id: user,
            status,
            roles: vec!["student".into()],
            timestart: 0,
            timeend: 0,
            enrol: Some(enrol.into()),
        };
        moodle
            .data
            .lock()
            .unwrap()
            .enrolments
            .insert(20, vec![listed(7, 1, "manual"), listed(8, 0, "cohort")]);
        let reconciler =
            MoodleReconciler::new(h.store.clone(), reqwest::Client::new(), h.master.clone());
        let report = reconciler.reconcile_site(&s.scope, &s.id).await.unwrap();
        assert!(
            report.courses.iter().all(|c| c.error.is_none()),
            "{report:?}"
        );
        let course = moodle_context_id(s.platform, 20);
        let t = h.store.tenant(&s.scope);
        let status = |u| {
            let t = t.clone();
            async move {
                t.moodle_progress(moodle_person_id(s.platform, u), course)
                    .await
                    .unwrap()
                    .enrollment_status
            }
        };
        assert_eq!(
            status(7).await,
            Some(EnrollmentStatus::Inactive),
            "only a suspended method left"
        );
        assert_eq!(status(8).await, Some(EnrollmentStatus::Active));
        let mut changed: Vec<(String, String)> = h
            .webhooks()
            .await
            .into_iter()
            .map(|(_, d)| {
                (
                    d["platform_user_id"].as_str().unwrap().to_owned(),
                    d["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        changed.sort();
        assert_eq!(
            changed,
            [
                ("7".to_owned(), "inactive".to_owned()),
                ("8".to_owned(), "active".to_owned())
            ]
        );
        let again = reconciler.reconcile_site(&s.scope, &s.id).await.unwrap();
        assert!(again.courses.iter().all(|c| c.accepted == 0), "{again:?}");
        assert!(h.webhooks().await.is_empty());
        db.cleanup().await;
    }
}

#[tokio::test]
async fn due_sites_are_claimed_once_per_interval() {
    for db in TestDatabase::all().await.unwrap() {
        let h = Harness::start(&db).await;
        let moodle = SpawnedMoodleWs::spawn("tok").await.unwrap();
        let s = h.site("due", &moodle.url, Some("wrong-token")).await;
        let _no_token = h.site("due-none", &site_url(), None).await;
        let (st, _, _) = h
            .send(
                &s,
                json!([enrolment("d-1", 1, "created", now_secs(), 12, 1, 0)]),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        let reconciler =
            MoodleReconciler::new(h.store.clone(), reqwest::Client::new(), h.master.clone());
        assert_eq!(
            reconciler.run_due(3600).await.unwrap(),
            1,
            "only the site with a token"
        );
        let calls = moodle.calls();
        assert!(!calls.is_empty() && calls.iter().all(|c| !c.token_ok));
        // The wrong token failed its course, so the site is due again; a right one succeeds.
        assert_eq!(reconciler.run_due(3600).await.unwrap(), 1);
        let t = h.store.tenant(&s.scope);
        t.unpair_moodle_site(&s.id, &Actor::system("test"))
            .await
            .unwrap();
        let fixed = t
            .pair_moodle_site(
                s.platform,
                &moodle.url,
                Some("tok"),
                &h.master,
                &Actor::system("test"),
            )
            .await
            .unwrap();
        let (st, _, _) = h
            .signed(
                fixed.site.id.as_str(),
                fixed.secret.secret(),
                now_secs(),
                &batch(json!([enrolment(
                    "d-2",
                    1,
                    "created",
                    now_secs(),
                    12,
                    1,
                    0
                )])),
            )
            .await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(reconciler.run_due(3600).await.unwrap(), 1);
        assert_eq!(
            reconciler.run_due(3600).await.unwrap(),
            0,
            "not due again within the hour"
        );
        db.cleanup().await;
    }
}
