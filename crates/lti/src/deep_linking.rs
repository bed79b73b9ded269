//! Deep Linking 2.0 (1EdTech LTI Deep Linking 2.0): the content items a tool hands back
//! (§3) and the signed `LtiDeepLinkingResponse` message (§4.5) that carries them to the
//! platform's `deep_link_return_url`.
//!
//! The response builder checks the selection against the request's `deep_linking_settings`
//! (§4.4.1) before anything is signed, one error per rule, so a platform is never sent what it
//! said it would not accept.

use crate::claims::DeepLinkingSettingsClaim;
use crate::keys::{ToolKey, ToolKeyError};
use crate::launch::LTI_VERSION;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;
use url::Url;

/// The message type of the response (DL §4.5).
pub const MESSAGE_TYPE_RESPONSE: &str = "LtiDeepLinkingResponse";
pub const CLAIM_CONTENT_ITEMS: &str = "https://purl.imsglobal.org/spec/lti-dl/claim/content_items";
pub const CLAIM_DATA: &str = "https://purl.imsglobal.org/spec/lti-dl/claim/data";
pub const CLAIM_MSG: &str = "https://purl.imsglobal.org/spec/lti-dl/claim/msg";
pub const CLAIM_LOG: &str = "https://purl.imsglobal.org/spec/lti-dl/claim/log";
pub const CLAIM_ERRORMSG: &str = "https://purl.imsglobal.org/spec/lti-dl/claim/errormsg";
pub const CLAIM_ERRORLOG: &str = "https://purl.imsglobal.org/spec/lti-dl/claim/errorlog";

/// How long a response is valid. The browser posts it on at once, so minutes are plenty.
pub const RESPONSE_TTL_SECS: i64 = 300;

/// The content item type names of DL §3 (the `type` member, also used in `accept_types`).
pub mod item_type {
    pub const LTI_RESOURCE_LINK: &str = "ltiResourceLink";
    pub const LINK: &str = "link";
    pub const HTML: &str = "html";
    pub const FILE: &str = "file";
    pub const IMAGE: &str = "image";
}

/// The presentation targets of DL §4.4.1 `accept_presentation_document_targets`.
pub mod target {
    pub const IFRAME: &str = "iframe";
    pub const WINDOW: &str = "window";
    pub const EMBED: &str = "embed";
}

/// An icon or thumbnail (DL §3.1, §3.2): an image URL with optional pixel size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub url: Url,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

/// Open in a new window (DL §3.1 `window`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_features: Option<String>,
}

/// Show in an iframe (DL §3.1 `iframe`; `src` only for `link` items, §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Iframe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

/// Embed this HTML in the platform's page (DL §3.2 `embed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Embed {
    pub html: String,
}

/// The gradebook column the platform creates with a resource link (DL §3.1 `lineItem`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub score_maximum: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grades_released: Option<bool>,
}

/// A time window (DL §3.1 `available`, `submission`), ISO 8601 on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeWindow {
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub start_date_time: Option<OffsetDateTime>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub end_date_time: Option<OffsetDateTime>,
}

/// An LTI resource link (DL §3.1): an activity that launches this tool.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceLinkItem {
    /// The launch URL; the tool's default launch URL when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Url>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<ImageRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<ImageRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iframe: Option<Iframe>,
    /// Custom parameters the platform sends back in every launch of this link.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_item: Option<LineItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<TimeWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission: Option<TimeWindow>,
}

/// A plain link (DL §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkItem {
    pub url: Url,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<ImageRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<ImageRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed: Option<Embed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iframe: Option<Iframe>,
}

/// An HTML fragment the platform shows in its page (DL §3.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HtmlItem {
    pub html: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A file the platform downloads or links to (DL §3.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileItem {
    pub url: Url,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<ImageRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<ImageRef>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<OffsetDateTime>,
}

/// An image shown in the platform's page (DL §3.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageItem {
    pub url: Url,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<ImageRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<ImageRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

/// One content item, tagged by its `type` (DL §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ContentItem {
    #[serde(rename = "ltiResourceLink")]
    LtiResourceLink(ResourceLinkItem),
    #[serde(rename = "link")]
    Link(LinkItem),
    #[serde(rename = "html")]
    Html(HtmlItem),
    #[serde(rename = "file")]
    File(FileItem),
    #[serde(rename = "image")]
    Image(ImageItem),
}

