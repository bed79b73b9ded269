//! The LTI Advantage adapter: scores, line items and results through AGS, rosters through
//! NRPS.

use async_trait::async_trait;
use domain::{
    DeliveryError, DeliveryReceipt, EnrollmentStatus, GradebookAdapter, LineItemChanges,
    LineItemFields, LineItemsRequest, LmsAdapter, PlatformEndpoints, PlatformKind,
    PlatformLineItem, PlatformResult, ResultsPage, ResultsRequest, Role, RosterMember, RosterPage,
    RosterRequest, ScoreDelivery, TargetLocation,
};
use lti::ToolKey;
use lti::ags::{AgsClient, AgsError, LineItemUrl, ServiceAuth};
use lti::http_error::{ServiceError, ServiceErrorKind};
use lti::roles::{LtiRole, normalise};
use lti::token::{AccessToken, TokenClient, TokenEndpoint};
use std::future::Future;
use std::sync::Arc;
use url::Url;

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
    /// Shares `tokens`: one cache of access tokens for every service.
    ags: AgsClient,
    keys: Arc<dyn SigningKeySource>,
}

impl LtiAdapter {
    pub fn new(http: reqwest::Client, keys: Arc<dyn SigningKeySource>) -> Self {
        let tokens = TokenClient::new(http.clone());
        Self {
            ags: AgsClient::new(http.clone(), tokens.clone()),
            tokens,
            http,
            keys,
        }
    }

