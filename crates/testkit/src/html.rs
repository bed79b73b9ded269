//! Just enough HTML for the simulated LMS to write pages and the scripted browser to read
//! them: escaping, and a small tag scanner that finds forms, their fields, links and scripts.
//!
//! The scanner is deliberately forgiving, like a browser: single, double or missing quotes
//! around attribute values, upper-case tag names, comments, and raw text inside `<script>`,
//! `<style>` and `<textarea>` (where a `<form>` in a string must not count as a form).

use url::Url;

/// Escapes text for use in element content and in quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Decodes character references: the named ones pages here use and every numeric one.
/// Anything that is not a complete reference stays as written, as browsers do.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        // The longest reference we decode is `&#x10FFFF;` (10 bytes).
        let decoded = rest
            .get(1..rest.len().min(12))
            .and_then(|window| window.find(';').map(|semi| &window[..semi]))
            .and_then(|name| decode_reference(name).map(|c| (c, name.len() + 2)));
        match decoded {
            Some((c, consumed)) => {
                out.push(c);
                rest = &rest[consumed..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn decode_reference(name: &str) -> Option<char> {
    let code = if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
        u32::from_str_radix(hex, 16).ok()?
    } else if let Some(dec) = name.strip_prefix('#') {
        dec.parse().ok()?
    } else {
        return match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => None,
        };
    };
    char::from_u32(code)
}

/// One piece of a document, as the scanner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node<'a> {
    /// A start tag: lower-cased name, attributes with lower-cased names and decoded values.
    Start {
        name: String,
        attrs: Vec<(String, String)>,
    },
    End {
        name: String,
    },
    /// Text as written (still escaped), or the raw content of a script, style or textarea.
    Text(&'a str),
}

impl Node<'_> {
    fn attr(&self, wanted: &str) -> Option<&str> {
        match self {
            Node::Start { attrs, .. } => attrs
                .iter()
                .find(|(k, _)| k == wanted)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// Elements whose content is not markup.
const RAW_TEXT: &[&str] = &["script", "style", "textarea", "title"];

/// Splits a document into tags and text.
pub(crate) fn scan(html: &str) -> Vec<Node<'_>> {
    let bytes = html.as_bytes();
    let mut nodes = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    // Every index at which the scanner slices is at an ASCII byte, hence a char boundary.
    while i < bytes.len() {
        if bytes[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &html[i..];
        let next = bytes.get(i + 1).copied().unwrap_or(b' ');
        let tag_end = if rest.starts_with("<!--") {
            Some(rest.find("-->").map_or(html.len(), |e| i + e + 3))
        } else if next == b'!' || next == b'?' {
            Some(rest.find('>').map_or(html.len(), |e| i + e + 1))
        } else if next == b'/' || next.is_ascii_alphabetic() {
            None
        } else {
            // A lone '<' is text.
            i += 1;
            continue;
        };
        if i > text_start {
            nodes.push(Node::Text(&html[text_start..i]));
        }
        if let Some(end) = tag_end {
            i = end;
            text_start = i;
            continue;
        }
        let (node, end) = if next == b'/' {
            let (name, after) = read_name(html, i + 2);
            let close = html[after..]
                .find('>')
                .map_or(html.len(), |e| after + e + 1);
            (Node::End { name }, close)
        } else {
            read_start_tag(html, i + 1)
        };
        i = end;
        text_start = i;
        let raw = match &node {
            Node::Start { name, .. } if RAW_TEXT.contains(&name.as_str()) => Some(name.clone()),
            _ => None,
        };
        nodes.push(node);
        if let Some(name) = raw {
            let closing = format!("</{name}");
            let content_end = html[i..]
                .to_ascii_lowercase()
                .find(&closing)
                .map_or(html.len(), |e| i + e);
            if content_end > i {
                nodes.push(Node::Text(&html[i..content_end]));
            }
            i = content_end;
            text_start = i;
        }
    }
    if text_start < html.len() {
        nodes.push(Node::Text(&html[text_start..]));
    }
    nodes
}

/// Reads a tag or attribute name starting at `from`; returns it lower-cased and where it ends.
fn read_name(html: &str, from: usize) -> (String, usize) {
    let bytes = html.as_bytes();
    let mut end = from;
    while end < bytes.len()
        && !bytes[end].is_ascii_whitespace()
        && !matches!(bytes[end], b'>' | b'/' | b'=')
    {
        end += 1;
    }
    (html[from..end].to_ascii_lowercase(), end)
}

/// Reads a start tag whose name begins at `from`; returns it and the index after its `>`.
fn read_start_tag(html: &str, from: usize) -> (Node<'_>, usize) {
    let bytes = html.as_bytes();
    let (name, mut i) = read_name(html, from);
    let mut attrs = Vec::new();
    loop {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        if bytes[i] == b'>' {
            i += 1;
            break;
        }
        let (attr, after_name) = read_name(html, i);
        i = after_name;
        if attr.is_empty() {
            // A stray '=' where a name should be: skip it rather than loop forever.
            i += 1;
            continue;
        }
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if bytes.get(i) == Some(&b'=') {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            match bytes.get(i) {
                Some(&q @ (b'"' | b'\'')) => {
                    let start = i + 1;
                    let end = html[start..]
                        .find(q as char)
                        .map_or(html.len(), |e| start + e);
                    value = unescape(&html[start..end]);
                    i = (end + 1).min(html.len());
                }
                Some(_) => {
                    let start = i;
                    while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                        i += 1;
                    }
                    value = unescape(&html[start..i]);
                }
                None => {}
            }
        }
        attrs.push((attr, value));
    }
    (Node::Start { name, attrs }, i)
}

/// A form on a page, with the fields a browser would submit if nothing is typed in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub id: Option<String>,
    /// The `action`, resolved against the page URL (the page itself when absent).
    pub action: Url,
    /// `GET` or `POST`, upper-cased.
    pub method: String,
    /// Named fields in document order: inputs (checked ones only for checkboxes and radio
    /// buttons; submit buttons are left out, since only a pressed one is sent) and textareas.
    pub fields: Vec<(String, String)>,
    hidden: usize,
}

impl Form {
    /// The first value of a field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the form carries hidden inputs, as auto-posting forms do.
    pub fn has_hidden_fields(&self) -> bool {
        self.hidden > 0
    }

    /// The fields with `extra` applied: a name already present gets the new value, a new
    /// name is appended (like typing into a field or pressing a named button).
    pub fn fields_with(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut fields = self.fields.clone();
        for (name, value) in extra {
            match fields.iter_mut().find(|(k, _)| k == name) {
                Some(field) => field.1 = (*value).to_owned(),
                None => fields.push(((*name).to_owned(), (*value).to_owned())),
            }
        }
        fields
    }
}

/// A link on a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The visible text, decoded and with whitespace collapsed.
    pub text: String,
    pub href: Url,
}