impl ContentItem {
    /// The `type` name, as `accept_types` lists it.
    pub const fn type_name(&self) -> &'static str {
        match self {
            Self::LtiResourceLink(_) => item_type::LTI_RESOURCE_LINK,
            Self::Link(_) => item_type::LINK,
            Self::Html(_) => item_type::HTML,
            Self::File(_) => item_type::FILE,
            Self::Image(_) => item_type::IMAGE,
        }
    }

    /// The presentation targets this item asks for, as `accept_presentation_document_targets`
    /// names them.
    pub fn presentation_targets(&self) -> Vec<&'static str> {
        let (window, iframe, embed) = match self {
            Self::LtiResourceLink(i) => (i.window.is_some(), i.iframe.is_some(), false),
            Self::Link(i) => (i.window.is_some(), i.iframe.is_some(), i.embed.is_some()),
            Self::Html(_) | Self::File(_) | Self::Image(_) => (false, false, false),
        };
        [
            (window, target::WINDOW),
            (iframe, target::IFRAME),
            (embed, target::EMBED),
        ]
        .into_iter()
        .filter_map(|(asked, name)| asked.then_some(name))
        .collect()
    }

    /// The line item of a resource link, if it carries one.
    pub fn line_item(&self) -> Option<&LineItem> {
        match self {
            Self::LtiResourceLink(i) => i.line_item.as_ref(),
            _ => None,
        }
    }

    /// Checks what the types alone cannot: URLs a browser may follow, a usable maximum score.
    fn check(&self) -> Result<(), &'static str> {
        let web = |u: &Url| matches!(u.scheme(), "http" | "https");
        let urls: Vec<&Url> = match self {
            Self::LtiResourceLink(i) => i.url.iter().collect(),
            Self::Link(i) => vec![&i.url],
            Self::File(i) => vec![&i.url],
            Self::Image(i) => vec![&i.url],
            Self::Html(_) => Vec::new(),
        };
        if !urls.into_iter().all(web) {
            return Err("url must be an http or https URL");
        }
        if let Self::Html(h) = self
            && h.html.trim().is_empty()
        {
            return Err("html must not be empty");
        }
        if let Some(li) = self.line_item()
            && !(li.score_maximum.is_finite() && li.score_maximum > 0.0)
        {
            return Err("lineItem.scoreMaximum must be a number above 0");
        }
        Ok(())
    }
}

/// Why a selection cannot be sent to the platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeepLinkingError {
    #[error("content item {index} is of type {item_type}, which the platform does not accept here")]
    TypeNotAccepted {
        index: usize,
        item_type: &'static str,
    },
    #[error("the platform accepts one content item here, and {count} were chosen")]
    MultipleNotAccepted { count: usize },
    #[error("content item {index} asks to be shown in {target}, which the platform does not offer")]
    PresentationNotAccepted { index: usize, target: &'static str },
    #[error(
        "content item {index} carries a line item, and the platform does not accept line items here"
    )]
    LineItemNotAccepted { index: usize },
    #[error("content item {index} is invalid: {reason}")]
    InvalidItem { index: usize, reason: &'static str },
}

impl DeepLinkingError {
    /// A stable, short machine name for logs and error pages.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::TypeNotAccepted { .. } => "item_type_not_accepted",
            Self::MultipleNotAccepted { .. } => "multiple_not_accepted",
            Self::PresentationNotAccepted { .. } => "presentation_not_accepted",
            Self::LineItemNotAccepted { .. } => "line_item_not_accepted",
            Self::InvalidItem { .. } => "item_invalid",
        }
    }
}

/// Who the response is from and to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseParties {
    /// This tool's client_id at the platform: the response's `iss`.
    pub client_id: String,
    /// The platform's issuer: the response's `aud`.
    pub platform_issuer: String,
    /// The deployment the request came through.
    pub deployment_id: String,
}

