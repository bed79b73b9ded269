//! Typed settings. Loading (file, environment, flags) is the CLI's job; this is the shape.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use url::Url;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Everything `serve` needs to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The externally visible base URL (redirect URIs, JWKS URL, launch URL).
    pub public_url: Url,
    /// `sqlite:…` or `postgres://…`.
    pub database_url: String,
    /// Where the SQLite database and the generated master key file live.
    pub data_dir: PathBuf,
    /// Base64 of 32 bytes; when absent a key file in `data_dir` is used (created on first start).
    #[serde(default)]
    pub master_key: Option<String>,
    #[serde(default)]
    pub log_format: LogFormat,
    /// Allowed clock difference with platforms, seconds.
    pub clock_skew_secs: i64,
    /// How long a login may take before its state expires, seconds.
    pub login_state_ttl_secs: i64,
    /// How long a handoff code stays redeemable, seconds.
    pub handoff_ttl_secs: i64,
    /// Run the passback worker inside `serve`.
    pub run_worker: bool,
    /// How long a new tool key is published before it signs, seconds.
    pub key_publish_lead_secs: i64,
    /// How long a replaced key stays published after the new one starts signing, seconds.
    pub key_grace_secs: i64,
    /// Rotate the tool key automatically once it has signed this many days (0: never).
    pub key_rotation_days: i64,
    /// The tool's name as platforms show it (sent in Dynamic Registration).
    #[serde(default = "default_tool_name")]
    pub tool_name: String,
    /// Grade passback: sustained requests per second to each platform.
    #[serde(default = "default_platform_rate")]
    pub platform_rate_per_sec: f64,
    /// Grade passback: most requests in flight to each platform (Canvas: at most 4).
    #[serde(default = "default_platform_concurrency")]
    pub platform_max_concurrency: usize,
    /// Grade passback: when a platform reports less than this left of its rate budget
    /// (Canvas's `X-Rate-Limit-Remaining`), halve the requests in flight to it (0: ignore).
    #[serde(default = "default_rate_budget_low_water")]
    pub platform_rate_budget_low_water: f64,
    /// Grade passback: how long a worker owns a claimed score before another may take it.
    #[serde(default = "default_passback_lease_secs")]
    pub passback_lease_secs: u64,
    /// Grade passback: a score still failing after this many attempts is dead.
    #[serde(default = "default_passback_max_attempts")]
    pub passback_max_attempts: i64,
    /// Grade passback: a score still failing this many hours after it was queued is dead.
    #[serde(default = "default_passback_give_up_hours")]
    pub passback_give_up_hours: u64,
    /// Google OAuth 2.0 authorization endpoint (tests and the demo point every Google
    /// endpoint at the simulated Classroom).
    #[serde(default = "default_google_authorization_url")]
    pub google_authorization_url: Url,
    /// Google OAuth 2.0 token endpoint.
    #[serde(default = "default_google_token_url")]
    pub google_token_url: Url,
    /// Google OAuth 2.0 revocation endpoint.
    #[serde(default = "default_google_revocation_url")]
    pub google_revocation_url: Url,
    /// Google OpenID Connect userinfo endpoint.
    #[serde(default = "default_google_userinfo_url")]
    pub google_userinfo_url: Url,
    /// The Classroom API root (`v1/courses` is joined onto it).
    #[serde(default = "default_google_classroom_api_url")]
    pub google_classroom_api_url: Url,
    /// When set, `GET /metrics` wants it as a bearer token.
    #[serde(default)]
    pub metrics_token: Option<String>,
    /// Google push: the audience the Pub/Sub push subscription puts in its OIDC token;
    /// unset, `POST /google/push` refuses every message.
    #[serde(default)]
    pub google_push_audience: Option<String>,
    /// Google push: the service account the push subscription signs its tokens as.
    #[serde(default)]
    pub google_push_service_account: Option<String>,
    /// Google's OpenID Connect signing keys (JWKS), which sign Pub/Sub push tokens.
    #[serde(default = "default_google_push_certs_url")]
    pub google_push_certs_url: Url,
    /// Cloud Pub/Sub topic Classroom publishes roster changes to (`projects/P/topics/T`);
    /// unset, no registrations are made and courses are re-synced periodically instead.
    #[serde(default)]
    pub google_pubsub_topic: Option<String>,
    /// Re-sync each linked Google course that no live push registration covers this often,
    /// seconds (0: never).
    #[serde(default = "default_google_resync_interval")]
    pub google_resync_interval_secs: u64,
    /// Moodle plugin requests signed further than this from our clock are refused, seconds.
    #[serde(default = "default_moodle_timestamp_window")]
    pub moodle_timestamp_window_secs: i64,
    /// How often each paired Moodle site with a web service token is reconciled, seconds
    /// (0: only by `lmsbridge moodle reconcile`).
    #[serde(default = "default_moodle_reconcile_interval")]
    pub moodle_reconcile_interval_secs: i64,
}

fn default_moodle_timestamp_window() -> i64 {
    300
}

fn default_moodle_reconcile_interval() -> i64 {
    3600
}

