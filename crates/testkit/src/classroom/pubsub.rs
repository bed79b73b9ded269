//! Google's side of Classroom push notifications: the OpenID Connect keys Google publishes
//! (`/oauth2/v3/certs`), the ID tokens Cloud Pub/Sub signs its push requests with (as the
//! subscription's service account, for the subscription's audience), and the push body
//! carrying a Classroom notification. Plus roster changes in the simulated Classroom, so a
//! test can change a course and then deliver the push that announces it.

use super::SimulatedClassroom;
use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine;
use lti::keys::ToolKey;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;
use url::Url;

/// The claims of a Pub/Sub push token (Google ID token for a service account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushTokenClaims {
    pub iss: String,
    pub aud: String,
    pub email: String,
    pub email_verified: bool,
    pub sub: String,
    pub azp: String,
    pub iat: i64,
    pub exp: i64,
}

impl PushTokenClaims {
    /// What Pub/Sub sends: issued now by Google, for an hour.
    pub fn valid(audience: &str, service_account: &str) -> Self {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Self {
            iss: "https://accounts.google.com".into(),
            aud: audience.into(),
            email: service_account.into(),
            email_verified: true,
            sub: "104857600000000000001".into(),
            azp: "104857600000000000001".into(),
            iat: now,
            exp: now + 3600,
        }
    }
}

/// Google's signing keys and a signer for push tokens. Cheap to clone.
#[derive(Clone)]
pub struct GooglePushSigner {
    key: Arc<ToolKey>,
    certs_url: Url,
}

impl std::fmt::Debug for GooglePushSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GooglePushSigner")
            .field("certs_url", &self.certs_url.as_str())
            .finish_non_exhaustive()
    }
}

/// The key server's task; dropping it stops the server.
#[derive(Debug)]
pub struct SpawnedCerts {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SpawnedCerts {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SpawnedCerts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GooglePushSigner {
    /// Serves Google's JWKS on a free loopback port.
    ///
    /// # Panics
    /// When no RSA key can be generated.
    pub async fn spawn() -> std::io::Result<(Self, SpawnedCerts)> {
        let key = Arc::new(ToolKey::generate("google-push-key-1").expect("RSA key generation"));
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let certs_url =
            Url::parse(&format!("http://{addr}/oauth2/v3/certs")).map_err(std::io::Error::other)?;
        let published = key.public_jwk().clone();
        let router = Router::new().route(
            "/oauth2/v3/certs",
            get(move || {
                let set = serde_json::json!({ "keys": [published.clone()] });
                async move {
                    (
                        [(http::header::CACHE_CONTROL, "public, max-age=300")],
                        axum::Json(set),
                    )
                        .into_response()
                }
            }),
        );
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!(error = %e, "simulated Google certs stopped");
            }
        });
        Ok((Self { key, certs_url }, SpawnedCerts { addr, task }))
    }

    pub fn certs_url(&self) -> &Url {
        &self.certs_url
    }

    /// A push token with these claims, signed with Google's published key.
    ///
    /// # Panics
    /// When signing fails, which an RSA key in memory does not.
    pub fn token(&self, claims: &PushTokenClaims) -> String {
        self.key.sign(claims).expect("signing a push token")
    }

    /// A token signed by a key Google does not publish, under the published key's id: what
    /// a forger holding only the key id can make.
    ///
    /// # Panics
    /// When no RSA key can be generated.
    pub fn forged_token(claims: &PushTokenClaims) -> String {
        let other = ToolKey::generate("google-push-key-1").expect("RSA key generation");
        other.sign(claims).expect("signing a push token")
    }

    /// A Pub/Sub push body carrying a Classroom roster notification.
    pub fn push_body(message_id: &str, course_id: &str, event_type: &str) -> serde_json::Value {
        let data = serde_json::json!({
            "collection": "courses.students",
            "eventType": event_type,
            "resourceId": {"courseId": course_id, "userId": "200000000001"},
        });
        serde_json::json!({
            "message": {
                "data": base64::engine::general_purpose::STANDARD.encode(data.to_string()),
                "messageId": message_id,
                "message_id": message_id,
                "publishTime": "2026-11-28T00:00:00Z",
                "attributes": {},
            },
            "subscription": "projects/school-project/subscriptions/lmsbridge-push",
        })
    }
}

impl SimulatedClassroom {
    /// Adds a student to a course (as joining in Classroom does). False when the course or
    /// user is unknown or the student is already there.
    pub fn enrol_student(&self, course_id: &str, user_id: &str) -> bool {
        if self.user(user_id).is_none() {
            return false;
        }
        let mut state = self.state();
        match state.courses.get_mut(course_id) {
            Some(c) if !c.students.iter().any(|s| s == user_id) => {
                c.students.push(user_id.to_owned());
                true
            }
            _ => false,
        }
    }

    /// Lets our OAuth client redirect to one more URI (as adding it in the Cloud console).
    pub fn allow_redirect_uri(&self, uri: Url) {
        let client_id = self.inner.config.client.client_id.clone();
        let mut state = self.state();
        if let Some(c) = state.clients.iter_mut().find(|c| c.client_id == client_id)
            && !c.redirect_uris.contains(&uri)
        {
            c.redirect_uris.push(uri);
        }
    }

    /// Removes a student from a course. False when they were not in it.
    pub fn remove_student(&self, course_id: &str, user_id: &str) -> bool {
        let mut state = self.state();
        match state.courses.get_mut(course_id) {
            Some(c) => {
                let before = c.students.len();
                c.students.retain(|s| s != user_id);
                c.students.len() != before
            }
            None => false,
        }
    }
}
