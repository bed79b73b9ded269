//! Google Classroom wiring: each tenant's OAuth client built from the store (secret opened
//! with the master key), one access-token cache per client shared by every call (refresh
//! before expiry and on 401, a revoked refresh token remembered), the grants the
//! [`ClassroomAdapter`] sends with, and the signed connect links that start the OAuth flow.
//!
//! The add-ons and push code get an authorised client for a stored grant with
//! [`Google::grant_client`].

use adapters::{ClassroomAdapter, ClassroomGrants, CourseGrant, CourseWorkGrant, GradeField};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use classroom::{
    ClassroomClient, ClientId, ClientSecret, Credentials, GoogleEndpoints, OAuthClient,
    OAuthConfig, RefreshToken, TokenCache,
};
use domain::{Actor, DeliveryError, PlatformEndpoints, PlatformId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use store::crypto::MasterKey;
use store::google::{GOOGLE_ISSUER, GoogleGrantId, GradeMode, GrantStatus};
use store::{Store, StoreError, TenantScope, TenantStore, now_micros};
use url::Url;

/// What a connect link lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Read courses and rosters (with email addresses).
    Roster,
    /// Create assignments and pass grades back to them.
    Coursework,
}

impl Feature {
    /// The scopes a feature needs, fewest first ([`classroom::scopes`]).
    pub fn scopes(self) -> &'static [&'static str] {
        match self {
            Self::Roster => classroom::scopes::ROSTER,
            Self::Coursework => classroom::scopes::COURSEWORK,
        }
    }
}

/// The scopes to ask for: sign-in, then each feature's, without repeats.
pub fn scopes_for(features: &[Feature]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = classroom::scopes::SIGN_IN.to_vec();
    for f in features {
        for s in f.scopes() {
            if !out.contains(s) {
                out.push(s);
            }
        }
    }
    out
}

/// A connect link's sealed content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectLink {
    pub tenant: domain::TenantId,
    pub platform: PlatformId,
    pub features: Vec<Feature>,
    #[serde(default)]
    pub login_hint: Option<String>,
    /// Microseconds since the epoch.
    pub expires_at: i64,
}

const LINK_CONTEXT: &str = "google_connect_link";

/// How long a connect link works.
pub const LINK_TTL_SECS: i64 = 15 * 60;

impl ConnectLink {
    /// The link's opaque token: the content sealed with the master key, so only lmsbridge
    /// can make or read one, and any instance can.
    pub fn seal(&self, master: &MasterKey) -> Result<String, StoreError> {
        let json = serde_json::to_vec(self).map_err(|_| StoreError::Crypto("link encoding"))?;
        Ok(URL_SAFE_NO_PAD.encode(master.seal(&json, LINK_CONTEXT)?))
    }

    /// Opens a link token; `None` for anything forged, tampered with or expired.
    pub fn open(token: &str, master: &MasterKey) -> Option<Self> {
        let sealed = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
        let json = master.open(&sealed, LINK_CONTEXT).ok()?;
        let link: Self = serde_json::from_slice(&json).ok()?;
        (link.expires_at > now_micros()).then_some(link)
    }
}

/// The Google Classroom connector. Cheap to clone.
#[derive(Clone)]
pub struct Google(Arc<Inner>);

struct Inner {
    store: Store,
    master: MasterKey,
    http: reqwest::Client,
    endpoints: GoogleEndpoints,
    redirect_uri: Url,
    start_url: Url,
    /// Per platform: the client as last built, keyed by its settings' `updated_at` so a new
    /// secret builds a new one (and drops the old tokens).
    clients: Mutex<HashMap<PlatformId, (i64, String, ClassroomClient)>>,
}

impl std::fmt::Debug for Google {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Google")
            .field("endpoints", &self.0.endpoints)
            .finish_non_exhaustive()
    }
}

