//! The id_token claims of LTI 1.3 launches (LTI Core 1.3 §5), typed. Claims we do not model
//! are kept in `extra` rather than dropped.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const CLAIM_MESSAGE_TYPE: &str = "https://purl.imsglobal.org/spec/lti/claim/message_type";
pub const CLAIM_VERSION: &str = "https://purl.imsglobal.org/spec/lti/claim/version";
pub const CLAIM_DEPLOYMENT_ID: &str = "https://purl.imsglobal.org/spec/lti/claim/deployment_id";
pub const CLAIM_TARGET_LINK_URI: &str = "https://purl.imsglobal.org/spec/lti/claim/target_link_uri";
pub const CLAIM_RESOURCE_LINK: &str = "https://purl.imsglobal.org/spec/lti/claim/resource_link";
pub const CLAIM_ROLES: &str = "https://purl.imsglobal.org/spec/lti/claim/roles";
pub const CLAIM_CONTEXT: &str = "https://purl.imsglobal.org/spec/lti/claim/context";
pub const CLAIM_TOOL_PLATFORM: &str = "https://purl.imsglobal.org/spec/lti/claim/tool_platform";
pub const CLAIM_LAUNCH_PRESENTATION: &str =
    "https://purl.imsglobal.org/spec/lti/claim/launch_presentation";
pub const CLAIM_CUSTOM: &str = "https://purl.imsglobal.org/spec/lti/claim/custom";
pub const CLAIM_AGS: &str = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint";
pub const CLAIM_NRPS: &str = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice";
pub const CLAIM_DEEP_LINKING_SETTINGS: &str =
    "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings";
pub const CLAIM_FOR_USER: &str = "https://purl.imsglobal.org/spec/lti/claim/for_user";
pub const CLAIM_LIS: &str = "https://purl.imsglobal.org/spec/lti/claim/lis";
pub const CLAIM_LTI1P1: &str = "https://purl.imsglobal.org/spec/lti/claim/lti1p1";
pub const CLAIM_ROLE_SCOPE_MENTOR: &str =
    "https://purl.imsglobal.org/spec/lti/claim/role_scope_mentor";
/// The role LTI platforms give a test user (Canvas's Test Student, Moodle's role switch).
pub const ROLE_TEST_USER: &str = "http://purl.imsglobal.org/vocab/lti/system/person#TestUser";

/// The LTI messages lmsbridge accepts (LTI Core §5.1, Deep Linking 2.0 §4.4,
/// Submission Review 1.0 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageType {
    LtiResourceLinkRequest,
    LtiDeepLinkingRequest,
    LtiSubmissionReviewRequest,
}

impl MessageType {
    pub const ALL: [Self; 3] = [
        Self::LtiResourceLinkRequest,
        Self::LtiDeepLinkingRequest,
        Self::LtiSubmissionReviewRequest,
    ];

    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::LtiResourceLinkRequest => "LtiResourceLinkRequest",
            Self::LtiDeepLinkingRequest => "LtiDeepLinkingRequest",
            Self::LtiSubmissionReviewRequest => "LtiSubmissionReviewRequest",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The claims this message must carry, by claim key and a short name for errors.
    pub fn required_claims(&self) -> &'static [(&'static str, &'static str)] {
        const COMMON: [(&str, &str); 7] = [
            ("iss", "iss"),
            ("aud", "aud"),
            ("exp", "exp"),
            ("iat", "iat"),
            ("nonce", "nonce"),
            (CLAIM_VERSION, "version"),
            (CLAIM_DEPLOYMENT_ID, "deployment_id"),
        ];
        match self {
            Self::LtiResourceLinkRequest => &[
                COMMON[0],
                COMMON[1],
                COMMON[2],
                COMMON[3],
                COMMON[4],
                COMMON[5],
                COMMON[6],
                (CLAIM_TARGET_LINK_URI, "target_link_uri"),
                (CLAIM_RESOURCE_LINK, "resource_link"),
                (CLAIM_ROLES, "roles"),
            ],
            Self::LtiDeepLinkingRequest => &[
                COMMON[0],
                COMMON[1],
                COMMON[2],
                COMMON[3],
                COMMON[4],
                COMMON[5],
                COMMON[6],
                (CLAIM_DEEP_LINKING_SETTINGS, "deep_linking_settings"),
                (CLAIM_ROLES, "roles"),
            ],
            Self::LtiSubmissionReviewRequest => &[
                COMMON[0],
                COMMON[1],
                COMMON[2],
                COMMON[3],
                COMMON[4],
                COMMON[5],
                COMMON[6],
                (CLAIM_TARGET_LINK_URI, "target_link_uri"),
                (CLAIM_RESOURCE_LINK, "resource_link"),
                (CLAIM_ROLES, "roles"),
                (CLAIM_FOR_USER, "for_user"),
                (CLAIM_AGS, "ags_endpoint"),
            ],
        }
    }
}

