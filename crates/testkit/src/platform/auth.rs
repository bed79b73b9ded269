//! Launching the tool: the link a person clicks, the OIDC authentication endpoint
//! (LTI Core §4.1, Security Framework §5.1.1.2) and the signed id_token it answers with
//! (LTI Core §5), plus the JWKS that verifies it (Security Framework §6.3).

use super::respond::{Params, Refusal, html};
use super::stats::RejectReason;
use super::{PendingLaunch, SimResource, SimUser, SimulatedLms, now, pages, random_secret};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};
use lti::claims::{
    AgsEndpointClaim, Audience, ContextClaim, LaunchPresentationClaim, NrpsClaim,
    ResourceLinkClaim, ToolPlatformClaim,
};
use lti::{LaunchClaims, ags, roles};
use std::collections::BTreeMap;
use time::Duration;

/// How long a launch started in the LMS may take to come back to `/auth`.
const MESSAGE_HINT_TTL: Duration = Duration::minutes(10);
/// id_token lifetime; the tool must post it on at once.
const ID_TOKEN_TTL: Duration = Duration::minutes(5);
const COURSE_OFFERING: &str = "http://purl.imsglobal.org/vocab/lis/v2/course#CourseOffering";

/// `GET /launch?user=&resource=`: starts a third-party initiated login at the tool.
pub(super) async fn launch(State(lms): State<SimulatedLms>, RawQuery(query): RawQuery) -> Response {
    let result = lms.start_launch(&Params::from_query(query.as_deref()));
    lms.answer(result)
}

/// `GET|POST /auth`: the OIDC authentication request, answered with an auto-posted id_token.
pub(super) async fn authenticate(
    State(lms): State<SimulatedLms>,
    method: Method,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    // OIDC Core §3.1.2.1: GET carries the request in the query, POST in a form body.
    let params = if method == Method::POST {
        Params::parse(&body)
    } else {
        Params::from_query(query.as_deref())
    };
    let result = lms.authenticate(&params);
    lms.answer(result)
}

/// `GET /jwks`: the platform's public keys.
pub(super) async fn jwks(State(lms): State<SimulatedLms>) -> Response {
    let set = serde_json::json!({ "keys": [lms.inner.key.public_jwk()] });
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(set),
    )
        .into_response()
}

fn bad_request_page(reason: RejectReason, message: &str) -> Refusal {
    Refusal::with_response(
        reason,
        html(
            StatusCode::BAD_REQUEST,
            pages::message_page("Bad request", message),
        ),
    )
}

impl SimulatedLms {
    fn start_launch(&self, params: &Params) -> Result<Response, Refusal> {
        let user = params
            .get("user")
            .and_then(|id| self.user(id))
            .ok_or_else(|| bad_request_page(RejectReason::UnknownUser, "No such user."))?;
        let resource = params
            .get("resource")
            .and_then(|id| self.resource(id))
            .ok_or_else(|| bad_request_page(RejectReason::UnknownResource, "No such activity."))?;
        // The hint is opaque to the tool and only means something here, like the session-bound
        // hints Canvas and Moodle send.
        let hint = random_secret();
        {
            let mut state = self.state();
            let now = now();
            state.pending_launches.retain(|_, p| p.expires_at > now);
            state.pending_launches.insert(
                hint.clone(),
                PendingLaunch {
                    user_id: user.id.clone(),
                    resource_id: resource.id.clone(),
                    expires_at: now + MESSAGE_HINT_TTL,
                },
            );
        }
        let tool = &self.current_tool();
        let mut login = tool.login_url.clone();
        login
            .query_pairs_mut()
            .append_pair("iss", &self.issuer())
            .append_pair("login_hint", &user.id)
            .append_pair("target_link_uri", tool.launch_url.as_str())
            .append_pair("lti_message_hint", &hint)
            .append_pair("client_id", &tool.client_id)
            .append_pair("lti_deployment_id", &tool.deployment_id);
        // A launch from the framed page offers platform storage, as Canvas does.
        if let Some(target) = params.get("storage") {
            login
                .query_pairs_mut()
                .append_pair("lti_storage_target", target);
        }
        Ok((StatusCode::FOUND, [(header::LOCATION, login.as_str())]).into_response())
    }

