//! Third-party initiated login (LTI Core §4.1, OIDC Core §4 as profiled by the Security
//! Framework §5.1.1).

use serde::Deserialize;
use url::Url;

/// The login initiation request, from a GET query or a POST form.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct LoginInitiation {
    pub iss: Option<String>,
    pub login_hint: Option<String>,
    pub target_link_uri: Option<String>,
    pub lti_message_hint: Option<String>,
    pub client_id: Option<String>,
    pub lti_deployment_id: Option<String>,
    /// Canvas has sent `deployment_id` instead of the spec's name.
    pub deployment_id: Option<String>,
    pub lti_storage_target: Option<String>,
}

impl LoginInitiation {
    /// The deployment id under either name.
    pub fn deployment(&self) -> Option<&str> {
        self.lti_deployment_id
            .as_deref()
            .or(self.deployment_id.as_deref())
    }
}

/// The parameters of the authentication request we redirect the browser to.
#[derive(Debug, Clone)]
pub struct AuthRequest<'a> {
    pub auth_url: &'a Url,
    pub client_id: &'a str,
    pub redirect_uri: &'a Url,
    pub login_hint: &'a str,
    pub lti_message_hint: Option<&'a str>,
    pub state: &'a str,
    pub nonce: &'a str,
}

impl AuthRequest<'_> {
    /// The full authentication request URL (Security Framework §5.1.1.2).
    pub fn to_url(&self) -> Url {
        let mut url = self.auth_url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("scope", "openid")
                .append_pair("response_type", "id_token")
                .append_pair("response_mode", "form_post")
                .append_pair("prompt", "none")
                .append_pair("client_id", self.client_id)
                .append_pair("redirect_uri", self.redirect_uri.as_str())
                .append_pair("login_hint", self.login_hint)
                .append_pair("state", self.state)
                .append_pair("nonce", self.nonce);
            if let Some(hint) = self.lti_message_hint {
                q.append_pair("lti_message_hint", hint);
            }
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_request_is_built_with_encoded_query_pairs() {
        let auth = Url::parse("https://lms.example/auth?x=1").unwrap();
        let redirect = Url::parse("https://tool.example/lti/launch").unwrap();
        let url = AuthRequest {
            auth_url: &auth,
            client_id: "c 1",
            redirect_uri: &redirect,
            login_hint: "u&2",
            lti_message_hint: Some("m"),
            state: "s",
            nonce: "n",
        }
        .to_url();
        let pairs: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs["x"], "1");
        assert_eq!(pairs["client_id"], "c 1");
        assert_eq!(pairs["login_hint"], "u&2");
        assert_eq!(pairs["response_mode"], "form_post");
        assert_eq!(pairs["redirect_uri"], "https://tool.example/lti/launch");
        assert_eq!(pairs["lti_message_hint"], "m");
    }

    #[test]
    fn deployment_under_either_name() {
        let canvas = LoginInitiation {
            deployment_id: Some("d1".into()),
            ..Default::default()
        };
        assert_eq!(canvas.deployment(), Some("d1"));
    }
}
