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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