/// Why no client could be made for a platform.
#[derive(Debug, thiserror::Error)]
pub enum GoogleSetupError {
    #[error("Google Classroom is not configured for this tenant (lmsbridge google configure)")]
    NotConfigured,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Google {
    pub fn new(
        store: Store,
        master: MasterKey,
        http: reqwest::Client,
        settings: &crate::Settings,
    ) -> Self {
        Self(Arc::new(Inner {
            store,
            master,
            http,
            endpoints: GoogleEndpoints {
                authorization: settings.google_authorization_url.clone(),
                token: settings.google_token_url.clone(),
                revocation: settings.google_revocation_url.clone(),
                userinfo: settings.google_userinfo_url.clone(),
                api_base: settings.google_classroom_api_url.clone(),
            },
            redirect_uri: settings.public("google/oauth/callback"),
            start_url: settings.public("google/oauth/start"),
            clients: Mutex::default(),
        }))
    }

    pub fn endpoints(&self) -> &GoogleEndpoints {
        &self.0.endpoints
    }

    /// The redirect URI to register on the OAuth client in the Google Cloud console.
    pub fn redirect_uri(&self) -> &Url {
        &self.0.redirect_uri
    }

    /// A connect link a teacher opens to connect their Google account for `features`,
    /// valid for [`LINK_TTL_SECS`]. Returns the URL and its expiry (microseconds).
    pub fn connect_link(
        &self,
        scope: &TenantScope,
        platform: PlatformId,
        features: Vec<Feature>,
        login_hint: Option<String>,
    ) -> Result<(Url, i64), StoreError> {
        let expires_at = now_micros() + LINK_TTL_SECS * 1_000_000;
        let token = ConnectLink {
            tenant: scope.tenant_id(),
            platform,
            features,
            login_hint,
            expires_at,
        }
        .seal(&self.0.master)?;
        let mut url = self.0.start_url.clone();
        url.query_pairs_mut().append_pair("link", &token);
        Ok((url, expires_at))
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn master(&self) -> &MasterKey {
        &self.0.master
    }

    /// The Classroom client (with its OAuth client and token cache) for a tenant's platform.
    pub async fn client(
        &self,
        tenant: &TenantStore<'_>,
        platform: PlatformId,
    ) -> Result<ClassroomClient, GoogleSetupError> {
        let client = tenant
            .google_client(platform, &self.0.master)
            .await?
            .ok_or(GoogleSetupError::NotConfigured)?;
        let mut cache = self.0.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, id, c)) = cache.get(&platform)
            && *at == client.updated_at
            && *id == client.platform.client_id
        {
            return Ok(c.clone());
        }
        let oauth = OAuthClient::new(
            self.0.http.clone(),
            OAuthConfig {
                client_id: ClientId::new(client.platform.client_id.clone()),
                client_secret: ClientSecret::new(client.client_secret.secret()),
                redirect_uri: self.0.redirect_uri.clone(),
                endpoints: self.0.endpoints.clone(),
            },
        );
        let built = ClassroomClient::with_token_cache(self.0.http.clone(), TokenCache::new(oauth));
        cache.insert(
            platform,
            (
                client.updated_at,
                client.platform.client_id.clone(),
                built.clone(),
            ),
        );
        Ok(built)
    }

    /// An authorised client for a stored grant: its platform's client and the grant's
    /// offline credentials. `None` when the grant is unknown, revoked or has no token.
    pub async fn grant_client(
        &self,
        scope: &TenantScope,
        grant: GoogleGrantId,
    ) -> Result<Option<(ClassroomClient, Credentials)>, GoogleSetupError> {
        let tenant = self.0.store.tenant(scope);
        let Some(g) = tenant.google_grant(grant).await? else {
            return Ok(None);
        };
        if g.status != GrantStatus::Active {
            return Ok(None);
        }
        let Some(token) = tenant.google_refresh_token(grant, &self.0.master).await? else {
            return Ok(None);
        };
        let client = self.client(&tenant, g.platform_id).await?;
        Ok(Some((
            client,
            Credentials::Offline(RefreshToken::new(token.secret())),
        )))
    }

    /// The adapter the passback worker and roster syncs use for Google Classroom.
    pub fn adapter(&self) -> ClassroomAdapter {
        ClassroomAdapter::new(Arc::new(self.clone())).with_add_ons(Arc::new(self.clone()))
    }

    /// Finds the tenant of a Google platform the worker names by (issuer, client id).
    async fn platform_scope(
        &self,
        platform: &PlatformEndpoints,
    ) -> Result<(TenantScope, PlatformId), DeliveryError> {
        let found = self
            .0
            .store
            .find_platforms(GOOGLE_ISSUER, Some(&platform.client_id))
            .await
            .map_err(internal)?;
        match found.as_slice() {
            [one] if one.platform.kind == domain::PlatformKind::GoogleClassroom => {
                Ok((one.scope.clone(), one.platform.id))
            }
            _ => Err(DeliveryError::Misconfigured {
                detail: "no Google Classroom platform is configured with this OAuth client id"
                    .into(),
            }),
        }
    }

    async fn active_credentials(
        &self,
        scope: &TenantScope,
        grant: GoogleGrantId,
    ) -> Result<(ClassroomClient, Credentials), DeliveryError> {
        let tenant = self.0.store.tenant(scope);
        let g = tenant
            .google_grant(grant)
            .await
            .map_err(internal)?
            .ok_or_else(|| DeliveryError::Misconfigured {
                detail: "the Google grant behind this assignment no longer exists".into(),
            })?;
        if g.status == GrantStatus::Revoked {
            return Err(DeliveryError::Misconfigured {
                detail: format!(
                    "the Google Classroom connection of {} was revoked ({}); the teacher must connect Google Classroom again",
                    g.email.as_deref().unwrap_or("the teacher"),
                    g.status_reason.as_deref().unwrap_or("no reason given")
                ),
            });
        }
        match self.grant_client(scope, grant).await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(DeliveryError::Misconfigured {
                detail: "the teacher's Google grant holds no refresh token; they must connect Google Classroom again".into(),
            }),
            Err(GoogleSetupError::NotConfigured) => Err(DeliveryError::Misconfigured {
                detail: GoogleSetupError::NotConfigured.to_string(),
            }),
            Err(GoogleSetupError::Store(e)) => Err(internal(e)),
        }
    }
}

