//! Google Classroom add-on and push storage on SQLite and PostgreSQL: an attachment becomes
//! a grade target a score can name and the worker claims back as a
//! `ClassroomAddOnAttachment`; an open is a launch with a single-use handoff code and the
//! student's submission id; push registrations are claimed for renewal once per lease; push
//! messages are recorded once; another tenant reaches none of it.

use domain::{Actor, GradeTargetLocation};
use store::crypto::{MasterKey, sha256_hex};
use store::google::{NewGoogleClient, SecretString};
use store::google_addons::{AddOnOpen, AddOnRole, NewAddOnAttachment};
use store::testing::{TestDatabase, final_score};
use store::{LaunchPerson, now_micros};
use url::Url;

fn client(id: &str) -> NewGoogleClient {
    NewGoogleClient {
        client_id: id.into(),
        client_secret: SecretString::new("GOCSPX-secret"),
        project_number: None,
        authorization_url: Url::parse("https://accounts.google.com/o/oauth2/v2/auth").unwrap(),
        token_url: Url::parse("https://oauth2.googleapis.com/token").unwrap(),
        certs_url: Url::parse("https://www.googleapis.com/oauth2/v3/certs").unwrap(),
    }
}

fn open(
    platform: domain::PlatformId,
    attachment: Option<store::google_addons::AddOnAttachmentRecord>,
    code: &str,
) -> AddOnOpen {
    AddOnOpen {
        platform_id: platform,
        view: "student_view".into(),
        person: LaunchPerson {
            platform_user_id: "200000000001".into(),
            name: Some("Alan Turing".into()),
            given_name: None,
            family_name: None,
            email: Some("alan@school.example".into()),
        },
        role: AddOnRole::Student,
        course_id: "300".into(),
        course_title: Some("Algebra 1".into()),
        item_id: "400".into(),
        item_type: "courseWork".into(),
        attachment,
        submission_id: Some("sub-1".into()),
        reviewed_user_id: None,
        extras: serde_json::json!({}),
        handoff_code_hash: sha256_hex(code.as_bytes()),
        handoff_expires_at: now_micros() + 60_000_000,
    }
}

