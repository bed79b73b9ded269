//! Shared pieces of the Classroom integration tests: a simulated Classroom on loopback, our
//! OAuth and API clients pointed at it, the consent flow a teacher's browser goes through,
//! and the check every test ends with: each request the fake recorded is one the discovery
//! document defines, judged again by the fake's own validator.

#![allow(dead_code)] // Each test binary uses its own share of these helpers.

use classroom::oauth::{AuthorizationRequest, OAuthConfig, TokenGrant};
use classroom::{
    ClassroomClient, ClientId, ClientSecret, Credentials, GoogleEndpoints, OAuthClient,
};
use std::time::Duration;
use testkit::classroom::{OAuthClientRegistration, RecordedRequest};
use testkit::{SimulatedClassroom, SpawnedClassroom};
use url::Url;

pub struct Harness {
    pub fake: SimulatedClassroom,
    pub oauth: OAuthClient,
    pub api: ClassroomClient,
    /// A browser that does not follow redirects, so the consent redirect can be read.
    browser: reqwest::Client,
    _server: SpawnedClassroom,
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub fn endpoints(fake: &SimulatedClassroom) -> GoogleEndpoints {
    let u = fake.urls();
    GoogleEndpoints {
        authorization: u.authorization,
        token: u.token,
        revocation: u.revocation,
        userinfo: u.userinfo,
        api_base: u.api_base,
    }
}

impl Harness {
    pub async fn start() -> Self {
        let (fake, server) = SimulatedClassroom::spawn().await.unwrap();
        let oauth = Self::oauth_client(&fake, &fake.client());
        let api = ClassroomClient::new(http(), oauth.clone());
        Self {
            fake,
            oauth,
            api,
            browser: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            _server: server,
        }
    }

    /// An OAuth client configured as `registration`, pointed at the fake.
    pub fn oauth_client(
        fake: &SimulatedClassroom,
        registration: &OAuthClientRegistration,
    ) -> OAuthClient {
        OAuthClient::new(
            http(),
            OAuthConfig {
                client_id: ClientId::new(registration.client_id.clone()),
                client_secret: ClientSecret::new(registration.client_secret.clone()),
                redirect_uri: registration.redirect_uris[0].clone(),
                endpoints: endpoints(fake),
            },
        )
    }

    /// Opens an authorization URL as the browser would and returns where Google sent it.
    pub async fn consent_redirect(&self, url: &Url) -> Url {
        let resp = self.browser.get(url.clone()).send().await.unwrap();
        assert_eq!(resp.status(), 302, "the consent page redirects back");
        let location = resp.headers()[reqwest::header::LOCATION].to_str().unwrap();
        Url::parse(location).unwrap()
    }

    /// The whole consent flow for `login_hint` with `oauth`, asking for a refresh token.
    pub async fn connect_with(
        &self,
        oauth: &OAuthClient,
        login_hint: &str,
        scopes: &[&str],
    ) -> TokenGrant {
        let pending = oauth.authorization_url(
            &AuthorizationRequest::new(scopes)
                .login_hint(login_hint)
                .require_refresh_token(),
        );
        let back = self.consent_redirect(&pending.url).await;
        let callback = OAuthClient::parse_callback(&back, &pending.state).unwrap();
        oauth
            .exchange_code(&callback.code, &pending.verifier)
            .await
            .unwrap()
    }

    pub async fn connect(&self, login_hint: &str, scopes: &[&str]) -> TokenGrant {
        self.connect_with(&self.oauth, login_hint, scopes).await
    }

    /// Offline credentials of `login_hint` for `scopes`.
    pub async fn offline(&self, login_hint: &str, scopes: &[&str]) -> Credentials {
        let grant = self.connect(login_hint, scopes).await;
        Credentials::Offline(grant.refresh_token.expect("a refresh token was asked for"))
    }

    /// The teacher (Ada) with the given scopes.
    pub async fn teacher(&self, scopes: &[&str]) -> Credentials {
        self.offline(&self.fake.teacher().email, scopes).await
    }

    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.fake.requests()
    }

    /// Ends a test: every API request the fake recorded must be one the discovery document
    /// defines. The fake's validator runs again on the recorded request, independently of
    /// the answer the fake gave.
    pub fn finish(self) {
        assert_all_valid(&self.fake, &self.recorded());
    }
}

pub fn assert_all_valid(fake: &SimulatedClassroom, requests: &[RecordedRequest]) {
    let discovery = fake.discovery();
    for r in requests {
        assert!(
            r.invalid.is_none(),
            "the fake refused {} {}: {:?}",
            r.method,
            r.path,
            r.invalid
        );
        let checked = discovery.validate(
            &r.method,
            &r.path,
            &r.query,
            r.body.as_deref().unwrap_or_default().as_bytes(),
        );
        assert!(
            checked.is_ok(),
            "{} {} is not in the discovery document: {:?}",
            r.method,
            r.path,
            checked.err()
        );
        assert!(r.method_id.is_some());
    }
}

/// Requests of one discovery method.
pub fn of_method<'a>(requests: &'a [RecordedRequest], id: &str) -> Vec<&'a RecordedRequest> {
    requests
        .iter()
        .filter(|r| r.method_id.as_deref() == Some(id))
        .collect()
}

pub fn query_value<'a>(r: &'a RecordedRequest, name: &str) -> Option<&'a str> {
    r.query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
