//! Moodle plugin events in the store, on SQLite and PostgreSQL: pairing, dedupe by (site,
//! event id) also between concurrent writers, the domain state each event builds (on the
//! rows a launch uses), late events that must not overwrite newer state, deleted users that
//! stay deleted, webhooks queued once, and tenants kept apart.

use domain::{Actor, EnrollmentStatus, PlatformKind, Role};
use serde_json::{Value, json};
use store::crypto::MasterKey;
use store::testing::{
    TestDatabase, audit_intact, claim_queued_webhooks, moodle_event_json, seed_launch,
};
use store::{
    MoodleEvent, MoodleSiteId, Store, StoreError, TenantScope, TenantStore, moodle_context_id,
    moodle_person_id, now_micros,
};

const T0: i64 = 1_764_290_000;

fn actor() -> Actor {
    Actor::system("test")
}

/// An event as the plugin sends it, checked as the endpoint checks it.
fn event(
    id: &str,
    seq: i64,
    name: &str,
    at: i64,
    course: i64,
    user: i64,
    payload: Value,
) -> MoodleEvent {
    event_cm(id, seq, name, at, course, user, None, payload)
}

#[allow(clippy::too_many_arguments)]
fn event_cm(
    id: &str,
    seq: i64,
    name: &str,
    at: i64,
    course: i64,
    user: i64,
    cm: Option<i64>,
    payload: Value,
) -> MoodleEvent {
    MoodleEvent::from_json(
        &moodle_event_json(id, seq, name, at, course, user, cm, payload),
        T0 + 86_400,
    )
    .unwrap()
}

fn enrol(
    id: &str,
    seq: i64,
    kind: &str,
    at: i64,
    user: i64,
    status: i64,
    roles: &[&str],
) -> MoodleEvent {
    event(
        id,
        seq,
        &format!("user_enrolment_{kind}"),
        at,
        12,
        user,
        json!({"enrol": "manual", "status": status, "timestart": 0, "timeend": 0, "roles": roles}),
    )
}

/// What became of a stored event (`applied`, `stale`, `ignored`, `user_deleted`).
async fn outcome(t: &TenantStore<'_>, site: &MoodleSiteId, event_id: &str) -> Option<String> {
    t.moodle_event_outcome(site, event_id).await.unwrap()
}

struct Paired {
    scope: TenantScope,
    platform: domain::Platform,
    site: MoodleSiteId,
}

async fn paired(store: &Store, name: &str, master: &MasterKey) -> Paired {
    let base = url::Url::parse("https://moodle.example.edu/").unwrap();
    let seed = seed_launch(store, name, PlatformKind::Moodle, &base)
        .await
        .unwrap();
    let t = store.tenant(&seed.scope);
    t.set_webhook(
        &url::Url::parse("https://product.example/hooks").unwrap(),
        master,
        &actor(),
    )
    .await
    .unwrap();
    let site_url = url::Url::parse(&format!("https://{name}.moodle.example.edu/")).unwrap();
    let p = t
        .pair_moodle_site(
            seed.platform.id,
            &site_url,
            Some("wstoken-1"),
            master,
            &actor(),
        )
        .await
        .unwrap();
    Paired {
        scope: seed.scope,
        platform: seed.platform,
        site: p.site.id,
    }
}