/// The claims of an `LtiDeepLinkingResponse` (DL §4.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseClaims {
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub nonce: String,
    #[serde(rename = "https://purl.imsglobal.org/spec/lti/claim/deployment_id")]
    pub deployment_id: String,
    #[serde(rename = "https://purl.imsglobal.org/spec/lti/claim/message_type")]
    pub message_type: String,
    #[serde(rename = "https://purl.imsglobal.org/spec/lti/claim/version")]
    pub version: String,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti-dl/claim/content_items",
        default
    )]
    pub content_items: Vec<ContentItem>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti-dl/claim/data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub data: Option<String>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti-dl/claim/msg",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub msg: Option<String>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti-dl/claim/log",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub log: Option<String>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti-dl/claim/errormsg",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub errormsg: Option<String>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti-dl/claim/errorlog",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub errorlog: Option<String>,
}

impl ResponseClaims {
    /// Signs the response as an RS256 JWT with the key's `kid` in the header (DL §4.5,
    /// Security Framework §5.2).
    pub fn sign(&self, key: &ToolKey) -> Result<String, ToolKeyError> {
        key.sign(self)
    }
}

/// Builds a response for one deep linking request.
#[derive(Debug, Clone)]
pub struct ResponseBuilder<'s> {
    parties: ResponseParties,
    settings: &'s DeepLinkingSettingsClaim,
    items: Vec<ContentItem>,
    msg: Option<String>,
    log: Option<String>,
    errormsg: Option<String>,
    errorlog: Option<String>,
}

impl<'s> ResponseBuilder<'s> {
    /// A response to the request whose settings are `settings`, with no items yet.
    pub fn new(parties: ResponseParties, settings: &'s DeepLinkingSettingsClaim) -> Self {
        Self {
            parties,
            settings,
            items: Vec::new(),
            msg: None,
            log: None,
            errormsg: None,
            errorlog: None,
        }
    }

    /// Adds content items, in the order the platform should show them.
    #[must_use]
    pub fn items(mut self, items: impl IntoIterator<Item = ContentItem>) -> Self {
        self.items.extend(items);
        self
    }

    /// A message the platform may show the user once the response arrives.
    #[must_use]
    pub fn msg(mut self, msg: impl Into<String>) -> Self {
        self.msg = Some(msg.into());
        self
    }

    /// A message the platform may log.
    #[must_use]
    pub fn log(mut self, log: impl Into<String>) -> Self {
        self.log = Some(log.into());
        self
    }

    /// An error message the platform may show the user.
    #[must_use]
    pub fn errormsg(mut self, msg: impl Into<String>) -> Self {
        self.errormsg = Some(msg.into());
        self
    }

    /// An error message the platform may log.
    #[must_use]
    pub fn errorlog(mut self, log: impl Into<String>) -> Self {
        self.errorlog = Some(log.into());
        self
    }

