//! The README's promise, end to end over real HTTP on loopback: a student launches an
//! activity from the simulated LMS, lands on the product page with their name and course,
//! presses "Grade me", and the grade appears in the LMS gradebook.

use std::time::Duration;
use testkit::Browser;

mod common;
use common::{Running, start, stop};

async fn walk_launch_to_gradebook(r: &Running) {
    let browser = Browser::new();
    let home = browser.get(r.demo_url.as_str()).await.unwrap();
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains("Ada Lovelace"));

    // The student clicks the activity in the LMS; the browser follows the OIDC login, the
    // platform's auto-posting form, and the handoff redirect to the product.
    let product = browser
        .get(r.lms.launch_url("student-1", "resource-1").as_str())
        .await
        .unwrap();
    assert_eq!(product.status, 200, "{}", product.body);
    assert_eq!(product.url.path(), "/product/launch");
    assert!(
        product
            .body
            .contains("<span id=\"person-name\">Ada Lovelace</span>"),
        "{}",
        product.body
    );
    assert!(product.body.contains("Introduction to Biology"));
    assert!(product.body.contains("Cell structure quiz"));
    assert!(
        product.trail.iter().any(|u| u.path() == "/lti/login"),
        "the launch went through lmsbridge's login: {:?}",
        product.trail
    );

    let sent = product.submit("grade", &[("score", "87")]).await.unwrap();
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(sent.body.contains("id=\"queued\""), "{}", sent.body);

    // The worker delivers it to the LMS's AGS endpoint.
    let mut landed = None;
    for _ in 0..150 {
        landed = r
            .lms
            .gradebook()
            .into_iter()
            .find(|e| e.user_id == "student-1" && e.line_item_id == "1");
        if landed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let entry = landed.expect("the score reached the simulated gradebook");
    assert_eq!(entry.score_given, Some(87.0));
    assert_eq!(entry.score_maximum, Some(100.0));
    assert_eq!(entry.grading_progress, "FullyGraded");

    let gradebook = browser.get(r.lms.gradebook_url().as_str()).await.unwrap();
    assert!(gradebook.body.contains("87"), "{}", gradebook.body);
    // Exactly one score was sent for the one button press.
    assert_eq!(r.lms.scores().len(), 1);
}

/// The demo's Google Classroom steps ran: the teacher connected, the roster synced, and the
/// grade the product sent through `POST /api/v1/scores` is in the simulated Classroom, on a
/// courseWork and on an add-on attachment.
async fn google_step_ran(r: &Running) {
    let outcome = r
        .google
        .outcome(Duration::from_secs(60))
        .await
        .expect("the Google step finished")
        .expect("the Google step succeeded");
    assert_eq!(outcome.assigned_grade, Some(8.0), "{outcome:?}");
    assert_eq!(outcome.max_points, 10.0);
    assert!(outcome.members >= 8, "{outcome:?}");
    let held = r.google.classroom.submissions(&outcome.course_work_id);
    assert!(
        held.iter()
            .any(|s| s.assigned_grade == Some(8.0) && s.state == "RETURNED")
    );
    // The add-on step follows: a graded catalog item attached in Classroom, and the
    // product's grade for the student who opened it held as pointsEarned.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let attachment = loop {
        let graded = r
            .google
            .classroom
            .attachments()
            .into_iter()
            .find(|a| a.max_points.is_some() && !a.points.is_empty());
        if let Some(a) = graded {
            break a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the add-on step never graded: {:?}",
            r.google.classroom.attachments()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(attachment.grade_sync_enabled, "{attachment:?}");
    assert!(
        attachment
            .points
            .iter()
            .all(|(_, p)| *p > 0.0 && Some(*p) <= attachment.max_points),
        "{attachment:?}"
    );
    assert!(
        r.google
            .classroom
            .requests()
            .iter()
            .all(|q| q.invalid.is_none())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_student_launch_reaches_the_gradebook_on_sqlite() {
    let r = start(None).await;
    walk_launch_to_gradebook(&r).await;
    google_step_ran(&r).await;
    stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_student_launch_reaches_the_gradebook_on_postgres() {
    let Some(db) = store::testing::TestDatabase::postgres().await.unwrap() else {
        return;
    };
    let r = start(Some(db.url.clone())).await;
    walk_launch_to_gradebook(&r).await;
    google_step_ran(&r).await;
    stop(r).await;
    db.cleanup().await;
}
