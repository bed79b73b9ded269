//! RFC 8288 `Link` headers, which AGS (§3.2.6, §3.5) and NRPS (§2.4.1) use to page their
//! containers with `rel="next"`.

use url::Url;

/// Parses a `Link` header value into (target, rel) pairs, resolving relative targets
/// against `base`. A link with several relations (`rel="next last"`) gives one pair each;
/// relations are lower-cased, as RFC 8288 §2.1.1 compares them case-insensitively.
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

/// The first target with relation `rel` among all `Link` headers of a response.
pub fn find_link(headers: &http::HeaderMap, base: &Url, rel: &str) -> Option<Url> {
    headers
        .get_all(http::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| parse_link_header(v, base))
        .find(|(_, r)| r == rel)
        .map(|(u, _)| u)
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
    fn commas_in_urls_relative_targets_and_several_rels() {
        let base = Url::parse("https://lms.example/api/items?page=1").unwrap();
        let links = parse_link_header(
            r#"<https://lms.example/api/items?page=2&x=a,b>; rel="next last", </api/items?page=1>; REL=First"#,
            &base,
        );
        let got: Vec<(&str, &str)> = links
            .iter()
            .map(|(u, r)| (u.as_str(), r.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("https://lms.example/api/items?page=2&x=a,b", "next"),
                ("https://lms.example/api/items?page=2&x=a,b", "last"),
                ("https://lms.example/api/items?page=1", "first"),
            ]
        );
    }

    #[test]
    fn garbage_is_skipped_not_fatal() {
        let base = Url::parse("https://lms.example/").unwrap();
        assert!(parse_link_header("no brackets; rel=next", &base).is_empty());
        assert!(parse_link_header("<https://lms.example/2>", &base).is_empty());
        assert!(parse_link_header("", &base).is_empty());
    }

    #[test]
    fn finds_next_across_several_headers() {
        let base = Url::parse("https://lms.example/li").unwrap();
        let mut h = http::HeaderMap::new();
        h.append(http::header::LINK, "</li?p=1>; rel=prev".parse().unwrap());
        h.append(
            http::header::LINK,
            "</li?p=3>; rel=\"next\"".parse().unwrap(),
        );
        assert_eq!(
            find_link(&h, &base, "next").unwrap().as_str(),
            "https://lms.example/li?p=3"
        );
        assert_eq!(find_link(&h, &base, "last"), None);
    }
}
