//! LTI role vocabularies (LTI Core 1.3 §A.2) mapped to lmsbridge's normalised roles.

use serde::{Deserialize, Serialize};

/// A normalised role. Mirrors `domain::Role` without depending on it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LtiRole {
    Learner,
    Instructor,
    TeachingAssistant,
    ContentDeveloper,
    Mentor,
    Administrator,
    Other(String),
}

const CONTEXT: &str = "http://purl.imsglobal.org/vocab/lis/v2/membership#";
const CONTEXT_SUB: &str = "http://purl.imsglobal.org/vocab/lis/v2/membership/";
const INSTITUTION: &str = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#";
const SYSTEM: &str = "http://purl.imsglobal.org/vocab/lis/v2/system/person#";

/// Maps one role as a platform sent it: a full context-role URI, a sub-role URI
/// (`membership/Instructor#TeachingAssistant`), or the short form some platforms use.
pub fn normalise(role: &str) -> LtiRole {
    if let Some(rest) = role.strip_prefix(CONTEXT_SUB) {
        // Sub-roles: the part after '#' refines the principal role before it.
        let (principal, sub) = rest.split_once('#').unwrap_or((rest, ""));
        if sub == "TeachingAssistant" || principal == "TeachingAssistant" {
            return LtiRole::TeachingAssistant;
        }
        return context_role(principal).unwrap_or_else(|| LtiRole::Other(role.to_owned()));
    }
    if let Some(name) = role.strip_prefix(CONTEXT) {
        return context_role(name).unwrap_or_else(|| LtiRole::Other(role.to_owned()));
    }
    if let Some(name) = role
        .strip_prefix(INSTITUTION)
        .or_else(|| role.strip_prefix(SYSTEM))
    {
        return match name {
            "Administrator" | "SysAdmin" => LtiRole::Administrator,
            _ => LtiRole::Other(role.to_owned()),
        };
    }
    // Short forms are only valid for context roles (LTI Core §A.2.3.1).
    context_role(role).unwrap_or_else(|| LtiRole::Other(role.to_owned()))
}

fn context_role(name: &str) -> Option<LtiRole> {
    Some(match name {
        "Learner" => LtiRole::Learner,
        "Instructor" => LtiRole::Instructor,
        "TeachingAssistant" => LtiRole::TeachingAssistant,
        "ContentDeveloper" => LtiRole::ContentDeveloper,
        "Mentor" => LtiRole::Mentor,
        "Administrator" => LtiRole::Administrator,
        _ => return None,
    })
}

/// The context-role URI for a normalised role, as a platform simulator would send it.
pub fn context_role_uri(role: &LtiRole) -> String {
    match role {
        LtiRole::Other(s) => s.clone(),
        other => format!(
            "{CONTEXT}{}",
            match other {
                LtiRole::Learner => "Learner",
                LtiRole::Instructor => "Instructor",
                LtiRole::TeachingAssistant => "TeachingAssistant",
                LtiRole::ContentDeveloper => "ContentDeveloper",
                LtiRole::Mentor => "Mentor",
                _ => "Administrator",
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_short_and_sub_roles() {
        assert_eq!(
            normalise("http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"),
            LtiRole::Learner
        );
        assert_eq!(normalise("Instructor"), LtiRole::Instructor);
        assert_eq!(
            normalise(
                "http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"
            ),
            LtiRole::TeachingAssistant
        );
        assert_eq!(
            normalise("http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator"),
            LtiRole::Administrator
        );
        assert_eq!(
            normalise("http://purl.imsglobal.org/vocab/lis/v2/institution/person#Student"),
            LtiRole::Other(
                "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Student".into()
            )
        );
        assert_eq!(
            normalise(&context_role_uri(&LtiRole::Mentor)),
            LtiRole::Mentor
        );
    }
}