/// `aud` is a string or an array of strings (OpenID Connect Core §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, client_id: &str) -> bool {
        match self {
            Self::One(a) => a == client_id,
            Self::Many(v) => v.iter().any(|a| a == client_id),
        }
    }
    pub fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLinkClaim {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextClaim {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Vec::is_empty")]
    pub context_type: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ToolPlatformClaim {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_family_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LaunchPresentationClaim {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

/// The Assignment and Grade Services endpoint claim (AGS 2.0 §3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgsEndpointClaim {
    #[serde(default)]
    pub scope: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineitems: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineitem: Option<String>,
}

/// The Names and Role Provisioning Services claim (NRPS 2.0 §3.6.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NrpsClaim {
    pub context_memberships_url: String,
    #[serde(default)]
    pub service_versions: Vec<String>,
}

/// Deep Linking 2.0 settings (DL §4.4.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeepLinkingSettingsClaim {
    pub deep_link_return_url: String,
    #[serde(default)]
    pub accept_types: Vec<String>,
    #[serde(default)]
    pub accept_presentation_document_targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_media_types: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_multiple: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_lineitem: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_create: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Opaque; must be echoed back unchanged in the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// The learner whose submission is reviewed (Submission Review 1.0 §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForUserClaim {
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// Learning Information Services identifiers (LTI Core §5.4.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LisClaim {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_sourcedid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub course_offering_sourcedid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub course_section_sourcedid: Option<String>,
}

/// The LTI 1.1 migration claim (LTI 1.3 Core §D.4 / migration guide).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Lti1p1Claim {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_consumer_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_consumer_key_sign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_link_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_consumer_instance_guid: Option<String>,
}