fn default_platform_rate() -> f64 {
    50.0
}

fn default_platform_concurrency() -> usize {
    16
}

fn default_rate_budget_low_water() -> f64 {
    // Canvas's bucket holds 700 when idle and charges 50 up front for each request in flight.
    300.0
}

fn default_passback_lease_secs() -> u64 {
    60
}

fn default_passback_max_attempts() -> i64 {
    25
}

fn default_passback_give_up_hours() -> u64 {
    72
}

fn default_google_push_certs_url() -> Url {
    Url::parse("https://www.googleapis.com/oauth2/v3/certs").expect("static URL parses")
}

fn default_google_resync_interval() -> u64 {
    6 * 3600
}

fn default_google_authorization_url() -> Url {
    Url::parse("https://accounts.google.com/o/oauth2/v2/auth").expect("static URL parses")
}

fn default_google_token_url() -> Url {
    Url::parse("https://oauth2.googleapis.com/token").expect("static URL parses")
}

fn default_google_revocation_url() -> Url {
    Url::parse("https://oauth2.googleapis.com/revoke").expect("static URL parses")
}

fn default_google_userinfo_url() -> Url {
    Url::parse("https://openidconnect.googleapis.com/v1/userinfo").expect("static URL parses")
}

fn default_google_classroom_api_url() -> Url {
    Url::parse("https://classroom.googleapis.com/").expect("static URL parses")
}

fn default_tool_name() -> String {
    "lmsbridge".to_owned()
}

impl Settings {
    /// Defaults for a listen address; the public URL and database follow from it.
    pub fn defaults_for(listen: SocketAddr, data_dir: PathBuf) -> Self {
        let public_url = Url::parse(&format!("http://{listen}/"))
            .unwrap_or_else(|_| Url::parse("http://127.0.0.1:8080/").expect("static URL parses"));
        Self {
            listen,
            public_url,
            database_url: sqlite_url(&data_dir),
            data_dir,
            master_key: None,
            log_format: LogFormat::Text,
            clock_skew_secs: 60,
            login_state_ttl_secs: 600,
            handoff_ttl_secs: 60,
            run_worker: true,
            key_publish_lead_secs: 3600,
            key_grace_secs: 24 * 3600,
            key_rotation_days: 90,
            tool_name: default_tool_name(),
            platform_rate_per_sec: default_platform_rate(),
            platform_max_concurrency: default_platform_concurrency(),
            platform_rate_budget_low_water: default_rate_budget_low_water(),
            passback_lease_secs: default_passback_lease_secs(),
            passback_max_attempts: default_passback_max_attempts(),
            passback_give_up_hours: default_passback_give_up_hours(),
            google_authorization_url: default_google_authorization_url(),
            google_token_url: default_google_token_url(),
            google_revocation_url: default_google_revocation_url(),
            google_userinfo_url: default_google_userinfo_url(),
            google_classroom_api_url: default_google_classroom_api_url(),
            metrics_token: None,
            google_push_audience: None,
            google_push_service_account: None,
            google_push_certs_url: default_google_push_certs_url(),
            google_pubsub_topic: None,
            google_resync_interval_secs: default_google_resync_interval(),
            moodle_timestamp_window_secs: default_moodle_timestamp_window(),
            moodle_reconcile_interval_secs: default_moodle_reconcile_interval(),
        }
    }

    /// A URL under the public base (`path` without a leading slash).
    pub fn public(&self, path: &str) -> Url {
        let mut base = self.public_url.clone();
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        base.join(path).unwrap_or(base)
    }

    /// The settings as `config print` shows them: secrets masked.
    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(obj) = v.as_object_mut() {
            if self.master_key.is_some() {
                obj.insert("master_key".into(), "[redacted]".into());
            }
            if self.metrics_token.is_some() {
                obj.insert("metrics_token".into(), "[redacted]".into());
            }
            obj.insert(
                "database_url".into(),
                mask_url_password(&self.database_url).into(),
            );
        }
        v
    }
}

/// The default database: a SQLite file in the data directory.
pub fn sqlite_url(data_dir: &std::path::Path) -> String {
    format!("sqlite://{}", data_dir.join("lmsbridge.db").display())
}

/// Replaces a password in a database URL with `***`.
pub fn mask_url_password(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        let mut s = Settings::defaults_for("127.0.0.1:8080".parse().unwrap(), "/tmp/x".into());
        s.master_key = Some("c2VjcmV0".into());
        s.database_url = "postgres://app:hunter2@db/lmsbridge".into();
        let shown = s.redacted().to_string();
        assert!(!shown.contains("hunter2"));
        assert!(!shown.contains("c2VjcmV0"));
        assert!(shown.contains("[redacted]"));
        assert_eq!(
            s.public("lti/launch").as_str(),
            "http://127.0.0.1:8080/lti/launch"
        );
        s.public_url = Url::parse("https://tools.example/bridge").unwrap();
        assert_eq!(
            s.public("lti/launch").as_str(),
            "https://tools.example/bridge/lti/launch"
        );
    }
}