    fn authenticate(&self, p: &Params) -> Result<Response, Refusal> {
        let tool = &self.current_tool();
        // OIDC Core §3.1.2.1-2: until client_id and redirect_uri are known good, nothing may
        // be sent to redirect_uri, so these refusals are pages shown to the person.
        if let Some(name) = p.repeated(&["client_id", "redirect_uri"]) {
            return Err(bad_request_page(
                RejectReason::DuplicateParameter,
                &format!("The parameter {name} was sent more than once."),
            ));
        }
        if p.get("client_id") != Some(tool.client_id.as_str()) {
            return Err(bad_request_page(
                RejectReason::UnknownClient,
                "No tool is registered with this client_id.",
            ));
        }
        // Security Framework §5.1.1.2: redirect_uri must be one the tool registered, exactly.
        let redirect = &tool.launch_url;
        if p.get("redirect_uri") != Some(redirect.as_str()) {
            return Err(bad_request_page(
                RejectReason::RedirectUriMismatch,
                "The redirect_uri is not registered for this tool.",
            ));
        }
        let state = p.get("state");
        // From here on the tool is told why, by an error response posted back to it
        // (OIDC Core §3.1.2.6, in the form_post response mode).
        let refuse = |reason, error: &str, description: &str| {
            let mut fields = vec![("error", error), ("error_description", description)];
            fields.extend(state.map(|s| ("state", s)));
            Refusal::with_response(
                reason,
                html(StatusCode::OK, pages::auto_post_page(redirect, &fields)),
            )
        };
        const SINGLE: &[&str] = &[
            "scope",
            "response_type",
            "response_mode",
            "prompt",
            "nonce",
            "state",
            "login_hint",
            "lti_message_hint",
        ];
        if let Some(name) = p.repeated(SINGLE) {
            return Err(refuse(
                RejectReason::DuplicateParameter,
                "invalid_request",
                &format!("{name} was sent more than once"),
            ));
        }
        if !p
            .get("scope")
            .is_some_and(|s| s.split(' ').any(|scope| scope == "openid"))
        {
            return Err(refuse(
                RejectReason::ScopeNotOpenid,
                "invalid_scope",
                "scope must be openid",
            ));
        }
        if p.get("response_type") != Some("id_token") {
            return Err(refuse(
                RejectReason::ResponseTypeNotIdToken,
                "unsupported_response_type",
                "response_type must be id_token",
            ));
        }
        if p.get("response_mode") != Some("form_post") {
            return Err(refuse(
                RejectReason::ResponseModeNotFormPost,
                "invalid_request",
                "response_mode must be form_post",
            ));
        }
        // The person is already signed in to the LMS; there is nothing to prompt for.
        if p.get("prompt") != Some("none") {
            return Err(refuse(
                RejectReason::PromptNotNone,
                "invalid_request",
                "prompt must be none",
            ));
        }
        let Some(nonce) = p.get("nonce") else {
            return Err(refuse(
                RejectReason::NonceMissing,
                "invalid_request",
                "nonce is required",
            ));
        };
        let Some(state) = state else {
            return Err(refuse(
                RejectReason::StateMissing,
                "invalid_request",
                "state is required",
            ));
        };
        // Deep linking requests and launches of deep-linked activities (deep_linking.rs).
        if let Some(answer) = self.authenticate_deep_linking(p, nonce, state, redirect) {
            return answer;
        }
        // The message hint is single use: taken out whether or not what follows succeeds.
        let pending = p.get("lti_message_hint").and_then(|hint| {
            let mut st = self.state();
            st.pending_launches
                .remove(hint)
                .filter(|pending| pending.expires_at > now())
        });
        let Some(pending) = pending else {
            return Err(refuse(
                RejectReason::MessageHintUnknown,
                "invalid_request",
                "lti_message_hint is unknown, expired or already used",
            ));
        };
        // LTI Core §4.1.1: login_hint must be the person the launch was started for.
        if p.get("login_hint") != Some(pending.user_id.as_str()) {
            return Err(refuse(
                RejectReason::LoginHintMismatch,
                "login_required",
                "login_hint is not the signed-in user",
            ));
        }
        let (Some(user), Some(resource)) = (
            self.user(&pending.user_id),
            self.resource(&pending.resource_id),
        ) else {
            return Err(refuse(
                RejectReason::UnknownUser,
                "invalid_request",
                "the launch no longer exists",
            ));
        };
        let id_token = match self.id_token(user, resource, nonce) {
            Ok(token) => token,
            Err(e) => {
                tracing::error!(error = %e, "simulated LMS could not sign an id_token");
                return Ok(html(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    pages::message_page("Error", "Something went wrong."),
                ));
            }
        };
        Ok(html(
            StatusCode::OK,
            pages::auto_post_page(redirect, &[("id_token", &id_token), ("state", state)]),
        ))
    }