    /// The token endpoint and current signing key for AGS calls to `platform`.
    fn ags_auth(&self, platform: &PlatformEndpoints) -> Result<ServiceAuth, DeliveryError> {
        let key = self
            .keys
            .signing_key()
            .ok_or_else(|| DeliveryError::Misconfigured {
                detail: "no tool signing key is available".into(),
            })?;
        Ok(ServiceAuth {
            endpoint: token_endpoint(platform),
            key,
        })
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
        let endpoint = token_endpoint(platform);
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

fn token_endpoint(platform: &PlatformEndpoints) -> TokenEndpoint {
    TokenEndpoint {
        issuer: platform.issuer.clone(),
        client_id: platform.client_id.clone(),
        token_url: platform.token_url.clone(),
        audience: platform.token_audience.clone(),
    }
}

/// Maps an AGS failure into the retry policy's terms.
fn ags_error(e: AgsError) -> DeliveryError {
    let detail = e.to_string();
    match e {
        AgsError::RateLimited(s) => DeliveryError::RateLimited {
            retry_after: s.retry_after,
            detail,
        },
        AgsError::Unavailable(s) | AgsError::Transport(s) => DeliveryError::Transient {
            status: s.status,
            retry_after: s.retry_after,
            detail,
        },
        // A platform that refuses a token it just issued has not enabled the service for
        // this tool (Moodle's tool settings): an admin must act.
        AgsError::Unauthorized(_) => DeliveryError::Misconfigured { detail },
        AgsError::Token(s) => token_error(s),
        AgsError::BadRequest(s)
        | AgsError::Forbidden(s)
        | AgsError::NotFound(s)
        | AgsError::Conflict(s)
        | AgsError::Unprocessable(s)
        | AgsError::Refused(s) => match s.status {
            Some(status) => DeliveryError::Rejected { status, detail },
            None => DeliveryError::Misconfigured { detail },
        },
        // A success answer we cannot read may read fine next time; the platform is at fault.
        AgsError::InvalidResponse(_) => DeliveryError::Transient {
            status: None,
            retry_after: None,
            detail,
        },
        _ => DeliveryError::Misconfigured { detail },
    }
}

fn fields_of(item: &lti::ags::LineItem) -> LineItemFields {
    LineItemFields {
        label: item.label.clone(),
        score_maximum: item.score_maximum,
        resource_id: item.resource_id.clone(),
        resource_link_id: item.resource_link_id.clone(),
        tag: item.tag.clone(),
        start_date_time: item.start_date_time,
        end_date_time: item.end_date_time,
        grades_released: item.grades_released,
    }
}

/// Sets the modelled fields of a wire line item, leaving its extensions alone.
fn set_fields(item: &mut lti::ags::LineItem, fields: &LineItemFields) {
    item.label.clone_from(&fields.label);
    item.score_maximum = fields.score_maximum;
    item.resource_id.clone_from(&fields.resource_id);
    item.resource_link_id.clone_from(&fields.resource_link_id);
    item.tag.clone_from(&fields.tag);
    item.start_date_time = fields.start_date_time;
    item.end_date_time = fields.end_date_time;
    item.grades_released = fields.grades_released;
}

fn platform_line_item(item: lti::ags::PlatformLineItem) -> PlatformLineItem {
    PlatformLineItem {
        fields: fields_of(&item.item),
        location: item.id.into_url(),
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
        let post = lti::ags::ScorePost {
            canvas_submission: (score.platform.kind == PlatformKind::Canvas)
                .then(|| lti::ags::CanvasSubmission::for_score(&wire)),
            score: wire,
        };
        let answer = self
            .ags
            .send_score(
                &self.ags_auth(&score.platform)?,
                &LineItemUrl::new(line_item.clone()),
                &post,
            )
            .await
            .map_err(ags_error)?;
        Ok(DeliveryReceipt {
            rate_limit_remaining: answer.rate_limit_remaining,
            ..DeliveryReceipt::new(answer.status, "")
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

#[async_trait]
impl GradebookAdapter for LtiAdapter {
    async fn list_line_items(
        &self,
        request: &LineItemsRequest,
    ) -> Result<Vec<PlatformLineItem>, DeliveryError> {
        let query = lti::ags::LineItemQuery {
            resource_link_id: request.resource_link_id.clone(),
            resource_id: request.resource_id.clone(),
            tag: request.tag.clone(),
            limit: None,
        };
        let items = self
            .ags
            .list_line_items(
                &self.ags_auth(&request.platform)?,
                &request.container,
                &query,
            )
            .await
            .map_err(ags_error)?;
        Ok(items.into_iter().map(platform_line_item).collect())
    }

    async fn get_line_item(
        &self,
        platform: &PlatformEndpoints,
        location: &Url,
    ) -> Result<PlatformLineItem, DeliveryError> {
        self.ags
            .get_line_item(
                &self.ags_auth(platform)?,
                &LineItemUrl::new(location.clone()),
            )
            .await
            .map(platform_line_item)
            .map_err(ags_error)
    }

    async fn create_line_item(
        &self,
        platform: &PlatformEndpoints,
        container: &Url,
        fields: &LineItemFields,
    ) -> Result<PlatformLineItem, DeliveryError> {
        let mut item = lti::ags::LineItem::new(fields.label.clone(), fields.score_maximum);
        set_fields(&mut item, fields);
        self.ags
            .create_line_item(&self.ags_auth(platform)?, container, &item)
            .await
            .map(platform_line_item)
            .map_err(ags_error)
    }

    async fn update_line_item(
        &self,
        platform: &PlatformEndpoints,
        location: &Url,
        changes: &LineItemChanges,
    ) -> Result<PlatformLineItem, DeliveryError> {
        let auth = self.ags_auth(platform)?;
        // AGS updates replace the whole item: read what the platform holds (its extensions
        // too), change only what was asked, send it all back.
        let mut current = self
            .ags
            .get_line_item(&auth, &LineItemUrl::new(location.clone()))
            .await
            .map_err(ags_error)?;
        if changes.is_empty() {
            return Ok(platform_line_item(current));
        }
        let fields = changes.apply(&fields_of(&current.item));
        set_fields(&mut current.item, &fields);
        self.ags
            .update_line_item(&auth, &current)
            .await
            .map(platform_line_item)
            .map_err(ags_error)
    }

    async fn delete_line_item(
        &self,
        platform: &PlatformEndpoints,
        location: &Url,
    ) -> Result<(), DeliveryError> {
        self.ags
            .delete_line_item(
                &self.ags_auth(platform)?,
                &LineItemUrl::new(location.clone()),
            )
            .await
            .map_err(ags_error)
    }

    async fn results_page(&self, request: &ResultsRequest) -> Result<ResultsPage, DeliveryError> {
        let auth = self.ags_auth(&request.platform)?;
        let page = match &request.page {
            // The access token may only go where the line item lives.
            Some(page) if page.origin() != request.line_item.origin() => {
                return Err(DeliveryError::Misconfigured {
                    detail: "a results page on another host than its line item was asked for"
                        .into(),
                });
            }
            Some(page) => self.ags.results_page(&auth, page).await,
            None => {
                let query = lti::ags::ResultsQuery {
                    user_id: request.platform_user_id.clone(),
                    limit: request.limit,
                };
                self.ags
                    .results(&auth, &LineItemUrl::new(request.line_item.clone()), &query)
                    .await
            }
        }
        .map_err(ags_error)?;
        Ok(ResultsPage {
            results: page
                .results
                .into_iter()
                .map(|r| PlatformResult {
                    platform_user_id: r.user_id,
                    result_score: r.result_score,
                    result_maximum: r.result_maximum,
                    comment: r.comment,
                })
                .collect(),
            next: page.next,
        })
    }
}