/// Every claim of a launch that lmsbridge acts on.
///
/// Deserialised by hand ([`Decoded`]) rather than derived: a derived `#[serde(flatten)]`
/// buffers every claim before sorting it out, which made decoding a launch's claims cost
/// more than verifying its signature's hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaunchClaims {
    pub iss: String,
    pub sub: Option<String>,
    pub aud: Audience,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub nonce: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(rename = "https://purl.imsglobal.org/spec/lti/claim/message_type")]
    pub message_type: String,
    #[serde(rename = "https://purl.imsglobal.org/spec/lti/claim/version")]
    pub version: String,
    #[serde(rename = "https://purl.imsglobal.org/spec/lti/claim/deployment_id")]
    pub deployment_id: String,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti/claim/target_link_uri",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub target_link_uri: Option<String>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti/claim/resource_link",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_link: Option<ResourceLinkClaim>,
    #[serde(rename = "https://purl.imsglobal.org/spec/lti/claim/roles", default)]
    pub roles: Vec<String>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti/claim/context",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub context: Option<ContextClaim>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti/claim/tool_platform",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tool_platform: Option<ToolPlatformClaim>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti/claim/launch_presentation",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub launch_presentation: Option<LaunchPresentationClaim>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti/claim/custom",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub custom: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ags: Option<AgsEndpointClaim>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub nrps: Option<NrpsClaim>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub deep_linking_settings: Option<DeepLinkingSettingsClaim>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti/claim/for_user",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub for_user: Option<ForUserClaim>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti/claim/lis",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub lis: Option<LisClaim>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti/claim/lti1p1",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub lti1p1: Option<Lti1p1Claim>,
    #[serde(
        rename = "https://purl.imsglobal.org/spec/lti/claim/role_scope_mentor",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub role_scope_mentor: Vec<String>,
    /// Everything else the platform sent, kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl LaunchClaims {
    /// The message type, known to be one lmsbridge accepts once validated.
    pub fn message(&self) -> Option<MessageType> {
        MessageType::parse(&self.message_type)
    }

    /// True when the platform marked the user as a test user (LTI Core §A.2.4).
    pub fn is_test_user(&self) -> bool {
        self.roles.iter().any(|r| r == ROLE_TEST_USER)
    }

    /// Claims from vendors (Canvas's `https://canvas.instructure.com/...`,
    /// `https://www.instructure.com/...`, Moodle's, ...) that have no typed field.
    pub fn vendor_claims(&self) -> impl Iterator<Item = (&String, &serde_json::Value)> {
        self.extra
            .iter()
            .filter(|(k, _)| k.starts_with("http") && !k.starts_with("https://purl.imsglobal.org/"))
    }
}

impl<'de> Deserialize<'de> for LaunchClaims {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Decoded::deserialize(d).map(|d| d.claims)
    }
}

/// Claims as decoded, with what decoding alone can tell: whether `roles` was sent at all
/// (absent and empty are both an empty list in [`LaunchClaims`]).
#[derive(Debug)]
pub(crate) struct Decoded {
    pub claims: LaunchClaims,
    pub roles_present: bool,
}

impl Decoded {
    /// Whether a claim the message requires was sent, and not as `null`.
    pub fn has(&self, key: &str) -> bool {
        let c = &self.claims;
        match key {
            // Decoding fails without these (or with them `null`).
            "iss" | "aud" | "exp" | "iat" | "nonce" | CLAIM_MESSAGE_TYPE | CLAIM_VERSION
            | CLAIM_DEPLOYMENT_ID => true,
            CLAIM_TARGET_LINK_URI => c.target_link_uri.is_some(),
            CLAIM_RESOURCE_LINK => c.resource_link.is_some(),
            CLAIM_ROLES => self.roles_present,
            CLAIM_DEEP_LINKING_SETTINGS => c.deep_linking_settings.is_some(),
            CLAIM_FOR_USER => c.for_user.is_some(),
            CLAIM_AGS => c.ags.is_some(),
            CLAIM_NRPS => c.nrps.is_some(),
            other => c.extra.get(other).is_some_and(|v| !v.is_null()),
        }
    }
}

/// A claim name, borrowed from the token when it has no escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a claim name")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Decoded {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ClaimsVisitor)
    }
}

struct ClaimsVisitor;