fn internal(e: StoreError) -> DeliveryError {
    tracing::error!(error = %e, "reading Google Classroom settings failed");
    DeliveryError::Transient {
        status: None,
        retry_after: None,
        detail: "lmsbridge could not read its Google Classroom settings".into(),
    }
}

#[async_trait]
impl ClassroomGrants for Google {
    async fn course_work_grant(
        &self,
        platform: &PlatformEndpoints,
        course_id: &str,
        course_work_id: &str,
    ) -> Result<CourseWorkGrant, DeliveryError> {
        let (scope, _) = self.platform_scope(platform).await?;
        let (_, work) = self
            .0
            .store
            .google_course_work_for_delivery(GOOGLE_ISSUER, &platform.client_id, course_id, course_work_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| DeliveryError::Misconfigured {
                detail: "this courseWork was not created through lmsbridge; only the Google Cloud project that created an assignment may grade it".into(),
            })?;
        let (client, credentials) = self.active_credentials(&scope, work.grant_id).await?;
        Ok(CourseWorkGrant {
            grant_id: work.grant_id.to_string(),
            client,
            credentials,
            grade: match work.grade_mode {
                GradeMode::Draft => GradeField::Draft,
                GradeMode::Assigned => GradeField::Assigned,
                GradeMode::DraftAndAssigned => GradeField::Both,
            },
            return_on_grade: work.return_on_grade,
            max_points: work.max_points,
        })
    }

    async fn course_grant(
        &self,
        platform: &PlatformEndpoints,
        course_id: &str,
    ) -> Result<CourseGrant, DeliveryError> {
        let (scope, platform_id) = self.platform_scope(platform).await?;
        let tenant = self.0.store.tenant(&scope);
        let course = tenant
            .google_courses(platform_id)
            .await
            .map_err(internal)?
            .into_iter()
            .find(|c| c.course_id == course_id)
            .ok_or_else(|| DeliveryError::Misconfigured {
                detail: "this Classroom course is not linked through lmsbridge".into(),
            })?;
        let (client, credentials) = self.active_credentials(&scope, course.grant_id).await?;
        Ok(CourseGrant {
            grant_id: course.grant_id.to_string(),
            client,
            credentials,
        })
    }

    async fn grant_revoked(&self, platform: &PlatformEndpoints, grant_id: &str, reason: &str) {
        let Ok((scope, _)) = self.platform_scope(platform).await else {
            return;
        };
        let Ok(id) = grant_id.parse::<GoogleGrantId>() else {
            return;
        };
        match self
            .0
            .store
            .tenant(&scope)
            .mark_google_grant_revoked(id, reason, &Actor::system("google"))
            .await
        {
            Ok(true) => {
                tracing::warn!(grant = %id, "Google refused a teacher's refresh token; the grant is marked revoked")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(grant = %id, error = %e, "could not mark a Google grant revoked")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_the_fewest_per_feature() {
        let roster = scopes_for(&[Feature::Roster]);
        assert!(roster.contains(&classroom::scopes::ROSTERS_READONLY));
        assert!(!roster.contains(&classroom::scopes::COURSEWORK_STUDENTS));
        let both = scopes_for(&[Feature::Roster, Feature::Coursework, Feature::Roster]);
        assert_eq!(both.len(), 3 + 3 + 1);
    }

    #[test]
    fn connect_links_are_sealed_and_expire() {
        let master = MasterKey::generate();
        let link = ConnectLink {
            tenant: domain::TenantId::generate(),
            platform: PlatformId::generate(),
            features: vec![Feature::Roster],
            login_hint: None,
            expires_at: now_micros() + 60_000_000,
        };
        let token = link.seal(&master).unwrap();
        let back = ConnectLink::open(&token, &master).unwrap();
        assert_eq!(back.tenant, link.tenant);
        assert!(ConnectLink::open(&token, &MasterKey::generate()).is_none());
        let mut bad = token.clone();
        bad.pop();
        assert!(ConnectLink::open(&bad, &master).is_none());
        let old = ConnectLink {
            expires_at: now_micros() - 1,
            ..link
        };
        assert!(ConnectLink::open(&old.seal(&master).unwrap(), &master).is_none());
    }
}
