//! A scripted browser for tests that walk an LTI launch the way a person's browser does,
//! without running JavaScript.
//!
//! It keeps cookies, follows redirects itself (so every hop sends and stores cookies, as a
//! browser does, which reqwest's own redirect handling would not), and submits the
//! self-posting forms that LTI uses to carry an id_token from the platform to the tool.
//! Cookies are kept per host only: tests run everything on 127.0.0.1, and the launch flow
//! depends on the tool's state cookie coming back on the platform's form post.

use crate::html::{self, Form, Link};
use http::{HeaderMap, Method, StatusCode, header};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use url::Url;

/// Redirects followed for one navigation before giving up.
const MAX_REDIRECTS: usize = 10;
/// Self-submitting forms submitted for one navigation before stopping to let the test look.
const MAX_AUTO_SUBMITS: usize = 5;

/// Why a navigation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrowserError {
    #[error("not a URL: {0}")]
    BadUrl(String),
    #[error("request to {url} failed: {source}")]
    Transport {
        url: Url,
        #[source]
        source: reqwest::Error,
    },
    #[error("more than {MAX_REDIRECTS} redirects, the last to {0}")]
    TooManyRedirects(Url),
    #[error("the page {page} has no form with id {form:?}")]
    NoSuchForm { page: Url, form: String },
    #[error("the page {page} has no link containing {text:?}")]
    NoSuchLink { page: Url, text: String },
}

/// A browser: one cookie jar, no JavaScript, forms that submit themselves are submitted.
/// Clones share the cookie jar, like tabs of one browser.
#[derive(Clone)]
pub struct Browser {
    http: reqwest::Client,
    cookies: Arc<Mutex<HashMap<String, BTreeMap<String, String>>>>,
}

impl fmt::Debug for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Cookie values are session secrets; their names are enough to debug with.
        let names: Vec<String> = self
            .jar()
            .iter()
            .flat_map(|(host, cookies)| cookies.keys().map(move |name| format!("{host}:{name}")))
            .collect();
        f.debug_struct("Browser").field("cookies", &names).finish()
    }
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

/// One request of a navigation.
#[derive(Debug, Clone)]
struct Request {
    method: Method,
    url: Url,
    /// A form-encoded body, for POST.
    form: Option<String>,
}