impl<'de> serde::de::Visitor<'de> for ClaimsVisitor {
    type Value = Decoded;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the claims of an LTI launch")
    }

    // As the derived implementation did: a claim sent twice keeps its last value (as a
    // `serde_json::Value` object does), `null` is `None` for optional claims, and every
    // claim without a field of its own goes to `extra`.
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Decoded, A::Error> {
        use serde::de::Error;
        let mut iss = None;
        let mut sub = None;
        let mut aud = None;
        let mut azp = None;
        let mut exp = None;
        let mut iat = None;
        let mut nbf = None;
        let mut nonce = None;
        let mut name = None;
        let mut given_name = None;
        let mut family_name = None;
        let mut email = None;
        let mut message_type = None;
        let mut version = None;
        let mut deployment_id = None;
        let mut target_link_uri = None;
        let mut resource_link = None;
        let mut roles = None;
        let mut context = None;
        let mut tool_platform = None;
        let mut launch_presentation = None;
        let mut custom = None;
        let mut ags = None;
        let mut nrps = None;
        let mut deep_linking_settings = None;
        let mut for_user = None;
        let mut lis = None;
        let mut lti1p1 = None;
        let mut role_scope_mentor = None;
        let mut extra = BTreeMap::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match &*key {
                "iss" => iss = Some(map.next_value()?),
                "sub" => sub = map.next_value()?,
                "aud" => aud = Some(map.next_value()?),
                "azp" => azp = map.next_value()?,
                "exp" => exp = Some(map.next_value()?),
                "iat" => iat = Some(map.next_value()?),
                "nbf" => nbf = map.next_value()?,
                "nonce" => nonce = Some(map.next_value()?),
                "name" => name = map.next_value()?,
                "given_name" => given_name = map.next_value()?,
                "family_name" => family_name = map.next_value()?,
                "email" => email = map.next_value()?,
                CLAIM_MESSAGE_TYPE => message_type = Some(map.next_value()?),
                CLAIM_VERSION => version = Some(map.next_value()?),
                CLAIM_DEPLOYMENT_ID => deployment_id = Some(map.next_value()?),
                CLAIM_TARGET_LINK_URI => target_link_uri = map.next_value()?,
                CLAIM_RESOURCE_LINK => resource_link = map.next_value()?,
                CLAIM_ROLES => roles = Some(map.next_value()?),
                CLAIM_CONTEXT => context = map.next_value()?,
                CLAIM_TOOL_PLATFORM => tool_platform = map.next_value()?,
                CLAIM_LAUNCH_PRESENTATION => launch_presentation = map.next_value()?,
                CLAIM_CUSTOM => custom = map.next_value()?,
                CLAIM_AGS => ags = map.next_value()?,
                CLAIM_NRPS => nrps = map.next_value()?,
                CLAIM_DEEP_LINKING_SETTINGS => deep_linking_settings = map.next_value()?,
                CLAIM_FOR_USER => for_user = map.next_value()?,
                CLAIM_LIS => lis = map.next_value()?,
                CLAIM_LTI1P1 => lti1p1 = map.next_value()?,
                CLAIM_ROLE_SCOPE_MENTOR => role_scope_mentor = Some(map.next_value()?),
                _ => {
                    let value: serde_json::Value = map.next_value()?;
                    extra.insert(key.into_owned(), value);
                }
            }
        }
        let roles_present = roles.is_some();
        let claims = LaunchClaims {
            iss: iss.ok_or_else(|| A::Error::missing_field("iss"))?,
            sub,
            aud: aud.ok_or_else(|| A::Error::missing_field("aud"))?,
            azp,
            exp: exp.ok_or_else(|| A::Error::missing_field("exp"))?,
            iat: iat.ok_or_else(|| A::Error::missing_field("iat"))?,
            nbf,
            nonce: nonce.ok_or_else(|| A::Error::missing_field("nonce"))?,
            name,
            given_name,
            family_name,
            email,
            message_type: message_type
                .ok_or_else(|| A::Error::missing_field(CLAIM_MESSAGE_TYPE))?,
            version: version.ok_or_else(|| A::Error::missing_field(CLAIM_VERSION))?,
            deployment_id: deployment_id
                .ok_or_else(|| A::Error::missing_field(CLAIM_DEPLOYMENT_ID))?,
            target_link_uri,
            resource_link,
            roles: roles.unwrap_or_default(),
            context,
            tool_platform,
            launch_presentation,
            custom,
            ags,
            nrps,
            deep_linking_settings,
            for_user,
            lis,
            lti1p1,
            role_scope_mentor: role_scope_mentor.unwrap_or_default(),
            extra,
        };
        Ok(Decoded {
            claims,
            roles_present,
        })
    }
}