    /// Checks the items against the request's settings and returns the claims, issued at
    /// `now` (seconds since the epoch) with a fresh nonce.
    pub fn build(self, now: i64) -> Result<ResponseClaims, DeepLinkingError> {
        let settings = self.settings;
        // DL §4.4.1 accept_multiple: only an explicit `true` allows several items; a platform
        // that did not say so may keep just one.
        if self.items.len() > 1 && settings.accept_multiple != Some(true) {
            return Err(DeepLinkingError::MultipleNotAccepted {
                count: self.items.len(),
            });
        }
        for (index, item) in self.items.iter().enumerate() {
            // DL §4.4.1 accept_types: the types the platform can place here.
            if !settings.accept_types.iter().any(|t| t == item.type_name()) {
                return Err(DeepLinkingError::TypeNotAccepted {
                    index,
                    item_type: item.type_name(),
                });
            }
            // accept_presentation_document_targets: how the platform can show content.
            if let Some(target) = item.presentation_targets().into_iter().find(|t| {
                !settings
                    .accept_presentation_document_targets
                    .iter()
                    .any(|a| a == t)
            }) {
                return Err(DeepLinkingError::PresentationNotAccepted { index, target });
            }
            // accept_lineitem: false means line items would be ignored, so none is sent.
            if item.line_item().is_some() && settings.accept_lineitem == Some(false) {
                return Err(DeepLinkingError::LineItemNotAccepted { index });
            }
            item.check()
                .map_err(|reason| DeepLinkingError::InvalidItem { index, reason })?;
        }
        Ok(ResponseClaims {
            iss: self.parties.client_id,
            aud: self.parties.platform_issuer,
            iat: now,
            exp: now + RESPONSE_TTL_SECS,
            nonce: uuid::Uuid::new_v4().simple().to_string(),
            deployment_id: self.parties.deployment_id,
            message_type: MESSAGE_TYPE_RESPONSE.to_owned(),
            version: LTI_VERSION.to_owned(),
            content_items: self.items,
            // DL §4.4.1 data: echoed exactly, or left out when the request had none.
            data: settings.data.clone(),
            msg: self.msg,
            log: self.log,
            errormsg: self.errormsg,
            errorlog: self.errorlog,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> DeepLinkingSettingsClaim {
        DeepLinkingSettingsClaim {
            deep_link_return_url: "https://lms.example/deep_linking/return".into(),
            accept_types: vec![
                item_type::LTI_RESOURCE_LINK.into(),
                item_type::LINK.into(),
                item_type::HTML.into(),
            ],
            accept_presentation_document_targets: vec![target::IFRAME.into()],
            accept_media_types: None,
            accept_multiple: Some(true),
            accept_lineitem: Some(true),
            auto_create: None,
            title: None,
            text: None,
            data: Some("opaque-<data>&1".into()),
        }
    }

    fn parties() -> ResponseParties {
        ResponseParties {
            client_id: "tool-client".into(),
            platform_issuer: "https://lms.example".into(),
            deployment_id: "dep-1".into(),
        }
    }

    fn quiz() -> ContentItem {
        ContentItem::LtiResourceLink(ResourceLinkItem {
            url: Some(Url::parse("https://tool.example/lti/launch").unwrap()),
            title: Some("Enzyme quiz".into()),
            text: Some("Ten questions".into()),
            custom: BTreeMap::from([("item".to_owned(), "quiz-1".to_owned())]),
            line_item: Some(LineItem {
                label: Some("Enzyme quiz".into()),
                score_maximum: 10.0,
                resource_id: Some("quiz-1".into()),
                tag: Some("quiz".into()),
                grades_released: Some(true),
            }),
            iframe: Some(Iframe {
                width: Some(800),
                ..Iframe::default()
            }),
            available: Some(TimeWindow {
                start_date_time: Some(OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap()),
                end_date_time: None,
            }),
            ..ResourceLinkItem::default()
        })
    }

    fn link() -> ContentItem {
        ContentItem::Link(LinkItem {
            url: Url::parse("https://tool.example/reading").unwrap(),
            title: Some("Reading".into()),
            text: None,
            icon: None,
            thumbnail: None,
            embed: None,
            window: None,
            iframe: None,
        })
    }

    /// The claims as JSON with the values that change on every run replaced.
    fn redacted(claims: &ResponseClaims) -> serde_json::Value {
        let mut v = serde_json::to_value(claims).unwrap();
        for k in ["iat", "exp", "nonce"] {
            v[k] = json!("[redacted]");
        }
        v
    }

    #[test]
    fn response_claims_match_the_spec_shape() {
        let claims = ResponseBuilder::new(parties(), &settings())
            .items([quiz(), link()])
            .msg("2 items added")
            .log("picked by instructor")
            .build(1_800_000_000)
            .unwrap();
        assert_eq!(claims.iat, 1_800_000_000);
        assert_eq!(claims.exp, 1_800_000_000 + RESPONSE_TTL_SECS);
        assert_eq!(claims.nonce.len(), 32);
        assert_eq!(
            redacted(&claims),
            json!({
                "iss": "tool-client",
                "aud": "https://lms.example",
                "iat": "[redacted]",
                "exp": "[redacted]",
                "nonce": "[redacted]",
                "https://purl.imsglobal.org/spec/lti/claim/deployment_id": "dep-1",
                "https://purl.imsglobal.org/spec/lti/claim/message_type": "LtiDeepLinkingResponse",
                "https://purl.imsglobal.org/spec/lti/claim/version": "1.3.0",
                "https://purl.imsglobal.org/spec/lti-dl/claim/content_items": [
                    {
                        "type": "ltiResourceLink",
                        "url": "https://tool.example/lti/launch",
                        "title": "Enzyme quiz",
                        "text": "Ten questions",
                        "iframe": {"width": 800},
                        "custom": {"item": "quiz-1"},
                        "lineItem": {
                            "label": "Enzyme quiz",
                            "scoreMaximum": 10.0,
                            "resourceId": "quiz-1",
                            "tag": "quiz",
                            "gradesReleased": true
                        },
                        "available": {"startDateTime": "2030-03-17T17:46:40Z"}
                    },
                    {"type": "link", "url": "https://tool.example/reading", "title": "Reading"}
                ],
                "https://purl.imsglobal.org/spec/lti-dl/claim/data": "opaque-<data>&1",
                "https://purl.imsglobal.org/spec/lti-dl/claim/msg": "2 items added",
                "https://purl.imsglobal.org/spec/lti-dl/claim/log": "picked by instructor"
            })
        );
        // Round trip: what a platform parses is what was built.
        let back: ResponseClaims =
            serde_json::from_value(serde_json::to_value(&claims).unwrap()).unwrap();
        assert_eq!(back, claims);
        // Every response gets its own nonce.
        let again = ResponseBuilder::new(parties(), &settings())
            .build(1_800_000_000)
            .unwrap();
        assert_ne!(again.nonce, claims.nonce);
    }

    #[test]
    fn a_cancelled_pick_is_an_empty_response_with_a_message_and_no_data_when_none_was_sent() {
        let mut s = settings();
        s.data = None;
        let claims = ResponseBuilder::new(parties(), &s)
            .msg("Nothing was added.")
            .errorlog("cancelled")
            .build(10)
            .unwrap();
        let v = serde_json::to_value(&claims).unwrap();
        assert_eq!(v[CLAIM_CONTENT_ITEMS], json!([]));
        assert_eq!(v[CLAIM_MSG], "Nothing was added.");
        assert_eq!(v[CLAIM_ERRORLOG], "cancelled");
        assert!(v.get(CLAIM_DATA).is_none(), "{v}");
        assert!(v.get(CLAIM_ERRORMSG).is_none(), "{v}");
    }

    #[test]
    fn refuses_an_item_type_the_platform_does_not_accept() {
        let mut s = settings();
        s.accept_types = vec![item_type::LINK.into()];
        let err = ResponseBuilder::new(parties(), &s)
            .items([link(), quiz()])
            .build(0)
            .unwrap_err();
        assert_eq!(
            err,
            DeepLinkingError::TypeNotAccepted {
                index: 1,
                item_type: "ltiResourceLink"
            }
        );
        assert_eq!(err.code(), "item_type_not_accepted");
    }

    #[test]
    fn refuses_several_items_unless_multiple_is_accepted() {
        for accept_multiple in [Some(false), None] {
            let mut s = settings();
            s.accept_multiple = accept_multiple;
            let err = ResponseBuilder::new(parties(), &s)
                .items([link(), link()])
                .build(0)
                .unwrap_err();
            assert_eq!(err, DeepLinkingError::MultipleNotAccepted { count: 2 });
            // One item is fine.
            assert!(
                ResponseBuilder::new(parties(), &s)
                    .items([link()])
                    .build(0)
                    .is_ok()
            );
        }
    }

    #[test]
    fn refuses_a_presentation_target_the_platform_does_not_offer() {
        let mut s = settings();
        s.accept_presentation_document_targets = vec![target::WINDOW.into()];
        let err = ResponseBuilder::new(parties(), &s)
            .items([quiz()])
            .build(0)
            .unwrap_err();
        assert_eq!(
            err,
            DeepLinkingError::PresentationNotAccepted {
                index: 0,
                target: "iframe"
            }
        );
        let embedded = ContentItem::Link(LinkItem {
            embed: Some(Embed {
                html: "<p>x</p>".into(),
            }),
            ..match link() {
                ContentItem::Link(l) => l,
                _ => unreachable!(),
            }
        });
        assert_eq!(
            ResponseBuilder::new(parties(), &s)
                .items([embedded])
                .build(0)
                .unwrap_err()
                .code(),
            "presentation_not_accepted"
        );
    }

    #[test]
    fn refuses_a_line_item_when_the_platform_says_it_ignores_them() {
        let mut s = settings();
        s.accept_lineitem = Some(false);
        let err = ResponseBuilder::new(parties(), &s)
            .items([quiz()])
            .build(0)
            .unwrap_err();
        assert_eq!(err, DeepLinkingError::LineItemNotAccepted { index: 0 });
        // Left unsaid, the platform may use it.
        s.accept_lineitem = None;
        assert!(
            ResponseBuilder::new(parties(), &s)
                .items([quiz()])
                .build(0)
                .is_ok()
        );
    }

    #[test]
    fn refuses_items_no_platform_could_use() {
        let script = ContentItem::Link(LinkItem {
            url: Url::parse("javascript:alert(1)").unwrap(),
            ..match link() {
                ContentItem::Link(l) => l,
                _ => unreachable!(),
            }
        });
        let err = ResponseBuilder::new(parties(), &settings())
            .items([script])
            .build(0)
            .unwrap_err();
        assert!(matches!(
            err,
            DeepLinkingError::InvalidItem { index: 0, .. }
        ));
        let mut no_score = quiz();
        if let ContentItem::LtiResourceLink(r) = &mut no_score {
            r.line_item.as_mut().unwrap().score_maximum = f64::NAN;
        }
        assert_eq!(
            ResponseBuilder::new(parties(), &settings())
                .items([no_score])
                .build(0)
                .unwrap_err()
                .code(),
            "item_invalid"
        );
        let empty = ContentItem::Html(HtmlItem {
            html: "  ".into(),
            title: None,
            text: None,
        });
        assert!(
            ResponseBuilder::new(parties(), &settings())
                .items([empty])
                .build(0)
                .is_err()
        );
    }

    #[test]
    fn signed_response_verifies_with_the_published_key_and_names_it() {
        let key = ToolKey::generate("dl-key").unwrap();
        let claims = ResponseBuilder::new(parties(), &settings())
            .items([quiz()])
            .build(time::OffsetDateTime::now_utc().unix_timestamp())
            .unwrap();
        let jwt = claims.sign(&key).unwrap();
        let header = crate::jwt::inspect_header(&jwt).unwrap();
        assert_eq!(header.alg, "RS256");
        assert_eq!(header.kid.as_deref(), Some("dl-key"));
        let decoding = jsonwebtoken::DecodingKey::from_jwk(key.public_jwk()).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_audience(&["https://lms.example"]);
        v.set_issuer(&["tool-client"]);
        let data = jsonwebtoken::decode::<ResponseClaims>(&jwt, &decoding, &v).unwrap();
        assert_eq!(data.claims, claims);
    }

    #[test]
    fn items_from_a_platform_or_another_tool_parse_by_type() {
        let items: Vec<ContentItem> = serde_json::from_value(json!([
            {"type": "html", "html": "<b>hi</b>"},
            {"type": "file", "url": "https://f.example/a.pdf", "expiresAt": "2030-01-01T00:00:00Z"},
            {"type": "image", "url": "https://f.example/a.png", "width": 10, "height": 20},
            {"type": "ltiResourceLink", "title": "t", "lineItem": {"scoreMaximum": 5}}
        ]))
        .unwrap();
        let names: Vec<_> = items.iter().map(ContentItem::type_name).collect();
        assert_eq!(names, ["html", "file", "image", "ltiResourceLink"]);
        assert_eq!(items[3].line_item().unwrap().score_maximum, 5.0);
        assert!(serde_json::from_value::<ContentItem>(json!({"type": "video"})).is_err());
    }
}
