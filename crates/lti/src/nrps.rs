//! Names and Role Provisioning Services 2.0: membership pages (NRPS §2).

use crate::http_error::{ServiceError, ServiceErrorKind};
use crate::token::AccessToken;
use serde::Deserialize;
use url::Url;

pub const SCOPE_MEMBERSHIP_READONLY: &str =
    "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly";
pub const MEDIA_TYPE_MEMBERSHIPS: &str = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json";

/// One member as the platform sends it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Member {
    pub user_id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Container {
    #[serde(default)]
    members: Vec<Member>,
}

/// One page of members and the links the platform gave with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipPage {
    pub members: Vec<Member>,
    pub next: Option<Url>,
    pub differences: Option<Url>,
}

/// Fetches one page of the membership container.
pub async fn fetch_page(
    http: &reqwest::Client,
    token: &AccessToken,
    url: &Url,
) -> Result<MembershipPage, ServiceError> {
    let resp = http
        .get(url.clone())
        .bearer_auth(token.secret())
        .header(http::header::ACCEPT, MEDIA_TYPE_MEMBERSHIPS)
        .send()
        .await
        .map_err(|e| ServiceError::transport(&e))?;
    if !resp.status().is_success() {
        return Err(ServiceError::from_response(resp).await);
    }
    let links: Vec<(Url, String)> = resp
        .headers()
        .get_all(http::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| parse_link_header(v, url))
        .collect();
    let container: Container = resp.json().await.map_err(|_| ServiceError {
        kind: ServiceErrorKind::Rejected,
        status: None,
        retry_after: None,
        detail: "membership container is not valid JSON".into(),
    })?;
    let find = |rel: &str| links.iter().find(|(_, r)| r == rel).map(|(u, _)| u.clone());
    Ok(MembershipPage {
        members: container.members,
        next: find("next"),
        differences: find("differences"),
    })
}

/// Parses an RFC 8288 `Link` header into (target, rel) pairs, resolving relative targets.
pub fn parse_link_header(value: &str, base: &Url) -> Vec<(Url, String)> {
    let mut out = Vec::new();
    for part in split_links(value) {
        let part = part.trim();
        let Some(end) = part.find('>') else { continue };
        let Some(target) = part.get(1..end).filter(|_| part.starts_with('<')) else {
            continue;
        };
        let Ok(url) = base.join(target) else { continue };
        for param in part[end + 1..].split(';') {
            let Some((k, v)) = param.split_once('=') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("rel") {
                for rel in v.trim().trim_matches('"').split_whitespace() {
                    out.push((url.clone(), rel.to_ascii_lowercase()));
                }
            }
        }
    }
    out
}

/// Splits on commas that are not inside `<…>` or quotes.
fn split_links(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut in_angle, mut in_quote) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            '<' if !in_quote => in_angle = true,
            '>' if !in_quote => in_angle = false,
            '"' if !in_angle => in_quote = !in_quote,
            ',' if !in_angle && !in_quote => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_with_commas_in_urls_and_several_rels() {
        let base = Url::parse("https://lms.example/api/members?page=1").unwrap();
        let links = parse_link_header(
            r#"<https://lms.example/api/members?page=2&x=a,b>; rel="next", </api/members?since=9>; rel=differences"#,
            &base,
        );
        assert_eq!(links.len(), 2);
        assert_eq!(
            links[0].0.as_str(),
            "https://lms.example/api/members?page=2&x=a,b"
        );
        assert_eq!(links[0].1, "next");
        assert_eq!(
            links[1].0.as_str(),
            "https://lms.example/api/members?since=9"
        );
        assert_eq!(links[1].1, "differences");
    }
}
