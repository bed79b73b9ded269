//! The demo's Google Classroom Add-ons step, after the Google Classroom step: the simulated
//! teacher opens the add-on's attachment discovery on an assignment she made in Classroom
//! itself, signs in with Google, and attaches a graded item from the product's catalog; a
//! simulated student opens it, lands on the sample product through the one-time code like
//! an LTI launch, and presses "Grade me"; the simulated Classroom then holds the points on
//! the student's attachment submission.

use super::GoogleDemo;
use anyhow::Context;
use std::time::{Duration, Instant};
use testkit::Browser;
use url::Url;

/// What the add-on step did.
#[derive(Debug, Clone, PartialEq)]
pub struct AddOnOutcome {
    pub item_title: String,
    pub student_name: String,
    pub points_earned: Option<f64>,
    pub max_points: Option<f64>,
}

/// Runs the step once the Google Classroom step is done, and prints what happened.
pub fn run_in_background(app: server::App, scope: store::TenantScope, google: GoogleDemo) {
    tokio::spawn(async move {
        // The Classroom step connects the teacher first; the add-on then asks her for the
        // add-on scopes on top.
        if google.outcome(Duration::from_secs(120)).await.is_none() {
            return;
        }
        match run(&app, &scope, &google).await {
            Ok(o) => println!(
                "  Google Classroom add-on: \u{201c}{}\u{201d} attached to an assignment made in Classroom; {} opened it \
                 and was graded: the simulated Classroom holds pointsEarned {} of {}.",
                o.item_title,
                o.student_name,
                o.points_earned
                    .map_or_else(|| "none".to_owned(), |p| p.to_string()),
                o.max_points
                    .map_or_else(|| "none".to_owned(), |p| p.to_string()),
            ),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "the demo's Google add-on step failed");
            }
        }
    });
}

async fn run(
    app: &server::App,
    scope: &store::TenantScope,
    google: &GoogleDemo,
) -> anyhow::Result<AddOnOutcome> {
    let classroom = &google.classroom;
    classroom.allow_redirect_uri(app.settings().public("google/addons/callback"));
    let tenant = app.store().tenant(scope);
    let platform = tenant
        .google_platform()
        .await?
        .context("the demo tenant has no Google Classroom platform")?;
    // The sample product registers its catalog through the API once lmsbridge serves.
    let started = Instant::now();
    let item = loop {
        let items = tenant.catalog_items(false).await?;
        if let Some(i) = items.into_iter().find(|i| i.score_maximum.is_some()) {
            break i;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the product's catalog never appeared"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let view = |name: &str, params: &[(&str, &str)]| -> anyhow::Result<Url> {
        let mut u = app
            .settings()
            .public(&format!("google/addons/{}/{name}", platform.id));
        u.query_pairs_mut().extend_pairs(params);
        Ok(u)
    };
    let course = classroom.algebra_course_id();
    let post = classroom.foreign_course_work_id();
    let teacher = classroom.teacher();
    let token = classroom.issue_add_on_token(&course, &post);

    let browser = Browser::new();
    let page = browser
        .get(
            view(
                "discovery",
                &[
                    ("courseId", &course),
                    ("itemId", &post),
                    ("itemType", "courseWork"),
                    ("addOnToken", &token),
                    ("login_hint", &teacher.email),
                ],
            )?
            .as_str(),
        )
        .await?;
    let page = page.click("Sign in with Google").await?;
    let item_id = item.id.to_string();
    let page = page.submit("addon-pick", &[("item", &item_id)]).await?;
    anyhow::ensure!(page.status == 200, "attaching failed: {}", page.body);
    let attachment = classroom
        .attachments()
        .into_iter()
        .find(|a| a.item_id == post)
        .context("Classroom holds no attachment")?;

    let student = classroom
        .students()
        .get(1)
        .cloned()
        .context("the simulated course has students")?;
    let browser = Browser::new();
    let page = browser
        .get(
            view(
                "student",
                &[
                    ("courseId", &course),
                    ("itemId", &post),
                    ("itemType", "courseWork"),
                    ("attachmentId", &attachment.id),
                    ("login_hint", &student.email),
                ],
            )?
            .as_str(),
        )
        .await?;
    let page = page.click("Sign in with Google").await?;
    anyhow::ensure!(
        page.form("grade").is_some(),
        "the student did not reach the product: {}",
        page.body
    );
    let page = page.submit("grade", &[]).await?;
    anyhow::ensure!(
        page.status == 200,
        "the product's score failed: {}",
        page.body
    );
    let started = Instant::now();
    let points = loop {
        let held = classroom
            .attachments()
            .into_iter()
            .find(|a| a.id == attachment.id)
            .and_then(|a| a.points.first().map(|(_, p)| *p));
        if held.is_some() || started.elapsed() > Duration::from_secs(30) {
            break held;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    Ok(AddOnOutcome {
        item_title: item.title,
        student_name: student.full_name(),
        points_earned: points,
        max_points: attachment.max_points,
    })
}
