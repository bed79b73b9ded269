//! The LTI Advantage adapter: scores through AGS, rosters through NRPS.

use async_trait::async_trait;
use domain::{
    DeliveryError, DeliveryReceipt, EnrollmentStatus, LmsAdapter, PlatformEndpoints, Role,
    RosterMember, RosterPage, RosterRequest, ScoreDelivery, TargetLocation,
};
use lti::ToolKey;
use lti::http_error::{ServiceError, ServiceErrorKind};
use lti::roles::{LtiRole, normalise};
use lti::token::{AccessToken, TokenClient, TokenEndpoint};
use std::future::Future;
use std::sync::Arc;

/// Where the adapter gets the key it signs client assertions with. The server's keyring
/// implements it; the current key changes when keys rotate.
pub trait SigningKeySource: Send + Sync + std::fmt::Debug {
    fn signing_key(&self) -> Option<ToolKey>;
}

/// Sends to LTI 1.3 platforms.
#[derive(Debug, Clone)]
pub struct LtiAdapter {
    http: reqwest::Client,
    tokens: TokenClient,
    keys: Arc<dyn SigningKeySource>,
}

impl LtiAdapter {
    pub fn new(http: reqwest::Client, keys: Arc<dyn SigningKeySource>) -> Self {
        Self {
            tokens: TokenClient::new(http.clone()),
            http,
            keys,
        }
    }

    /// The shared token cache (for metrics and tests).
    pub fn tokens(&self) -> &TokenClient {
        &self.tokens
    }

    /// Runs a service call with a cached token; on a 401 the token is dropped and the call
    /// made once more with a fresh one.
    async fn with_token<T, F, Fut>(
        &self,
        platform: &PlatformEndpoints,
        scopes: &[&str],
        call: F,
    ) -> Result<T, DeliveryError>
    where
        F: Fn(AccessToken) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        let key = self
            .keys
            .signing_key()
            .ok_or_else(|| DeliveryError::Misconfigured {
                detail: "no tool signing key is available".into(),
            })?;
        let endpoint = TokenEndpoint {
            issuer: platform.issuer.clone(),
            client_id: platform.client_id.clone(),
            token_url: platform.token_url.clone(),
            audience: platform.token_audience.clone(),
        };
        let token = self
            .tokens
            .token(&endpoint, scopes, &key)
            .await
            .map_err(token_error)?;
        match call(token.clone()).await {
            Err(e) if e.kind == ServiceErrorKind::Unauthorized => {
                self.tokens.invalidate(&endpoint, scopes, &token);
                let fresh = self
                    .tokens
                    .token(&endpoint, scopes, &key)
                    .await
                    .map_err(token_error)?;
                call(fresh).await.map_err(|e| match e.kind {
                    ServiceErrorKind::Unauthorized => DeliveryError::Misconfigured {
                        detail: format!("the platform refused a fresh access token ({e})"),
                    },
                    _ => service_error(e),
                })
            }
            other => other.map_err(service_error),
        }
    }
}

fn token_error(e: ServiceError) -> DeliveryError {
    match e.kind {
        ServiceErrorKind::RateLimited | ServiceErrorKind::Transient => service_error(e),
        _ => DeliveryError::Misconfigured {
            detail: format!("token request refused: {e}"),
        },
    }
}

/// Maps a classified platform answer into the retry policy's terms.
fn service_error(e: ServiceError) -> DeliveryError {
    let detail = e.to_string();
    match e.kind {
        ServiceErrorKind::RateLimited => DeliveryError::RateLimited {
            retry_after: e.retry_after,
            detail,
        },
        ServiceErrorKind::Transient | ServiceErrorKind::Unauthorized => DeliveryError::Transient {
            status: e.status,
            retry_after: e.retry_after,
            detail,
        },
        ServiceErrorKind::InvalidScope => DeliveryError::Misconfigured { detail },
        ServiceErrorKind::Rejected => match e.status {
            Some(status) => DeliveryError::Rejected { status, detail },
            None => DeliveryError::Misconfigured { detail },
        },
    }
}

fn role(r: &str) -> Role {
    match normalise(r) {
        LtiRole::Learner => Role::Learner,
        LtiRole::Instructor => Role::Instructor,
        LtiRole::TeachingAssistant => Role::TeachingAssistant,
        LtiRole::ContentDeveloper => Role::ContentDeveloper,
        LtiRole::Mentor => Role::Mentor,
        LtiRole::Administrator => Role::Administrator,
        LtiRole::Other(s) => Role::Other(s),
    }
}

/// Normalises a list of LTI role URIs, dropping duplicates.
pub fn roles(uris: &[String]) -> Vec<Role> {
    let mut out: Vec<Role> = Vec::new();
    for r in uris.iter().map(|u| role(u)) {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

#[async_trait]
impl LmsAdapter for LtiAdapter {
    async fn send_score(&self, score: &ScoreDelivery) -> Result<DeliveryReceipt, DeliveryError> {
        let TargetLocation::LtiLineItem(line_item) = &score.target else {
            return Err(DeliveryError::Misconfigured {
                detail: "an LTI platform was given a non-LTI grade target".into(),
            });
        };
        let wire = lti::ags::Score {
            user_id: score.platform_user_id.clone(),
            score_given: score.score_given,
            score_maximum: score.score_maximum,
            comment: score.comment.clone(),
            timestamp: lti::ags::format_timestamp(score.timestamp_micros),
            activity_progress: score.activity_progress.as_str().to_owned(),
            grading_progress: score.grading_progress.as_str().to_owned(),
        };
        let status = self
            .with_token(&score.platform, &[lti::ags::SCOPE_SCORE], |token| {
                let http = self.http.clone();
                let wire = wire.clone();
                let url = line_item.clone();
                async move { lti::ags::post_score(&http, &token, &url, &wire).await }
            })
            .await?;
        Ok(DeliveryReceipt {
            status,
            detail: String::new(),
        })
    }

    async fn roster_page(&self, request: &RosterRequest) -> Result<RosterPage, DeliveryError> {
        let url = request
            .page
            .clone()
            .unwrap_or_else(|| request.roster_url.clone());
        let page = self
            .with_token(
                &request.platform,
                &[lti::nrps::SCOPE_MEMBERSHIP_READONLY],
                |token| {
                    let http = self.http.clone();
                    let url = url.clone();
                    async move { lti::nrps::fetch_page(&http, &token, &url).await }
                },
            )
            .await?;
        Ok(RosterPage {
            members: page
                .members
                .into_iter()
                .map(|m| RosterMember {
                    status: match m.status {
                        lti::nrps::MemberStatus::Active => EnrollmentStatus::Active,
                        lti::nrps::MemberStatus::Inactive => EnrollmentStatus::Inactive,
                        lti::nrps::MemberStatus::Deleted => EnrollmentStatus::Deleted,
                    },
                    roles: roles(&m.roles),
                    platform_user_id: m.user_id,
                    name: m.name,
                    given_name: m.given_name,
                    family_name: m.family_name,
                    email: m.email,
                })
                .collect(),
            next: page.next,
        })
    }
}
