//! The Google push settings as `lmsbridge serve` loads them: defaults, a file setting each,
//! and values refused with the setting named.

use lmsbridge::settings::{SettingsFlags, load};

#[test]
fn google_push_settings_have_defaults_and_bounds() {
    let dir = std::env::temp_dir().join(format!("lmsb-gpush-cfg-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lmsbridge.toml");
    std::fs::write(&file, "").unwrap();
    let s = load(Some(&file), &SettingsFlags::default()).unwrap();
    assert_eq!(s.google_pubsub_topic, None);
    assert_eq!(s.google_push_audience, None);
    assert_eq!(s.google_push_service_account, None);
    assert_eq!(
        s.google_push_certs_url.as_str(),
        "https://www.googleapis.com/oauth2/v3/certs"
    );
    assert_eq!(s.google_resync_interval_secs, 21_600);
    std::fs::write(
        &file,
        "google_pubsub_topic = \"projects/school/topics/roster\"\n\
         google_push_audience = \"https://lti.example.edu/google/push\"\n\
         google_push_service_account = \"push@school.iam.gserviceaccount.com\"\n\
         google_push_certs_url = \"http://127.0.0.1:9/certs\"\n\
         google_resync_interval_secs = 0\n",
    )
    .unwrap();
    let s = load(Some(&file), &SettingsFlags::default()).unwrap();
    assert_eq!(
        s.google_pubsub_topic.as_deref(),
        Some("projects/school/topics/roster")
    );
    assert_eq!(
        s.google_push_audience.as_deref(),
        Some("https://lti.example.edu/google/push")
    );
    assert_eq!(
        s.google_push_service_account.as_deref(),
        Some("push@school.iam.gserviceaccount.com")
    );
    assert_eq!(s.google_push_certs_url.as_str(), "http://127.0.0.1:9/certs");
    assert_eq!(s.google_resync_interval_secs, 0);
    for (bad, named) in [
        ("google_pubsub_topic = \"roster\"", "google_pubsub_topic"),
        (
            "google_pubsub_topic = \"projects/p/subscriptions/s\"",
            "google_pubsub_topic",
        ),
        (
            "google_resync_interval_secs = 10",
            "google_resync_interval_secs",
        ),
        (
            "google_push_certs_url = \"ftp://x.example/certs\"",
            "google_push_certs_url",
        ),
    ] {
        std::fs::write(&file, bad).unwrap();
        let e = load(Some(&file), &SettingsFlags::default()).unwrap_err();
        assert!(e.to_string().contains(named), "{bad}: {e}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