impl Browser {
    /// A browser with an empty cookie jar.
    ///
    /// # Panics
    /// When the HTTP client cannot be built, which only happens when the TLS backend
    /// cannot initialise.
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .user_agent("lmsbridge-testkit-browser")
            .build()
            .expect("the browser's HTTP client could not be built");
        Self {
            http,
            cookies: Arc::default(),
        }
    }

    /// Loads a page, following redirects and self-submitting forms.
    pub async fn get(&self, url: impl AsRef<str>) -> Result<Page, BrowserError> {
        let url = parse_url(url.as_ref())?;
        self.navigate(Request {
            method: Method::GET,
            url,
            form: None,
        })
        .await
    }

    /// Posts a form, following redirects and self-submitting forms.
    pub async fn post_form(
        &self,
        url: impl AsRef<str>,
        fields: &[(&str, &str)],
    ) -> Result<Page, BrowserError> {
        let url = parse_url(url.as_ref())?;
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.navigate(Request {
            method: Method::POST,
            url,
            form: Some(encode_form(&fields)),
        })
        .await
    }

    /// Submits a form as the browser would, with these fields.
    pub async fn submit_form(
        &self,
        form: &Form,
        fields: &[(String, String)],
    ) -> Result<Page, BrowserError> {
        self.navigate(form_request(form, fields)).await
    }

    /// The value of a cookie the browser holds for `host`.
    pub fn cookie(&self, host: &str, name: &str) -> Option<String> {
        self.jar().get(host).and_then(|c| c.get(name)).cloned()
    }

    /// Forgets every cookie, like a new private window.
    pub fn clear_cookies(&self) {
        self.jar().clear();
    }

    fn jar(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<String, String>>> {
        self.cookies.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn navigate(&self, mut request: Request) -> Result<Page, BrowserError> {
        let mut trail = Vec::new();
        let mut redirects = 0;
        let mut auto_submits = 0;
        loop {
            let response = self.send(&request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let location = headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| request.url.join(l).ok());
            let redirect = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
            if let (true, Some(next)) = (redirect, location) {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(BrowserError::TooManyRedirects(next));
                }
                // RFC 9110 §15.4: 307 and 308 repeat the request; browsers turn a POST
                // answered with 301, 302 or 303 into a GET.
                let keep_method = matches!(
                    status,
                    StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
                );
                trail.push(std::mem::replace(&mut request.url, next));
                if !keep_method {
                    request.method = Method::GET;
                    request.form = None;
                }
                continue;
            }
            let body = response
                .text()
                .await
                .map_err(|source| BrowserError::Transport {
                    url: request.url.clone(),
                    source,
                })?;
            let is_html = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("text/html"));
            if status == StatusCode::OK
                && is_html
                && auto_submits < MAX_AUTO_SUBMITS
                && let Some(form) = html::auto_submit_form(&body, &request.url)
            {
                auto_submits += 1;
                trail.push(request.url.clone());
                request = form_request(&form, &form.fields);
                continue;
            }
            return Ok(Page {
                url: request.url,
                status: status.as_u16(),
                headers,
                body,
                trail,
                browser: self.clone(),
            });
        }
    }

    async fn send(&self, request: &Request) -> Result<reqwest::Response, BrowserError> {
        let mut builder = self
            .http
            .request(request.method.clone(), request.url.clone());
        if let Some(cookie) = self.cookie_header(&request.url) {
            builder = builder.header(header::COOKIE, cookie);
        }
        if let Some(form) = &request.form {
            builder = builder
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form.clone());
        }
        let response = builder
            .send()
            .await
            .map_err(|source| BrowserError::Transport {
                url: request.url.clone(),
                source,
            })?;
        self.store_cookies(&request.url, response.headers());
        Ok(response)
    }

    fn cookie_header(&self, url: &Url) -> Option<String> {
        let jar = self.jar();
        let cookies = jar.get(url.host_str()?)?;
        (!cookies.is_empty()).then(|| {
            cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn store_cookies(&self, url: &Url, headers: &HeaderMap) {
        let Some(host) = url.host_str() else { return };
        let mut jar = self.jar();
        let cookies = jar.entry(host.to_owned()).or_default();
        for value in headers.get_all(header::SET_COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            match parse_set_cookie(value, SystemTime::now()) {
                Some(SetCookie::Store(name, value)) => {
                    cookies.insert(name, value);
                }
                Some(SetCookie::Remove(name)) => {
                    cookies.remove(&name);
                }
                None => {}
            }
        }
    }
}

/// What a `Set-Cookie` header asks for.
#[derive(Debug, PartialEq, Eq)]
enum SetCookie {
    Store(String, String),
    Remove(String),
}

/// Reads `name=value` and the attributes that delete a cookie (`Max-Age` ≤ 0, an `Expires`
/// in the past); the others (Path, Domain, SameSite, Secure, HttpOnly) are ignored.
fn parse_set_cookie(header: &str, now: SystemTime) -> Option<SetCookie> {
    let mut parts = header.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    let mut expired = false;
    let mut max_age_seen = false;
    for attr in parts {
        let (key, val) = attr.split_once('=').unwrap_or((attr, ""));
        let (key, val) = (key.trim(), val.trim());
        if key.eq_ignore_ascii_case("max-age") {
            // RFC 6265 §5.3 step 3: Max-Age wins over Expires.
            max_age_seen = true;
            expired = val.parse::<i64>().is_ok_and(|secs| secs <= 0);
        } else if key.eq_ignore_ascii_case("expires") && !max_age_seen {
            expired = httpdate::parse_http_date(val).is_ok_and(|when| when <= now);
        }
    }
    Some(if expired {
        SetCookie::Remove(name.to_owned())
    } else {
        SetCookie::Store(name.to_owned(), value.trim().to_owned())
    })
}

fn parse_url(url: &str) -> Result<Url, BrowserError> {
    Url::parse(url).map_err(|_| BrowserError::BadUrl(url.to_owned()))
}

fn encode_form(fields: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// The request a browser sends when a form is submitted: a GET replaces the action's query
/// with the fields, a POST sends them form-encoded.
fn form_request(form: &Form, fields: &[(String, String)]) -> Request {
    if form.method == "POST" {
        Request {
            method: Method::POST,
            url: form.action.clone(),
            form: Some(encode_form(fields)),
        }
    } else {
        let mut url = form.action.clone();
        url.set_query(Some(&encode_form(fields)));
        Request {
            method: Method::GET,
            url,
            form: None,
        }
    }
}

/// A page the browser ended on.
#[derive(Debug, Clone)]
pub struct Page {
    /// Where the page came from, after redirects and self-submitting forms.
    pub url: Url,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    /// Every URL requested on the way, in order, the final one excluded.
    pub trail: Vec<Url>,
    browser: Browser,
}

impl Page {
    /// A response header's value, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every form on the page.
    pub fn forms(&self) -> Vec<Form> {
        html::forms(&self.body, &self.url)
    }

    /// The form with this `id`.
    pub fn form(&self, id: &str) -> Option<Form> {
        self.forms()
            .into_iter()
            .find(|f| f.id.as_deref() == Some(id))
    }

    /// Every link on the page.
    pub fn links(&self) -> Vec<Link> {
        html::links(&self.body, &self.url)
    }

    /// Submits the form with this `id`, with `extra` typed in (or a named button pressed).
    pub async fn submit(
        &self,
        form_id: &str,
        extra: &[(&str, &str)],
    ) -> Result<Page, BrowserError> {
        let form = self.form(form_id).ok_or_else(|| BrowserError::NoSuchForm {
            page: self.url.clone(),
            form: form_id.to_owned(),
        })?;
        self.browser
            .submit_form(&form, &form.fields_with(extra))
            .await
    }

    /// Follows the first link whose text contains `text`.
    pub async fn click(&self, text: &str) -> Result<Page, BrowserError> {
        let link = self
            .links()
            .into_iter()
            .find(|l| l.text.contains(text))
            .ok_or_else(|| BrowserError::NoSuchLink {
                page: self.url.clone(),
                text: text.to_owned(),
            })?;
        self.browser.get(link.href).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookie_store_and_removal() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        assert_eq!(
            parse_set_cookie(
                "lti_state=abc=; Path=/; SameSite=None; Secure; HttpOnly",
                now
            ),
            Some(SetCookie::Store("lti_state".into(), "abc=".into()))
        );
        assert_eq!(
            parse_set_cookie("s=; Max-Age=0", now),
            Some(SetCookie::Remove("s".into()))
        );
        assert_eq!(
            parse_set_cookie("s=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT", now),
            Some(SetCookie::Remove("s".into()))
        );
        // Max-Age wins over Expires, whichever comes first.
        assert_eq!(
            parse_set_cookie(
                "s=x; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                now
            ),
            Some(SetCookie::Store("s".into(), "x".into()))
        );
        assert_eq!(parse_set_cookie("no equals sign", now), None);
        assert_eq!(parse_set_cookie("=x", now), None);
    }

    #[test]
    fn get_forms_put_fields_in_the_query() {
        let form = html::forms(
            r#"<form id="s" action="/search?old=1"><input name="q" value="a b"></form>"#,
            &Url::parse("http://127.0.0.1/x").unwrap(),
        )
        .remove(0);
        let req = form_request(&form, &form.fields);
        assert_eq!(req.method, Method::GET);
        assert_eq!(req.url.as_str(), "http://127.0.0.1/search?q=a+b");
        assert!(req.form.is_none());
    }
}