    /// The claims of a resource link launch (LTI Core §5.3, §5.4; AGS §3.1; NRPS §3.6.1).
    pub(super) fn launch_claims(
        &self,
        user: &SimUser,
        resource: &SimResource,
        nonce: &str,
    ) -> LaunchClaims {
        let tool = &self.current_tool();
        let course = &self.inner.course;
        let iat = now().unix_timestamp();
        LaunchClaims {
            iss: self.issuer(),
            sub: Some(user.id.clone()),
            aud: Audience::One(tool.client_id.clone()),
            azp: None,
            exp: iat + ID_TOKEN_TTL.whole_seconds(),
            iat,
            nbf: None,
            nonce: nonce.to_owned(),
            name: Some(user.name.clone()),
            given_name: Some(user.given_name.clone()),
            family_name: Some(user.family_name.clone()),
            email: Some(user.email.clone()),
            message_type: lti::claims::MessageType::LtiResourceLinkRequest
                .as_str()
                .to_owned(),
            version: lti::launch::LTI_VERSION.to_owned(),
            deployment_id: tool.deployment_id.clone(),
            target_link_uri: Some(tool.launch_url.to_string()),
            resource_link: Some(ResourceLinkClaim {
                id: resource.id.clone(),
                title: Some(resource.title.clone()),
                description: None,
            }),
            roles: vec![roles::context_role_uri(&user.role)],
            context: Some(ContextClaim {
                id: course.id.clone(),
                label: Some(course.label.clone()),
                title: Some(course.title.clone()),
                context_type: vec![COURSE_OFFERING.to_owned()],
            }),
            tool_platform: Some(ToolPlatformClaim {
                guid: Some(self.issuer()),
                name: Some("lmsbridge simulated LMS".to_owned()),
                product_family_code: Some("lmsbridge-testkit".to_owned()),
                version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            }),
            launch_presentation: Some(LaunchPresentationClaim {
                document_target: Some("iframe".to_owned()),
                return_url: Some(self.home_url().to_string()),
                locale: Some("en".to_owned()),
            }),
            custom: Some(serde_json::Map::new()),
            ags: Some(AgsEndpointClaim {
                scope: vec![
                    ags::SCOPE_LINEITEM.to_owned(),
                    ags::SCOPE_LINEITEM_READONLY.to_owned(),
                    ags::SCOPE_RESULT_READONLY.to_owned(),
                    ags::SCOPE_SCORE.to_owned(),
                ],
                lineitems: Some(self.line_items_url().to_string()),
                lineitem: Some(self.line_item_url(&resource.line_item_id).to_string()),
            }),
            nrps: Some(NrpsClaim {
                context_memberships_url: self.memberships_url().to_string(),
                service_versions: vec!["2.0".to_owned()],
            }),
            deep_linking_settings: None,
            for_user: None,
            lis: None,
            lti1p1: None,
            role_scope_mentor: Vec::new(),
            extra: BTreeMap::new(),
        }
    }

    fn id_token(
        &self,
        user: &SimUser,
        resource: &SimResource,
        nonce: &str,
    ) -> Result<String, lti::ToolKeyError> {
        self.inner
            .key
            .sign(&self.launch_claims(user, resource, nonce))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{LmsConfig, ToolRegistration};
    use url::Url;

    fn lms() -> SimulatedLms {
        let u = |s: &str| Url::parse(s).unwrap();
        SimulatedLms::new(LmsConfig::new(
            u("http://127.0.0.1:9/lms"),
            ToolRegistration {
                client_id: "c".into(),
                deployment_id: "d".into(),
                login_url: u("http://127.0.0.1:8/login"),
                launch_url: u("http://127.0.0.1:8/launch"),
                jwks_url: u("http://127.0.0.1:8/jwks"),
            },
        ))
    }

    #[test]
    fn nested_base_gives_slashless_issuer_and_service_urls_under_it() {
        let lms = lms();
        assert_eq!(lms.issuer(), "http://127.0.0.1:9/lms");
        assert_eq!(lms.home_url().as_str(), "http://127.0.0.1:9/lms");
        assert_eq!(lms.auth_url().as_str(), "http://127.0.0.1:9/lms/auth");
        let claims = lms.launch_claims(&lms.users()[0], &lms.resources()[1], "n");
        let ags = claims.ags.unwrap();
        assert_eq!(
            ags.lineitem.as_deref(),
            Some("http://127.0.0.1:9/lms/api/lti/courses/course-1/line_items/2")
        );
        assert_eq!(
            claims.nrps.unwrap().context_memberships_url,
            "http://127.0.0.1:9/lms/api/lti/courses/course-1/names_and_roles"
        );
    }
}
