//! HTML pages. Every interpolated value goes through [`escape`]; pages are small enough
//! that a template engine would cost more build time than it saves.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

/// HTML that is already escaped. Only built by this module's functions and literals.
#[derive(Debug, Clone, Default)]
pub struct Markup(String);

impl Markup {
    /// Trusted markup written in this crate (no user input).
    pub fn raw(s: &'static str) -> Self {
        Self(s.to_owned())
    }

    /// Appends more markup.
    pub fn push(&mut self, m: Markup) -> &mut Self {
        self.0.push_str(&m.0);
        self
    }

    /// `<tag>text</tag>` with the text escaped. `tag` is a literal.
    pub fn element(tag: &'static str, text: &str) -> Self {
        Self(format!("<{tag}>{}</{tag}>", escape(text)))
    }

    /// A definition-list row.
    pub fn row(label: &'static str, value: &str) -> Self {
        Self(format!("<dt>{label}</dt><dd>{}</dd>", escape(value)))
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;color:#1d2733;line-height:1.5}\
h1{font-size:1.4rem}dt{font-weight:600;margin-top:.5rem}dd{margin:0 0 0 1rem;word-break:break-all}\
.note{color:#5a6675;font-size:.9rem}code{background:#eef1f4;padding:0 .25rem;border-radius:3px}";

/// A whole page.
pub fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title><style>{STYLE}</style></head><body>{}</body></html>",
        escape(title),
        body.0
    );
    let mut resp = (status, html).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_break_out() {
        assert_eq!(
            escape(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
        assert_eq!(
            Markup::row("Name", "<b>").0,
            "<dt>Name</dt><dd>&lt;b&gt;</dd>"
        );
    }
}
