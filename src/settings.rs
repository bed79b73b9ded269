//! Settings from, in rising priority: defaults, a TOML file (`--config`), `LMSBRIDGE_*`
//! environment variables, and command-line flags.

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use server::{LogFormat, Settings};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use url::Url;

/// The settings flags can override. `None` means "not given on the command line".
#[derive(Debug, Clone, Default, Serialize, Deserialize, clap::Args)]
pub struct SettingsFlags {
    /// Address to listen on [env: LMSBRIDGE_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Externally visible base URL, used in redirect URIs [env: LMSBRIDGE_PUBLIC_URL] [default: http://<listen>/]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<Url>,
    /// sqlite:… or postgres://… [env: LMSBRIDGE_DATABASE_URL] [default: a SQLite file in the data directory]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Directory for the SQLite database and the master key file [env: LMSBRIDGE_DATA_DIR] [default: ./lmsbridge-data]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

/// Every setting as optional, for layering.
#[derive(Debug, Default, Deserialize)]
struct Layered {
    listen: Option<SocketAddr>,
    public_url: Option<Url>,
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    master_key: Option<String>,
    log_format: Option<LogFormat>,
    clock_skew_secs: Option<i64>,
    login_state_ttl_secs: Option<i64>,
    handoff_ttl_secs: Option<i64>,
    run_worker: Option<bool>,
    key_publish_lead_secs: Option<i64>,
    key_grace_secs: Option<i64>,
    key_rotation_days: Option<i64>,
    tool_name: Option<String>,
    platform_rate_per_sec: Option<f64>,
    platform_max_concurrency: Option<usize>,
    platform_rate_budget_low_water: Option<f64>,
    passback_lease_secs: Option<u64>,
    passback_max_attempts: Option<i64>,
    passback_give_up_hours: Option<u64>,
    google_authorization_url: Option<Url>,
    google_token_url: Option<Url>,
    google_revocation_url: Option<Url>,
    google_userinfo_url: Option<Url>,
    google_classroom_api_url: Option<Url>,
    metrics_token: Option<String>,
    google_push_audience: Option<String>,
    google_push_service_account: Option<String>,
    google_push_certs_url: Option<Url>,
    google_pubsub_topic: Option<String>,
    google_resync_interval_secs: Option<u64>,
    moodle_timestamp_window_secs: Option<i64>,
    moodle_reconcile_interval_secs: Option<i64>,
}

const ENV_KEYS: &[&str] = &[
    "listen",
    "public_url",
    "database_url",
    "data_dir",
    "master_key",
    "log_format",
    "clock_skew_secs",
    "login_state_ttl_secs",
    "handoff_ttl_secs",
    "run_worker",
    "key_publish_lead_secs",
    "key_grace_secs",
    "key_rotation_days",
    "tool_name",
    "platform_rate_per_sec",
    "platform_max_concurrency",
    "platform_rate_budget_low_water",
    "passback_lease_secs",
    "passback_max_attempts",
    "passback_give_up_hours",
    "google_authorization_url",
    "google_token_url",
    "google_revocation_url",
    "google_userinfo_url",
    "google_classroom_api_url",
    "metrics_token",
    "google_push_audience",
    "google_push_service_account",
    "google_push_certs_url",
    "google_pubsub_topic",
    "google_resync_interval_secs",
    "moodle_timestamp_window_secs",
    "moodle_reconcile_interval_secs",
];

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Loads the effective settings.
pub fn load(config: Option<&Path>, flags: &SettingsFlags) -> anyhow::Result<Settings> {
    let mut fig = Figment::new();
    if let Some(path) = config {
        anyhow::ensure!(
            path.exists(),
            "config file {} does not exist",
            path.display()
        );
        fig = fig.merge(Toml::file(path));
    }
    let layered: Layered = fig
        .merge(Env::prefixed("LMSBRIDGE_").only(ENV_KEYS))
        .merge(Serialized::defaults(flags))
        .extract()
        .map_err(|e| anyhow::anyhow!("invalid setting: {e}"))?;
    let listen = match layered.listen {
        Some(l) => l,
        None => DEFAULT_LISTEN.parse().context("default listen address")?,
    };
    let data_dir = layered
        .data_dir
        .unwrap_or_else(|| PathBuf::from("lmsbridge-data"));
    let mut s = Settings::defaults_for(listen, data_dir);
    if let Some(u) = layered.public_url {
        anyhow::ensure!(
            matches!(u.scheme(), "http" | "https"),
            "LMSBRIDGE_PUBLIC_URL must be an http(s) URL"
        );
        s.public_url = u;
    }
    if let Some(d) = layered.database_url {
        s.database_url = d;
    }
    s.master_key = layered.master_key.filter(|k| !k.is_empty());
    s.metrics_token = layered.metrics_token.filter(|k| !k.is_empty());
    for (name, value, slot) in [
        (
            "google_authorization_url",
            layered.google_authorization_url,
            &mut s.google_authorization_url,
        ),
        (
            "google_token_url",
            layered.google_token_url,
            &mut s.google_token_url,
        ),
        (
            "google_revocation_url",
            layered.google_revocation_url,
            &mut s.google_revocation_url,
        ),
        (
            "google_userinfo_url",
            layered.google_userinfo_url,
            &mut s.google_userinfo_url,
        ),
        (
            "google_classroom_api_url",
            layered.google_classroom_api_url,
            &mut s.google_classroom_api_url,
        ),
    ] {
        if let Some(u) = value {
            anyhow::ensure!(
                matches!(u.scheme(), "http" | "https"),
                "{name} must be an http(s) URL"
            );
            *slot = u;
        }
    }
    s.google_push_audience = layered.google_push_audience.filter(|a| !a.is_empty());
    s.google_push_service_account = layered
        .google_push_service_account
        .filter(|a| !a.is_empty());
    if let Some(u) = layered.google_push_certs_url {
        anyhow::ensure!(
            matches!(u.scheme(), "http" | "https"),
            "google_push_certs_url must be an http(s) URL"
        );
        s.google_push_certs_url = u;
    }
    if let Some(t) = layered.google_pubsub_topic.filter(|t| !t.is_empty()) {
        let parts: Vec<&str> = t.split('/').collect();
        anyhow::ensure!(
            parts.len() == 4 && parts[0] == "projects" && parts[2] == "topics",
            "google_pubsub_topic must be projects/<project>/topics/<topic>"
        );
        s.google_pubsub_topic = Some(t);
    }
    if let Some(i) = layered.google_resync_interval_secs {
        anyhow::ensure!(
            i == 0 || (60..=7 * 86_400).contains(&i),
            "google_resync_interval_secs must be 0 (off) or between 60 and 604800"
        );
        s.google_resync_interval_secs = i;
    }
    s.log_format = layered.log_format.unwrap_or_default();
    s.clock_skew_secs = layered.clock_skew_secs.unwrap_or(s.clock_skew_secs);
    s.login_state_ttl_secs = layered
        .login_state_ttl_secs
        .unwrap_or(s.login_state_ttl_secs);
    s.handoff_ttl_secs = layered.handoff_ttl_secs.unwrap_or(s.handoff_ttl_secs);
    s.run_worker = layered.run_worker.unwrap_or(s.run_worker);
    s.key_publish_lead_secs = layered
        .key_publish_lead_secs
        .unwrap_or(s.key_publish_lead_secs);
    s.key_grace_secs = layered.key_grace_secs.unwrap_or(s.key_grace_secs);
    s.key_rotation_days = layered.key_rotation_days.unwrap_or(s.key_rotation_days);
    if let Some(rate) = layered.platform_rate_per_sec {
        anyhow::ensure!(
            rate.is_finite() && (0.01..=10_000.0).contains(&rate),
            "platform_rate_per_sec must be between 0.01 and 10000"
        );
        s.platform_rate_per_sec = rate;
    }
    if let Some(c) = layered.platform_max_concurrency {
        anyhow::ensure!(
            (1..=256).contains(&c),
            "platform_max_concurrency must be between 1 and 256"
        );
        s.platform_max_concurrency = c;
    }
    if let Some(w) = layered.platform_rate_budget_low_water {
        anyhow::ensure!(
            w.is_finite() && (0.0..=100_000.0).contains(&w),
            "platform_rate_budget_low_water must be between 0 and 100000"
        );
        s.platform_rate_budget_low_water = w;
    }
    if let Some(l) = layered.passback_lease_secs {
        anyhow::ensure!(
            (5..=3600).contains(&l),
            "passback_lease_secs must be between 5 and 3600"
        );
        s.passback_lease_secs = l;
    }
    if let Some(n) = layered.passback_max_attempts {
        anyhow::ensure!(
            (1..=1000).contains(&n),
            "passback_max_attempts must be between 1 and 1000"
        );
        s.passback_max_attempts = n;
    }
    if let Some(h) = layered.passback_give_up_hours {
        anyhow::ensure!(
            (1..=24 * 90).contains(&h),
            "passback_give_up_hours must be between 1 and 2160 (90 days)"
        );
        s.passback_give_up_hours = h;
    }
    if let Some(name) = layered.tool_name {
        anyhow::ensure!(
            !name.trim().is_empty() && name.len() <= 100,
            "tool_name must be 1 to 100 characters"
        );
        s.tool_name = name;
    }
    if let Some(w) = layered.moodle_timestamp_window_secs {
        anyhow::ensure!(
            (1..=3600).contains(&w),
            "moodle_timestamp_window_secs must be between 1 and 3600"
        );
        s.moodle_timestamp_window_secs = w;
    }
    if let Some(i) = layered.moodle_reconcile_interval_secs {
        anyhow::ensure!(
            i == 0 || (60..=7 * 86_400).contains(&i),
            "moodle_reconcile_interval_secs must be 0 (off) or between 60 and 604800"
        );
        s.moodle_reconcile_interval_secs = i;
    }
    anyhow::ensure!(
        (0..=3600).contains(&s.clock_skew_secs),
        "clock_skew_secs must be between 0 and 3600"
    );
    Ok(s)
}

/// The flags of commands that only need the database.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DbFlags {
    /// sqlite:… or postgres://… [env: LMSBRIDGE_DATABASE_URL] [default: a SQLite file in the data directory]
    #[arg(long)]
    pub database_url: Option<String>,
    /// Directory for the SQLite database and the master key file [env: LMSBRIDGE_DATA_DIR] [default: ./lmsbridge-data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl From<&DbFlags> for SettingsFlags {
    fn from(d: &DbFlags) -> Self {
        Self {
            database_url: d.database_url.clone(),
            data_dir: d.data_dir.clone(),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags_with_derived_public_url() {
        let dir = std::env::temp_dir().join(format!("lmsb-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lmsbridge.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\nclock_skew_secs = 30\n").unwrap();
        let s = load(Some(&file), &SettingsFlags::default()).unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.public_url.as_str(), "http://127.0.0.1:9000/");
        assert_eq!(s.clock_skew_secs, 30);
        let flags = SettingsFlags {
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            ..Default::default()
        };
        let s = load(Some(&file), &flags).unwrap();
        assert_eq!(s.listen.port(), 9100, "flags win over the file");
        assert!(s.database_url.starts_with("sqlite://"));
        assert!(load(Some(&dir.join("missing.toml")), &flags).is_err());
        std::fs::write(&file, "clock_skew_secs = 99999\n").unwrap();
        assert!(load(Some(&file), &SettingsFlags::default()).is_err());
        std::fs::write(
            &file,
            "passback_lease_secs = 120\npassback_max_attempts = 7\npassback_give_up_hours = 12\nplatform_rate_budget_low_water = 0\n",
        )
        .unwrap();
        let s = load(Some(&file), &SettingsFlags::default()).unwrap();
        assert_eq!(
            (
                s.passback_lease_secs,
                s.passback_max_attempts,
                s.passback_give_up_hours,
                s.platform_rate_budget_low_water
            ),
            (120, 7, 12, 0.0)
        );
        for bad in [
            "passback_lease_secs = 1",
            "passback_max_attempts = 0",
            "passback_give_up_hours = 0",
            "platform_rate_budget_low_water = -5",
        ] {
            std::fs::write(&file, format!("{bad}\n")).unwrap();
            assert!(
                load(Some(&file), &SettingsFlags::default()).is_err(),
                "{bad}"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn moodle_settings_have_defaults_and_bounds() {
        let dir = std::env::temp_dir().join(format!("lmsb-moodle-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lmsbridge.toml");
        std::fs::write(&file, "").unwrap();
        let s = load(Some(&file), &SettingsFlags::default()).unwrap();
        assert_eq!(s.moodle_timestamp_window_secs, 300);
        assert_eq!(s.moodle_reconcile_interval_secs, 3600);
        std::fs::write(
            &file,
            "moodle_timestamp_window_secs = 120\nmoodle_reconcile_interval_secs = 0\n",
        )
        .unwrap();
        let s = load(Some(&file), &SettingsFlags::default()).unwrap();
        assert_eq!(
            (
                s.moodle_timestamp_window_secs,
                s.moodle_reconcile_interval_secs
            ),
            (120, 0)
        );
        for bad in [
            "moodle_timestamp_window_secs = 0",
            "moodle_timestamp_window_secs = 7200",
            "moodle_reconcile_interval_secs = 30",
        ] {
            std::fs::write(&file, bad).unwrap();
            assert!(
                load(Some(&file), &SettingsFlags::default()).is_err(),
                "{bad}"
            );
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
