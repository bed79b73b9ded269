//! The demo in a real browser: headless Chromium, with cookies allowed and with every cookie
//! blocked (as Safari and Chrome do to third-party cookies inside an LMS iframe), where the
//! launch must get through on LTI platform storage.
//!
//! Needs Chromium (`/usr/bin/chromium`, or `LMSBRIDGE_CHROMIUM`). Without it the test says so
//! and skips, unless `LMSBRIDGE_BROWSER_TESTS` is set (as `.ci/run` does), where that is an error.

mod common;

use std::path::PathBuf;
use std::time::Duration;

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("LMSBRIDGE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("LMSBRIDGE_BROWSER_TESTS").is_none(),
        "LMSBRIDGE_BROWSER_TESTS is set but Chromium is missing at {}",
        path.display()
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (browser): no Chromium at {}; install the chromium package",
        path.display()
    );
    None
}

/// Loads `url` in a fresh headless profile and returns the DOM once the page settled.
async fn dump_dom(chromium: &PathBuf, url: &url::Url, block_cookies: bool) -> String {
    let profile = std::env::temp_dir().join(format!("lmsbridge-chromium-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(profile.join("Default")).unwrap();
    if block_cookies {
        std::fs::write(
            profile.join("Default/Preferences"),
            r#"{"profile":{"default_content_setting_values":{"cookies":2}}}"#,
        )
        .unwrap();
    }
    let run = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url.as_str())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("Chromium finished within 90 s")
        .unwrap();
    let _ = std::fs::remove_dir_all(profile);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn observed(dom: &str) -> &str {
    let start = dom.find("<pre id=\"observed\"").expect("the frame page");
    let start = start + dom[start..].find('>').unwrap() + 1;
    &dom[start..start + dom[start..].find("</pre>").unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_in_chromium_with_cookies_and_with_cookies_blocked() {
    let Some(chromium) = chromium() else { return };
    let r = common::start(None).await;

    // Cookies allowed: the ordinary launch, top level.
    let dom = dump_dom(
        &chromium,
        &r.lms.launch_url("student-1", "resource-1"),
        false,
    )
    .await;
    assert!(
        dom.contains("Welcome, <span id=\"person-name\">Ada Lovelace</span>"),
        "{dom}"
    );

    // Every cookie blocked: without platform storage the launch cannot be bound ...
    let dom = dump_dom(
        &chromium,
        &r.lms.launch_url("student-1", "resource-1"),
        true,
    )
    .await;
    assert!(dom.contains("state_cookie_missing"), "{dom}");

    // ... and with it, inside the LMS frame, it reaches the product.
    let dom = dump_dom(&chromium, &r.lms.frame_url("student-2", "resource-2"), true).await;
    let seen = observed(&dom);
    assert!(seen.starts_with("/product/launch"), "{seen}");
    assert!(seen.contains("Welcome, Alan Turing"), "{seen}");
    assert!(seen.contains("Photosynthesis essay"), "{seen}");

    common::stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teacher_places_items_from_the_picker_inside_the_lms_frame() {
    let Some(chromium) = chromium() else { return };
    let r = common::start(None).await;

    // Inside the LMS's frame (frame-ancestors lets the LMS frame the picker), the teacher ticks
    // the offered items and adds them; the response page's script posts them to the LMS.
    let dom = dump_dom(
        &chromium,
        &r.lms.deep_linking_frame_url("teacher-1", true, false),
        false,
    )
    .await;
    let seen = observed(&dom);
    assert!(seen.starts_with("/lms/deep_linking/return"), "{seen}");
    assert!(seen.contains("2 activities added"), "{seen}");
    assert!(
        seen.contains("Enzyme kinetics quiz") && seen.contains("Genetics lab report"),
        "{seen}"
    );
    assert_eq!(r.lms.deep_linked_resources().len(), 2);

    // With every cookie blocked the launch is bound by platform storage, and the picker opens
    // through it.
    let dom = dump_dom(
        &chromium,
        &r.lms.deep_linking_frame_url("teacher-1", true, true),
        true,
    )
    .await;
    let seen = observed(&dom);
    assert!(seen.starts_with("/lms/deep_linking/return"), "{seen}");
    assert!(seen.contains("2 activities added"), "{seen}");
    assert_eq!(r.lms.deep_linked_resources().len(), 4);

    common::stop(r).await;
}