/// Every form in the document.
pub fn forms(html: &str, page_url: &Url) -> Vec<Form> {
    let nodes = scan(html);
    let mut forms = Vec::new();
    let mut current: Option<Form> = None;
    let mut nodes_iter = nodes.iter().peekable();
    while let Some(node) = nodes_iter.next() {
        match node {
            Node::Start { name, .. } if name == "form" => {
                forms.extend(current.take());
                let action = node
                    .attr("action")
                    .filter(|a| !a.trim().is_empty())
                    .and_then(|a| page_url.join(a.trim()).ok())
                    .unwrap_or_else(|| page_url.clone());
                let method = match node.attr("method") {
                    Some(m) if m.eq_ignore_ascii_case("post") => "POST",
                    _ => "GET",
                };
                current = Some(Form {
                    id: node.attr("id").map(str::to_owned),
                    action,
                    method: method.to_owned(),
                    fields: Vec::new(),
                    hidden: 0,
                });
            }
            Node::End { name } if name == "form" => forms.extend(current.take()),
            Node::Start { name, .. } if name == "input" => {
                let Some(form) = current.as_mut() else {
                    continue;
                };
                let Some(field) = node.attr("name").filter(|n| !n.is_empty()) else {
                    continue;
                };
                let kind = node.attr("type").unwrap_or("text").to_ascii_lowercase();
                let checked = node.attr("checked").is_some();
                let value = node.attr("value");
                match kind.as_str() {
                    "submit" | "button" | "reset" | "image" | "file" => {}
                    "checkbox" | "radio" if !checked => {}
                    "checkbox" | "radio" => {
                        form.fields
                            .push((field.to_owned(), value.unwrap_or("on").to_owned()));
                    }
                    _ => {
                        if kind == "hidden" {
                            form.hidden += 1;
                        }
                        form.fields
                            .push((field.to_owned(), value.unwrap_or_default().to_owned()));
                    }
                }
            }
            Node::Start { name, .. } if name == "textarea" => {
                let Some(form) = current.as_mut() else {
                    continue;
                };
                let Some(field) = node.attr("name").filter(|n| !n.is_empty()) else {
                    continue;
                };
                let text = match nodes_iter.peek() {
                    Some(Node::Text(t)) => unescape(t),
                    _ => String::new(),
                };
                form.fields.push((field.to_owned(), text));
            }
            _ => {}
        }
    }
    forms.extend(current);
    forms
}