#[tokio::test]
async fn pairing_is_sealed_audited_and_one_per_platform() {
    let master = MasterKey::generate();
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let a = paired(&store, "pair-a", &master).await;
        let t = store.tenant(&a.scope);
        let key = store.moodle_site_key(&a.site).await.unwrap().unwrap();
        assert_eq!(key.scope, a.scope);
        assert_eq!(key.platform_id, a.platform.id);
        let secret = key.secret(&master).unwrap();
        assert_eq!(secret.secret().len(), 43, "32 bytes, base64url");
        assert!(
            key.secret(&MasterKey::generate()).is_err(),
            "sealed with the master key"
        );
        let again = t
            .pair_moodle_site(
                a.platform.id,
                &url::Url::parse("https://x.example/").unwrap(),
                None,
                &master,
                &actor(),
            )
            .await;
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
        let entries = t.audit_entries().await.unwrap();
        let paired_entry = entries
            .iter()
            .find(|e| e.action == "moodle.site_paired")
            .unwrap();
        assert!(!paired_entry.detail.contains(secret.secret()));
        assert!(!paired_entry.detail.contains("wstoken-1"));

        // Only Moodle platforms pair.
        let canvas = seed_launch(
            &store,
            "pair-canvas",
            PlatformKind::Canvas,
            &url::Url::parse("https://canvas.example/").unwrap(),
        )
        .await
        .unwrap();
        let refused = store
            .tenant(&canvas.scope)
            .pair_moodle_site(
                canvas.platform.id,
                &url::Url::parse("https://x.example/").unwrap(),
                None,
                &master,
                &actor(),
            )
            .await;
        assert!(
            matches!(refused, Err(StoreError::Invalid(_))),
            "{refused:?}"
        );
        // Nor another tenant's platform.
        let foreign = store
            .tenant(&canvas.scope)
            .pair_moodle_site(
                a.platform.id,
                &url::Url::parse("https://x.example/").unwrap(),
                None,
                &master,
                &actor(),
            )
            .await;
        assert!(matches!(foreign, Err(StoreError::NotFound)), "{foreign:?}");

        t.unpair_moodle_site(&a.site, &actor()).await.unwrap();
        assert!(store.moodle_site_key(&a.site).await.unwrap().is_none());
        assert!(t.moodle_sites().await.unwrap().is_empty());
        // Unpaired, the platform may pair again.
        t.pair_moodle_site(
            a.platform.id,
            &url::Url::parse("https://pair-a.moodle.example.edu/").unwrap(),
            None,
            &master,
            &actor(),
        )
        .await
        .unwrap();
        assert!(audit_intact(&store).await);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn events_build_state_on_launch_rows_once_and_in_time_order() {
    let master = MasterKey::generate();
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let a = paired(&store, "state", &master).await;
        let t = store.tenant(&a.scope);
        claim_queued_webhooks(&store).await;

        // User 34 launched into course 12 before any event: events meet the same rows.
        let launch = t
            .record_launch(&store::NewLaunch {
                platform_id: a.platform.id,
                deployment_id: "dep-1".into(),
                nonce: store::crypto::random_token(16),
                nonce_expires_at: now_micros() + 3_600_000_000,
                message_type: "LtiResourceLinkRequest".into(),
                person: Some(store::LaunchPerson {
                    platform_user_id: "34".into(),
                    ..Default::default()
                }),
                roles: vec![Role::Learner],
                context: Some(store::LaunchContext {
                    platform_context_id: "12".into(),
                    ..Default::default()
                }),
                resource: Some(("7".into(), None)),
                line_item: None,
                extras: json!({}),
                handoff_code_hash: store::crypto::random_token(16),
                handoff_expires_at: now_micros() + 60_000_000,
            })
            .await
            .unwrap();
        let person = moodle_person_id(a.platform.id, 34);
        let course = moodle_context_id(a.platform.id, 12);
        assert_eq!(launch.person_id, Some(person));
        assert_eq!(launch.context_id, Some(course));

        // An enrolment of someone who never launched creates them, and a teacher's role.
        let batch = vec![
            enrol("e-1", 1, "created", T0, 56, 0, &["editingteacher"]),
            enrol("e-2", 2, "updated", T0 + 10, 34, 1, &["student"]),
        ];
        let out = t.record_moodle_events(&a.site, &batch).await.unwrap();
        assert_eq!(out.accepted, ["e-1", "e-2"]);
        assert!(out.duplicates.is_empty());
        let teacher = t
            .moodle_progress(moodle_person_id(a.platform.id, 56), course)
            .await
            .unwrap();
        assert_eq!(teacher.enrollment_status, Some(EnrollmentStatus::Active));
        assert_eq!(teacher.roles, [Role::Instructor]);
        let p = t.moodle_progress(person, course).await.unwrap();
        assert_eq!(p.enrollment_status, Some(EnrollmentStatus::Inactive));
        let hooks = claim_queued_webhooks(&store).await;
        assert_eq!(hooks.len(), 2, "{hooks:?}");
        assert!(hooks.iter().all(|(e, _)| e == "enrollment.changed"));
        let suspended = &hooks
            .iter()
            .find(|(_, d)| d["platform_user_id"] == "34")
            .unwrap()
            .1;
        assert_eq!(suspended["person_id"], person.to_string());
        assert_eq!(suspended["context_id"], course.to_string());
        assert_eq!(suspended["status"], "inactive");
        assert_eq!(suspended["previous_status"], "active");
        assert_eq!(suspended["enrol_status"], "suspended");
        assert_eq!(suspended["moodle"]["event_id"], "e-2");

        // Sent again (a retry, or another instance): all duplicates, nothing stored twice.
        let again = t.record_moodle_events(&a.site, &batch).await.unwrap();
        assert!(again.accepted.is_empty());
        assert_eq!(again.duplicates, ["e-1", "e-2"]);
        assert_eq!(t.moodle_event_count(&a.site).await.unwrap(), 2);
        assert!(claim_queued_webhooks(&store).await.is_empty());

        // A late event older than the state: stored, changes nothing.
        let late = enrol("e-0", 0, "updated", T0 + 5, 34, 0, &["student"]);
        t.record_moodle_events(&a.site, &[late]).await.unwrap();
        assert_eq!(outcome(&t, &a.site, "e-0").await.as_deref(), Some("stale"));
        assert_eq!(
            t.moodle_progress(person, course)
                .await
                .unwrap()
                .enrollment_status,
            Some(EnrollmentStatus::Inactive)
        );
        assert!(claim_queued_webhooks(&store).await.is_empty());
        // Same second, higher outbox sequence: newer.
        let same_second = enrol("e-3", 3, "updated", T0 + 10, 34, 0, &["student"]);
        t.record_moodle_events(&a.site, &[same_second])
            .await
            .unwrap();
        assert_eq!(
            t.moodle_progress(person, course)
                .await
                .unwrap()
                .enrollment_status,
            Some(EnrollmentStatus::Active)
        );
        assert_eq!(claim_queued_webhooks(&store).await.len(), 1);

        // Course completion: once, whatever source tells it first.
        let done = event(
            "c-1",
            4,
            "course_completed",
            T0 + 20,
            12,
            34,
            json!({"timecompleted": T0 + 19}),
        );
        t.record_moodle_events(&a.site, &[done]).await.unwrap();
        let hooks = claim_queued_webhooks(&store).await;
        assert_eq!(hooks.len(), 1);
        assert_eq!(hooks[0].0, "course.completed");
        assert_eq!(hooks[0].1["completed_at"], T0 + 19);
        assert_eq!(hooks[0].1["person_id"], person.to_string());
        let mut twin = event(
            "rc:cc:12:34:1764290019",
            0,
            "course_completed",
            T0 + 19,
            12,
            34,
            json!({"timecompleted": T0 + 19}),
        );
        twin.source = store::MoodleEventSource::Reconcile;
        t.record_moodle_events(&a.site, &[twin]).await.unwrap();
        assert!(
            claim_queued_webhooks(&store).await.is_empty(),
            "completed once"
        );
        assert_eq!(
            t.moodle_progress(person, course)
                .await
                .unwrap()
                .course_completed_at,
            Some(T0 + 19)
        );

        // Activity completion of the LTI activity the person launched (instance 7).
        let activity = |id: &str, seq, at, state| {
            event_cm(
                id,
                seq,
                "course_module_completion_updated",
                at,
                12,
                34,
                Some(99),
                json!({"completionstate": state, "modname": "lti", "instance_id": 7, "timemodified": at,
                       "lti_resource_link_id": "7"}),
            )
        };
        t.record_moodle_events(&a.site, &[activity("a-2", 6, T0 + 40, 2)])
            .await
            .unwrap();
        t.record_moodle_events(&a.site, &[activity("a-1", 5, T0 + 30, 0)])
            .await
            .unwrap();
        let hooks = claim_queued_webhooks(&store).await;
        assert_eq!(hooks.len(), 1, "{hooks:?}");
        assert_eq!(hooks[0].0, "activity.completed");
        assert_eq!(hooks[0].1["completion_state"], "complete_pass");
        assert_eq!(hooks[0].1["activity_id"], "99");
        assert_eq!(
            hooks[0].1["resource_id"],
            launch.resource_id.unwrap().to_string(),
            "the resource a launch of that activity records"
        );
        assert_eq!(
            t.moodle_progress(person, course).await.unwrap().activities,
            [("99".to_owned(), 2)]
        );

        // A teacher's override: audited with the teacher as actor, and a webhook.
        let graded = event(
            "g-1",
            7,
            "user_graded",
            T0 + 50,
            12,
            34,
            json!({"itemid": 501, "itemtype": "mod", "itemmodule": "lti", "iteminstance": 7,
                   "itemname": "Quiz", "finalgrade": 8.5, "rawgrademax": 10, "overridden": true,
                   "grader_id": 56, "feedback": "Well argued"}),
        );
        let not_override = event(
            "g-0",
            8,
            "user_graded",
            T0 + 51,
            12,
            34,
            json!({"itemid": 502, "finalgrade": 3, "rawgrademax": 10, "overridden": false, "grader_id": null}),
        );
        t.record_moodle_events(&a.site, &[graded, not_override])
            .await
            .unwrap();
        let hooks = claim_queued_webhooks(&store).await;
        assert_eq!(hooks.len(), 1, "only the override is news: {hooks:?}");
        assert_eq!(hooks[0].0, "grade.overridden");
        let g = &hooks[0].1;
        assert_eq!(g["final_grade"], 8.5);
        assert_eq!(g["grade_max"], 10.0);
        assert_eq!(g["overridden"], true);
        assert_eq!(g["grader"]["platform_user_id"], "56");
        assert_eq!(
            g["grader"]["person_id"],
            moodle_person_id(a.platform.id, 56).to_string()
        );
        assert_eq!(g["feedback"], "Well argued");
        let audit = t.audit_entries().await.unwrap();
        let entry = audit
            .iter()
            .find(|e| e.action == "grade.overridden_in_moodle")
            .unwrap();
        assert_eq!(
            (entry.actor_kind.as_str(), entry.actor_id.as_str()),
            ("instructor", "moodle:56")
        );
        assert_eq!(entry.subject, format!("person:{person}"));

        // The user deleted in Moodle: enrolments inactive, and late events do not revive them.
        let gone = event("d-1", 9, "user_deleted", T0 + 60, 12, 34, json!({}));
        t.record_moodle_events(&a.site, &[gone]).await.unwrap();
        let hooks = claim_queued_webhooks(&store).await;
        assert_eq!(hooks.len(), 1);
        assert_eq!(hooks[0].1["status"], "inactive");
        assert_eq!(hooks[0].1["user_deleted"], true);
        let revived = enrol("e-9", 10, "created", T0 + 70, 34, 0, &["student"]);
        t.record_moodle_events(&a.site, &[revived]).await.unwrap();
        assert_eq!(
            outcome(&t, &a.site, "e-9").await.as_deref(),
            Some("user_deleted")
        );
        assert_eq!(
            t.moodle_progress(person, course)
                .await
                .unwrap()
                .enrollment_status,
            Some(EnrollmentStatus::Inactive)
        );
        assert!(claim_queued_webhooks(&store).await.is_empty());

        let sites = t.moodle_sites().await.unwrap();
        assert_eq!(sites[0].last_seq, 10, "highest outbox sequence seen");
        assert!(audit_intact(&store).await);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_site_reaches_only_its_own_tenant() {
    let master = MasterKey::generate();
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let a = paired(&store, "iso-a", &master).await;
        let b = paired(&store, "iso-b", &master).await;
        let e = enrol("x-1", 1, "created", T0, 34, 0, &["student"]);
        for (scope, site) in [(&a.scope, &b.site), (&b.scope, &a.site)] {
            let r = store
                .tenant(scope)
                .record_moodle_events(site, std::slice::from_ref(&e))
                .await;
            assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
        }
        store
            .tenant(&a.scope)
            .record_moodle_events(&a.site, std::slice::from_ref(&e))
            .await
            .unwrap();
        // The same Moodle ids in tenant B name other rows, untouched.
        let in_b = store
            .tenant(&b.scope)
            .moodle_progress(
                moodle_person_id(b.platform.id, 34),
                moodle_context_id(b.platform.id, 12),
            )
            .await
            .unwrap();
        assert_eq!(in_b.enrollment_status, None);
        // A's rows are not visible through B's scope either.
        let cross = store
            .tenant(&b.scope)
            .moodle_progress(
                moodle_person_id(a.platform.id, 34),
                moodle_context_id(a.platform.id, 12),
            )
            .await
            .unwrap();
        assert_eq!(cross.enrollment_status, None);
        assert_eq!(
            store
                .tenant(&b.scope)
                .moodle_event_count(&a.site)
                .await
                .unwrap(),
            0
        );
        assert!(
            store
                .tenant(&b.scope)
                .moodle_reconcile_target(&a.site, &master)
                .await
                .unwrap()
                .is_none()
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn concurrent_writers_store_each_event_once() {
    let master = MasterKey::generate();
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let a = paired(&store, "race", &master).await;
        let batch: Vec<MoodleEvent> = (0..40)
            .map(|i| {
                enrol(
                    &format!("r-{i}"),
                    i,
                    "created",
                    T0 + i,
                    100 + i,
                    0,
                    &["student"],
                )
            })
            .collect();
        claim_queued_webhooks(&store).await;
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                let scope = a.scope.clone();
                let site = a.site.clone();
                let batch = batch.clone();
                tokio::spawn(async move {
                    store
                        .tenant(&scope)
                        .record_moodle_events(&site, &batch)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let (mut accepted, mut duplicates) = (0, 0);
        for task in tasks {
            let out = task.await.unwrap();
            accepted += out.accepted.len();
            duplicates += out.duplicates.len();
        }
        assert_eq!((accepted, duplicates), (40, 120), "{}", db.label);
        assert_eq!(
            store
                .tenant(&a.scope)
                .moodle_event_count(&a.site)
                .await
                .unwrap(),
            40
        );
        assert_eq!(
            claim_queued_webhooks(&store).await.len(),
            40,
            "one webhook per new enrolment"
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn swept_events_coming_back_change_nothing() {
    let master = MasterKey::generate();
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let a = paired(&store, "sweep", &master).await;
        let t = store.tenant(&a.scope);
        let batch = vec![
            enrol("s-1", 1, "created", T0, 34, 0, &["student"]),
            event(
                "s-2",
                2,
                "course_completed",
                T0 + 1,
                12,
                34,
                json!({"timecompleted": T0 + 1}),
            ),
        ];
        t.record_moodle_events(&a.site, &batch).await.unwrap();
        assert_eq!(claim_queued_webhooks(&store).await.len(), 2);
        // Nothing is old enough yet.
        assert_eq!(
            store
                .sweep_moodle_events(now_micros() - 3_600_000_000, 100)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .sweep_moodle_events(now_micros() + 1, 1)
                .await
                .unwrap(),
            1,
            "bounded"
        );
        assert_eq!(
            store
                .sweep_moodle_events(now_micros() + 1, 100)
                .await
                .unwrap(),
            1
        );
        assert_eq!(t.moodle_event_count(&a.site).await.unwrap(), 0);
        // The plugin sends them once more, much later: stored again, no state change, no webhook.
        let out = t.record_moodle_events(&a.site, &batch).await.unwrap();
        assert_eq!(out.accepted.len(), 2);
        assert_eq!(outcome(&t, &a.site, "s-1").await.as_deref(), Some("stale"));
        assert_eq!(outcome(&t, &a.site, "s-2").await.as_deref(), Some("stale"));
        assert!(claim_queued_webhooks(&store).await.is_empty());
        db.cleanup().await;
    }
}

#[tokio::test]
async fn lti_activities_created_in_moodle_become_resources() {
    let master = MasterKey::generate();
    for db in TestDatabase::all().await.unwrap() {
        let store = db.store.clone();
        let a = paired(&store, "modules", &master).await;
        let t = store.tenant(&a.scope);
        let created = |id: &str, seq, modname: &str, instance: i64, name: &str| {
            MoodleEvent::from_json(
                &json!({"id": id, "seq": seq, "name": "\\core\\event\\course_module_created",
                        "occurred_at": T0, "course_id": 12, "user_id": 0, "cm_id": 300 + seq,
                        "payload": {"modname": modname, "instance_id": instance, "name": name}}),
                T0,
            )
            .unwrap()
        };
        t.record_moodle_events(
            &a.site,
            &[
                created("m-1", 1, "lti", 8, "Essay on tides"),
                created("m-2", 2, "quiz", 9, "Not ours"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            outcome(&t, &a.site, "m-1").await.as_deref(),
            Some("applied")
        );
        assert_eq!(
            outcome(&t, &a.site, "m-2").await.as_deref(),
            Some("ignored")
        );
        // The resource a launch of instance 8 in course 12 will carry, titled as in Moodle.
        let touched = store
            .execute_unchecked(&format!(
                "UPDATE resources SET title = title WHERE title = 'Essay on tides' AND platform_resource_id = '8' \
                 AND context_id = '{}'",
                moodle_context_id(a.platform.id, 12)
            ))
            .await
            .unwrap();
        assert_eq!(touched, 1);
        assert!(
            claim_queued_webhooks(&store)
                .await
                .iter()
                .all(|(e, _)| e != "enrollment.changed")
        );
        db.cleanup().await;
    }
}
