//! LTI platform storage (1EdTech "LTI Client Side postMessages" with `lti.put_data` /
//! `lti.get_data`), for browsers that block the tool's cookies inside the LMS iframe.
//!
//! At login, when the platform offers `lti_storage_target`, the browser stores a fresh
//! 256-bit secret in the platform's storage (in the platform's origin, so only this
//! browser has it) before going on to the platform. At the launch, a browser that came back
//! without our state cookie gets a page holding the handoff URL encrypted under that secret:
//! it can only be opened by asking the platform's storage for the secret, which succeeds only
//! in the browser that logged in. A forged cross-site launch post (login CSRF) ends on a page
//! that cannot decrypt anything.

use super::html::escape;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use store::crypto::{MasterKey, random_token};
use url::Url;

/// Associated data for the sealed handoff, so nothing else sealed with the secret opens here.
pub const SEAL_CONTEXT: &str = "lmsbridge-platform-storage";

/// Whether a platform's `lti_storage_target` is a frame name we can address safely.
pub fn valid_target(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The key under which a login's secret is stored in the platform.
pub fn storage_key(state_hash: &str) -> String {
    format!("lmsbridge_state_{}", &state_hash[..32])
}

/// The origin messages are exchanged with: the platform's OIDC authentication endpoint's.
pub fn platform_origin(auth_url: &Url) -> String {
    auth_url.origin().ascii_serialization()
}

/// Encrypts the handoff URL under the login's storage secret.
pub fn seal(secret: &str, next: &Url) -> anyhow::Result<String> {
    use base64::Engine;
    let key = MasterKey::from_base64(secret)?;
    let sealed = key.seal(next.as_str().as_bytes(), SEAL_CONTEXT)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed))
}

const SHARED_JS: &str = r#"
const d = JSON.parse(document.getElementById('lmsb-data').textContent);
const target = d.target === '_parent' ? window.parent : window.parent.frames[d.target];
function ask(message) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { window.removeEventListener('message', on); reject(new Error('timeout')); }, 3000);
    function on(e) {
      if (e.origin !== d.origin || !e.data || e.data.message_id !== message.message_id) return;
      window.removeEventListener('message', on);
      clearTimeout(timer);
      if (e.data.error) reject(new Error(e.data.error.code || 'error')); else resolve(e.data);
    }
    window.addEventListener('message', on);
    if (!target) { clearTimeout(timer); reject(new Error('no storage frame')); return; }
    target.postMessage(message, d.origin);
  });
}
function id() { return (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)); }
"#;

const PUT_JS: &str = r#"
ask({subject: 'lti.put_data', message_id: id(), key: d.key, value: d.secret})
  .catch(() => {})
  .finally(() => { window.location.replace(d.next); });
"#;

const GET_JS: &str = r#"
function bytes(s) {
  s = s.replace(/-/g, '+').replace(/_/g, '/');
  s += '='.repeat((4 - s.length % 4) % 4);
  return Uint8Array.from(atob(s), c => c.charCodeAt(0));
}
ask({subject: 'lti.get_data', message_id: id(), key: d.key})
  .then(async (r) => {
    const key = await crypto.subtle.importKey('raw', bytes(r.value), 'AES-GCM', false, ['decrypt']);
    const sealed = bytes(d.sealed);
    const plain = await crypto.subtle.decrypt(
      {name: 'AES-GCM', iv: sealed.slice(1, 13), additionalData: new TextEncoder().encode(d.context)},
      key, sealed.slice(13));
    window.location.replace(new TextDecoder().decode(plain));
  })
  .catch(() => {
    document.getElementById('waiting').hidden = true;
    document.getElementById('failed').hidden = false;
  });
"#;

/// JSON for a `<script type="application/json">` element: nothing in it can close the element.
fn embed_json(v: &serde_json::Value) -> String {
    v.to_string().replace('<', "\\u003c")
}

fn script_page(title: &str, visible: &str, data: &serde_json::Value, script: &str) -> Response {
    let nonce = random_token(16);
    let data = embed_json(data);
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head><body>{visible}\
         <script type=\"application/json\" id=\"lmsb-data\">{data}</script>\
         <script nonce=\"{nonce}\">{SHARED_JS}{script}</script></body></html>",
        title = escape(title),
    );
    let mut resp = (StatusCode::OK, html).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(csp) = HeaderValue::from_str(&format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; frame-ancestors *; base-uri 'none'; form-action 'none'"
    )) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    resp
}

/// The login page: store the secret in the platform, then go on to the platform's
/// authentication endpoint (which also happens if storage is unavailable: a cookie may work).
pub fn put_page(next: &Url, origin: &str, target: &str, key: &str, secret: &str) -> Response {
    let data = serde_json::json!({
        "next": next.as_str(), "origin": origin, "target": target, "key": key, "secret": secret,
    });
    let visible = format!(
        "<p>Opening the activity… <a href=\"{}\">continue</a></p>",
        escape(next.as_str())
    );
    script_page("Opening the activity", &visible, &data, PUT_JS)
}

/// The launch page for a browser without our cookie: fetch the secret from the platform and
/// open the sealed handoff.
pub fn get_page(sealed: &str, origin: &str, target: &str, key: &str) -> Response {
    let data = serde_json::json!({
        "sealed": sealed, "origin": origin, "target": target, "key": key, "context": SEAL_CONTEXT,
    });
    let visible = "<p id=\"waiting\">Opening the activity…</p>\
        <div id=\"failed\" hidden><h1>The activity could not be opened</h1>\
        <p>Your browser did not keep this launch's session. Please open the activity again, or in a new window.</p>\
        <dl><dt>Check that failed</dt><dd>state_not_in_platform_storage</dd></dl></div>";
    script_page("Opening the activity", visible, &data, GET_JS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_keys() {
        assert!(valid_target("_parent"));
        assert!(valid_target("post_message_forwarding"));
        assert!(!valid_target("x'); alert(1)//"));
        assert!(!valid_target(""));
        assert_eq!(
            platform_origin(
                &Url::parse("https://sso.canvaslms.com/api/lti/authorize_redirect").unwrap()
            ),
            "https://sso.canvaslms.com"
        );
    }

    #[test]
    fn data_cannot_close_the_script_element() {
        let embedded = embed_json(&serde_json::json!({"x": "</script><script>alert(1)</script>"}));
        assert!(!embedded.contains('<'));
        let back: serde_json::Value = serde_json::from_str(&embedded).unwrap();
        assert_eq!(back["x"], "</script><script>alert(1)</script>");
        let resp = put_page(
            &Url::parse("https://lms.example/auth?x=</script><script>alert(1)</script>").unwrap(),
            "https://lms.example",
            "_parent",
            "k",
            "s",
        );
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("script-src 'nonce-"));
        assert!(
            !csp.contains("unsafe-inline'; script") && !csp.contains("script-src 'unsafe-inline'")
        );
    }
}