/// Every link with an `href` in the document.
pub fn links(html: &str, page_url: &Url) -> Vec<Link> {
    let mut links = Vec::new();
    let mut open: Option<(Url, String)> = None;
    for node in scan(html) {
        match &node {
            Node::Start { name, .. } if name == "a" => {
                links.extend(open.take().map(|(href, text)| finish_link(href, &text)));
                open = node
                    .attr("href")
                    .and_then(|h| page_url.join(h.trim()).ok())
                    .map(|href| (href, String::new()));
            }
            Node::End { name } if name == "a" => {
                links.extend(open.take().map(|(href, text)| finish_link(href, &text)));
            }
            Node::Text(t) => {
                if let Some((_, text)) = open.as_mut() {
                    text.push_str(t);
                }
            }
            _ => {}
        }
    }
    links.extend(open.map(|(href, text)| finish_link(href, &text)));
    links
}

fn finish_link(href: Url, raw_text: &str) -> Link {
    let text = unescape(raw_text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Link { text, href }
}

/// The form a browser with JavaScript would submit by itself as soon as the page loads, the
/// way LTI platforms and tools hand an id_token from one site to the other: the form with
/// `id="lti"`, or, when a script or an event handler calls `.submit()`, the first form with
/// hidden inputs.
pub fn auto_submit_form(html: &str, page_url: &Url) -> Option<Form> {
    let forms = forms(html, page_url);
    if let Some(lti) = forms
        .iter()
        .find(|f| f.id.as_deref() == Some("lti") && f.has_hidden_fields())
    {
        return Some(lti.clone());
    }
    let nodes = scan(html);
    let mut in_script = false;
    let scripted = nodes.iter().any(|node| match node {
        Node::Start { name, attrs } => {
            in_script = name == "script";
            attrs
                .iter()
                .any(|(k, v)| k.starts_with("on") && v.contains(".submit()"))
        }
        Node::End { .. } => {
            in_script = false;
            false
        }
        Node::Text(t) => in_script && t.contains(".submit()"),
    });
    if !scripted {
        return None;
    }
    forms.into_iter().find(Form::has_hidden_fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Url {
        Url::parse("http://127.0.0.1:4000/lms/auth?x=1").unwrap()
    }

    #[test]
    fn escape_and_unescape_round_trip_hostile_text() {
        let hostile = r#"<script>alert("x") & 'y'</script>"#;
        let escaped = escape(hostile);
        assert!(!escaped.contains('<') && !escaped.contains('"') && !escaped.contains('\''));
        assert_eq!(unescape(&escaped), hostile);
    }

    #[test]
    fn unescape_knows_the_usual_references_and_leaves_broken_ones() {
        assert_eq!(
            unescape("a&amp;b&lt;c&gt;d&quot;e&#39;f&#x27;g&#X41;h&#65;"),
            "a&b<c>d\"e'f'gAhA"
        );
        assert_eq!(
            unescape("fish & chips &unknown; &#xZZ; &"),
            "fish & chips &unknown; &#xZZ; &"
        );
        assert_eq!(unescape("caf&eacute;"), "caf&eacute;");
        assert_eq!(unescape("ünï&amp;cödé"), "ünï&cödé");
    }

    #[test]
    fn attributes_in_every_quoting_style() {
        let nodes = scan(
            r#"<INPUT Type=hidden name='id_token' value="a&amp;b" data-x = 'it&#x27;s' disabled>"#,
        );
        let Node::Start { name, attrs } = &nodes[0] else {
            panic!("expected a start tag, got {nodes:?}")
        };
        assert_eq!(name, "input");
        assert_eq!(
            attrs,
            &vec![
                ("type".to_owned(), "hidden".to_owned()),
                ("name".to_owned(), "id_token".to_owned()),
                ("value".to_owned(), "a&b".to_owned()),
                ("data-x".to_owned(), "it's".to_owned()),
                ("disabled".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn auto_post_form_is_found_with_decoded_fields_and_resolved_action() {
        let html = r#"<!doctype html><html><body>
            <!-- <form id="lti" action="/decoy"><input type="hidden" name="x" value="1"></form> -->
            <form id="lti" method="post" action="https://tool.example/launch?a=1&amp;b=2">
              <input type="hidden" name="id_token" value="eyJ.x&quot;y">
              <input type="hidden" name="state" value='s&#39;1'>
              <noscript><button type="submit">Continue</button></noscript>
            </form>
            <script>document.getElementById('lti').submit()</script></body></html>"#;
        let form = auto_submit_form(html, &page()).expect("auto form");
        assert_eq!(form.id.as_deref(), Some("lti"));
        assert_eq!(form.method, "POST");
        assert_eq!(form.action.as_str(), "https://tool.example/launch?a=1&b=2");
        assert_eq!(
            form.fields,
            vec![
                ("id_token".to_owned(), "eyJ.x\"y".to_owned()),
                ("state".to_owned(), "s'1".to_owned())
            ]
        );
    }

    #[test]
    fn scripted_submit_of_an_unnamed_form_counts_but_a_plain_form_does_not() {
        let scripted = r#"<form method=post action=next><input type=hidden name=a value=1></form>
            <script>document.forms[0].submit();</script>"#;
        let form = auto_submit_form(scripted, &page()).expect("scripted form");
        assert_eq!(form.action.as_str(), "http://127.0.0.1:4000/lms/next");
        let onload = r#"<body onload="document.forms[0].submit()"><form method=post>
            <input type=hidden name=a value=1></form>"#;
        assert!(auto_submit_form(onload, &page()).is_some());
        let plain = r#"<form id="grade" method="post"><input type="hidden" name="a" value="1">
            <button>Save</button></form>"#;
        assert_eq!(auto_submit_form(plain, &page()), None);
        let script_mentions_form = r#"<script>var s = '<form id="lti"><input type="hidden" name="a">';
            x.submit()</script>"#;
        assert_eq!(auto_submit_form(script_mentions_form, &page()), None);
    }

    #[test]
    fn forms_collect_fields_like_a_browser() {
        let html = r#"<form id="f" action=""><input name="q" value="1"><input type="checkbox" name="c">
            <input type="checkbox" name="d" checked><input type="submit" name="go" value="Go">
            <textarea name="t">a &lt; b</textarea><input value="no name"></form>"#;
        let forms = forms(html, &page());
        assert_eq!(forms.len(), 1);
        let f = &forms[0];
        assert_eq!(f.method, "GET");
        assert_eq!(f.action, page());
        assert_eq!(
            f.fields,
            vec![
                ("q".to_owned(), "1".to_owned()),
                ("d".to_owned(), "on".to_owned()),
                ("t".to_owned(), "a < b".to_owned())
            ]
        );
        assert!(!f.has_hidden_fields());
        assert_eq!(
            f.fields_with(&[("q", "2"), ("go", "Go")]),
            vec![
                ("q".to_owned(), "2".to_owned()),
                ("d".to_owned(), "on".to_owned()),
                ("t".to_owned(), "a < b".to_owned()),
                ("go".to_owned(), "Go".to_owned())
            ]
        );
    }

    #[test]
    fn links_with_text_and_resolved_targets() {
        let html = r#"<p><a href="launch?user=student-1&amp;resource=resource-1">Launch
            <b>Cell &amp; quiz</b></a> <a name="anchor">x</a><a href='/lms/gradebook'>Gradebook</a>"#;
        let links = links(html, &page());
        assert_eq!(links.len(), 2);
        assert_eq!(links[0].text, "Launch Cell & quiz");
        assert_eq!(
            links[0].href.as_str(),
            "http://127.0.0.1:4000/lms/launch?user=student-1&resource=resource-1"
        );
        assert_eq!(
            links[1].href.as_str(),
            "http://127.0.0.1:4000/lms/gradebook"
        );
    }

    #[test]
    fn truncated_and_odd_markup_does_not_panic() {
        for html in [
            "<",
            "<a",
            "<a href=",
            "<a href='x",
            "<!--",
            "</",
            "<form",
            "<input name=a value",
            "<script>",
            "<textarea name=x>",
            "a < b > c",
            "<a =x>",
            "<é>",
            "<a href=\"é\">é</a>",
        ] {
            let _ = scan(html);
            let _ = forms(html, &page());
            let _ = links(html, &page());
            let _ = auto_submit_form(html, &page());
        }
    }
}