#[tokio::test]
async fn attachments_opens_registrations_and_push_events() {
    let master = MasterKey::generate();
    let actor = Actor::system("test");
    for db in TestDatabase::all().await.unwrap() {
        let label = db.label;
        let store = db.store.clone();
        let (a, _) = store.create_tenant("A", None, &actor).await.unwrap();
        let (b, _) = store.create_tenant("B", None, &actor).await.unwrap();
        let sa = store.tenant_scope(a.id).await.unwrap();
        let sb = store.tenant_scope(b.id).await.unwrap();
        let ta = store.tenant(&sa);
        let tb = store.tenant(&sb);
        let pa = ta
            .configure_google_client(&client("a.apps.googleusercontent.com"), &master, &actor)
            .await
            .unwrap()
            .id;
        let pb = tb
            .configure_google_client(&client("b.apps.googleusercontent.com"), &master, &actor)
            .await
            .unwrap()
            .id;

        // A graded attachment is a grade target; an ungraded one is not.
        let new = NewAddOnAttachment {
            platform_id: pa,
            course_id: "300".into(),
            course_title: Some("Algebra 1".into()),
            item_id: "400".into(),
            item_type: "courseWork".into(),
            attachment_id: "600".into(),
            catalog_item_id: Some("cat-1".into()),
            title: "Fractions".into(),
            max_points: Some(10),
            teacher_user_id: "100".into(),
        };
        let graded = ta.record_add_on_attachment(&new).await.unwrap();
        let target = graded.grade_target_id.expect("a grade target");
        assert_eq!(graded.max_points, Some(10), "{label}");
        let again = ta.record_add_on_attachment(&new).await.unwrap();
        assert_eq!(again, graded, "recording twice returns the stored row");
        let plain = ta
            .record_add_on_attachment(&NewAddOnAttachment {
                attachment_id: "601".into(),
                max_points: Some(0),
                ..new.clone()
            })
            .await
            .unwrap();
        assert_eq!(plain.grade_target_id, None);
        assert_eq!(
            ta.add_on_attachment_for_target(target).await.unwrap(),
            Some(graded.clone())
        );
        assert!(tb.add_on_attachment(pa, "600").await.unwrap().is_none());
        assert!(
            tb.add_on_attachment_for_target(target)
                .await
                .unwrap()
                .is_none()
        );

        // A student's open: a launch redeemable once, with the submission kept.
        let recorded = ta
            .record_add_on_open(&open(pa, Some(graded.clone()), "code-1"))
            .await
            .unwrap();
        assert_eq!(recorded.grade_target_id, Some(target));
        assert_eq!(
            ta.add_on_submission(pa, "600", "200000000001")
                .await
                .unwrap(),
            Some("sub-1".into())
        );
        assert!(
            tb.redeem_handoff(&sha256_hex(b"code-1"))
                .await
                .unwrap()
                .is_none()
        );
        let summary = ta
            .redeem_handoff(&sha256_hex(b"code-1"))
            .await
            .unwrap()
            .expect("redeemable");
        assert_eq!(summary["platform"], "google_classroom");
        assert_eq!(summary["roles"], serde_json::json!(["learner"]));
        assert_eq!(summary["google_classroom"]["submission_id"], "sub-1");
        assert_eq!(summary["context"]["title"], "Algebra 1");
        let second = ta
            .record_add_on_open(&AddOnOpen {
                course_title: None,
                ..open(pa, Some(graded.clone()), "code-3")
            })
            .await
            .unwrap();
        assert_eq!(
            second.summary["context"]["title"], "Algebra 1",
            "the course's stored name"
        );
        assert_eq!(second.person_id, recorded.person_id);
        assert!(
            ta.redeem_handoff(&sha256_hex(b"code-1"))
                .await
                .unwrap()
                .is_none()
        );
        // The same Google account on another tenant's platform is another person, and a
        // write through the wrong tenant's platform is refused.
        assert!(
            tb.record_add_on_open(&open(pa, None, "code-x"))
                .await
                .is_err()
        );
        assert!(
            tb.record_add_on_attachment(&NewAddOnAttachment {
                attachment_id: "602".into(),
                ..new.clone()
            })
            .await
            .is_err(),
            "not through another tenant's platform"
        );
        assert!(
            tb.save_push_registration(pa, "300", "100", "projects/p/topics/t", "r", 1)
                .await
                .is_err()
        );
        let other = tb
            .record_add_on_open(&open(pb, None, "code-2"))
            .await
            .unwrap();
        assert_ne!(other.person_id, recorded.person_id);

        // A score for the attachment is claimed back as an add-on location.
        ta.enqueue_score(&final_score(target, recorded.person_id.unwrap(), 4.0, 5.0))
            .await
            .unwrap();
        let claimed = store
            .claim_scores("w", now_micros() + 60_000_000, 10)
            .await
            .unwrap();
        let mine: Vec<_> = claimed.iter().filter(|c| c.tenant_id == a.id).collect();
        assert_eq!(mine.len(), 1, "{label}");
        assert_eq!(
            mine[0].location,
            GradeTargetLocation::ClassroomAddOnAttachment {
                course_id: "300".into(),
                item_id: "400".into(),
                attachment_id: "600".into(),
            }
        );
        assert_eq!(mine[0].platform_user_id, "200000000001");

        // Registrations: stored with expiry, claimed once per lease when due.
        let now = now_micros();
        let week = 7 * 24 * 3600 * 1_000_000;
        let reg = ta
            .save_push_registration(pa, "300", "100", "projects/p/topics/t", "reg-1", now + week)
            .await
            .unwrap();
        assert_eq!(reg.registration_id.as_deref(), Some("reg-1"));
        assert!(
            store
                .claim_push_renewals(now + 24 * 3600 * 1_000_000, now, 300_000_000, 10)
                .await
                .unwrap()
                .is_empty(),
            "not due"
        );
        let later = now + week - 3600 * 1_000_000;
        let due = store
            .claim_push_renewals(later + 24 * 3600 * 1_000_000, later, 300_000_000, 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, sa);
        assert!(
            store
                .claim_push_renewals(later + 24 * 3600 * 1_000_000, later + 1, 300_000_000, 10)
                .await
                .unwrap()
                .is_empty(),
            "leased"
        );
        ta.note_push_registration_failure(pa, "300", "Classroom said no")
            .await
            .unwrap();
        assert_eq!(
            ta.push_registration(pa, "300")
                .await
                .unwrap()
                .unwrap()
                .last_error
                .as_deref(),
            Some("Classroom said no")
        );
        let renewed = ta
            .save_push_registration(
                pa,
                "300",
                "100",
                "projects/p/topics/t",
                "reg-2",
                now + 2 * week,
            )
            .await
            .unwrap();
        assert_eq!(renewed.id, reg.id, "one registration per course");
        assert!(renewed.renewed_at.is_some() && renewed.last_error.is_none());
        assert!(tb.push_registration(pa, "300").await.unwrap().is_none());
        let for_course = store.push_registrations_for_course("300").await.unwrap();
        assert_eq!(for_course.len(), 1);
        assert_eq!(for_course[0].0, sa);

        // Push messages: once per message id.
        assert!(
            ta.record_push_event(
                pa,
                "300",
                "m-1",
                Some("courses.students"),
                Some("CREATED"),
                "received"
            )
            .await
            .unwrap()
        );
        assert!(
            !ta.record_push_event(pa, "300", "m-1", None, None, "received")
                .await
                .unwrap()
        );
        ta.set_push_event_outcome(pa, "m-1", "resync_queued")
            .await
            .unwrap();
        let events = ta.push_events(10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].outcome, "resync_queued");
        assert!(tb.push_events(10).await.unwrap().is_empty());
        let report = store.verify_audit(None).await.unwrap();
        assert!(
            report.iter().all(|r| r.is_intact()),
            "{label}: audit intact"
        );
        db.cleanup().await;
    }
}
