//! Third-party initiated login (LTI Core §4.1, OIDC Core §4 as profiled by the Security
//! Framework §5.1.1).

use serde::Deserialize;
use std::borrow::Cow;
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
    /// Reads a query string or `application/x-www-form-urlencoded` body as the
    /// `Query`/`Form` extractors would (unknown names ignored, a name given twice refused),
    /// without their generic deserialisation.
    pub fn from_form(form: &[u8]) -> Result<Self, String> {
        let mut p = Self::default();
        for (name, value) in form_pairs(form) {
            let slot = match &*name {
                "iss" => &mut p.iss,
                "login_hint" => &mut p.login_hint,
                "target_link_uri" => &mut p.target_link_uri,
                "lti_message_hint" => &mut p.lti_message_hint,
                "client_id" => &mut p.client_id,
                "lti_deployment_id" => &mut p.lti_deployment_id,
                "deployment_id" => &mut p.deployment_id,
                "lti_storage_target" => &mut p.lti_storage_target,
                _ => continue,
            };
            set_once(slot, &name, value)?;
        }
        Ok(p)
    }

    /// The deployment id under either name.
    pub fn deployment(&self) -> Option<&str> {
        self.lti_deployment_id
            .as_deref()
            .or(self.deployment_id.as_deref())
    }
}

/// The name/value pairs of a query string or URL-encoded form, decoded exactly as
/// `url::form_urlencoded::parse` decodes them. A launch form is mostly a few kilobytes of
/// id_token in base64url, which needs no decoding: a pair without `%` or `+` is borrowed as
/// it is instead of going through the decoder byte by byte.
pub fn form_pairs(form: &[u8]) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    form.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            // `contains` on bytes is memchr: a word at a time.
            let encoded = pair.contains(&b'%') || pair.contains(&b'+');
            let plain = if encoded {
                None
            } else {
                std::str::from_utf8(pair).ok()
            };
            match plain {
                Some(pair) => match pair.split_once('=') {
                    Some((name, value)) => (Cow::Borrowed(name), Cow::Borrowed(value)),
                    None => (Cow::Borrowed(pair), Cow::Borrowed("")),
                },
                None => url::form_urlencoded::parse(pair)
                    .next()
                    .unwrap_or((Cow::Borrowed(""), Cow::Borrowed(""))),
            }
        })
}

/// Fills a form field, refusing a second value as the `Form` extractor does.
pub fn set_once(slot: &mut Option<String>, name: &str, value: Cow<'_, str>) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("duplicate field `{name}`"));
    }
    *slot = Some(value.into_owned());
    Ok(())
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
    fn forms_decode_like_the_extractors() {
        let p = LoginInitiation::from_form(
            b"iss=https%3A%2F%2Flms.example&login_hint=a+b&&target_link_uri=https://t.example/x?y=1&other=1&client_id=c=d&lti_storage_target",
        )
        .unwrap();
        assert_eq!(p.iss.as_deref(), Some("https://lms.example"));
        assert_eq!(p.login_hint.as_deref(), Some("a b"));
        assert_eq!(
            p.target_link_uri.as_deref(),
            Some("https://t.example/x?y=1")
        );
        assert_eq!(p.client_id.as_deref(), Some("c=d"));
        assert_eq!(p.lti_storage_target.as_deref(), Some(""));
        assert_eq!(p.lti_message_hint, None);
        // Names are decoded too; invalid UTF-8 is replaced, as the extractors do.
        let p = LoginInitiation::from_form(b"client%5Fid=%FFx&iss=\xff").unwrap();
        assert_eq!(p.client_id.as_deref(), Some("\u{fffd}x"));
        assert!(
            LoginInitiation::from_form(b"iss=a&iss=b")
                .unwrap_err()
                .contains("duplicate field `iss`")
        );
        // The same pairs as url::form_urlencoded, whichever path each takes.
        let samples: [&[u8]; 5] = [
            b"a=1&b=%20&c+d=e+f&=g&h&i==j&%zz=%4",
            b"id_token=eyJ.eyJ-_x.sig&state=abc",
            b"&&&",
            b"x=\xc3\xa9&y=\xe9",
            b"",
        ];
        for s in samples {
            let ours: Vec<(String, String)> = form_pairs(s)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let theirs: Vec<(String, String)> =
                url::form_urlencoded::parse(s).into_owned().collect();
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(s));
        }
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
