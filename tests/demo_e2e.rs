//! The README's promise, end to end over real HTTP on loopback: a student launches an
//! activity from the simulated LMS, lands on the product page with their name and course,
//! presses "Grade me", and the grade appears in the LMS gradebook.

use lmsbridge::demo::{self, Demo};
use server::Settings;
use std::time::Duration;
use testkit::Browser;

struct Running {
    demo_url: url::Url,
    lms: testkit::SimulatedLms,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    dir: std::path::PathBuf,
}

async fn start(database_url: Option<String>) -> Running {
    let dir = std::env::temp_dir().join(format!("lmsbridge-e2e-{}", uuid::Uuid::new_v4()));
    let mut settings = Settings::defaults_for("127.0.0.1:0".parse().unwrap(), dir.clone());
    if let Some(url) = database_url {
        settings.database_url = url;
    }
    let listener = demo::bind(&mut settings).await.unwrap();
    let d = Demo::prepare(settings).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (lms, product) = (d.lms.clone(), d.product.clone());
    let server = tokio::spawn(lmsbridge::cli::run_server(
        listener,
        d.running,
        move |app| Demo::router(&lms, &product, app),
        true,
        async {
            let _ = stopped.await;
        },
    ));
    Running {
        demo_url: d.start_url,
        lms: d.lms,
        stop,
        server,
        dir,
    }
}

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

async fn stop(r: Running) {
    let _ = r.stop.send(());
    r.server.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(r.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_student_launch_reaches_the_gradebook_on_sqlite() {
    let r = start(None).await;
    walk_launch_to_gradebook(&r).await;
    stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_student_launch_reaches_the_gradebook_on_postgres() {
    let Some(db) = store::testing::TestDatabase::postgres().await.unwrap() else {
        return;
    };
    let r = start(Some(db.url.clone())).await;
    walk_launch_to_gradebook(&r).await;
    stop(r).await;
    db.cleanup().await;
}
