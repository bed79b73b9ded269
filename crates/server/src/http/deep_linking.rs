//! Deep Linking 2.0 (1EdTech LTI Deep Linking 2.0 §4): lmsbridge's content picker.
//!
//! A validated `LtiDeepLinkingRequest` is recorded like any launch (nonce, deployment,
//! person, course) and then, instead of the product handoff, the teacher is sent here: the
//! tenant's catalog, narrowed to the item types the platform accepts. The page is bound to
//! that launch by a picker token, sealed with the master key like the login state, that
//! carries what the response needs (registration, deployment, return URL, `data`, settings);
//! it lives for minutes and is single use in the store. Submitting builds the
//! `LtiDeepLinkingResponse` (the `lti` crate refuses what the settings forbid, DL §4.4.1),
//! signs it with the keyring's current key, and answers with a form that posts it to the
//! platform's `deep_link_return_url` (DL §4.5). "Cancel" sends a response without items.
//!
//! A refused selection shows the picker again with the reason and leaves the token unused.

use super::error::LaunchFailure;
use super::html::{Markup, escape, page};
use super::storage;
use crate::App;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use domain::{Actor, ActorKind, LaunchId, PersonId, PlatformId, TenantId};
use lti::claims::DeepLinkingSettingsClaim;
use lti::deep_linking::{
    ContentItem, DeepLinkingError, FileItem, HtmlItem, ImageItem, LineItem, LinkItem,
    ResourceLinkItem, ResponseBuilder, ResponseParties,
};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use store::crypto::{MasterKey, random_token};
use store::{
    CatalogItem, CatalogItemId, CatalogItemType, PlatformRegistration, RecordedLaunch, TenantScope,
    now_micros,
};
use url::Url;

/// Associated data of sealed picker tokens, so nothing else sealed with the master key opens
/// as one.
const SEAL_CONTEXT: &str = "lmsbridge-deep-linking-picker";
/// How long a teacher has to choose.
const PICKER_TTL_SECS: i64 = 15 * 60;
/// Tokens longer than this are not ours (ours are a few kilobytes at most).
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// The most items one response may carry.
const MAX_SELECTED: usize = 50;
/// The custom parameter that tells the product which catalog item a placed link is.
pub const CUSTOM_CATALOG_ITEM: &str = "lmsbridge_catalog_item";

/// What a picker page is bound to. Sealed into the page; never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PickerToken {
    /// Its single-use key in the store.
    jti: String,
    tenant_id: TenantId,
    platform_id: PlatformId,
    deployment_id: String,
    launch_id: LaunchId,
    person_id: Option<PersonId>,
    settings: DeepLinkingSettingsClaim,
    /// Microseconds since the epoch.
    expires_at: i64,
}

fn seal(master: &MasterKey, token: &PickerToken) -> anyhow::Result<String> {
    use base64::Engine;
    let json = serde_json::to_vec(token)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(master.seal(&json, SEAL_CONTEXT)?))
}

fn open(master: &MasterKey, sealed: &str) -> Result<PickerToken, PickerError> {
    use base64::Engine;
    if sealed.len() > MAX_TOKEN_LEN {
        return Err(PickerError::TokenInvalid);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|_| PickerError::TokenInvalid)?;
    let json = master
        .open(&bytes, SEAL_CONTEXT)
        .map_err(|_| PickerError::TokenInvalid)?;
    let token: PickerToken =
        serde_json::from_slice(&json).map_err(|_| PickerError::TokenInvalid)?;
    if token.expires_at <= now_micros() {
        return Err(PickerError::TokenExpired);
    }
    Ok(token)
}

/// Only a web page can receive the response form; anything else (a `javascript:` URL) is
/// refused even though the platform signed it.
fn web_url(u: &str) -> Option<Url> {
    Url::parse(u)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// Called by the launch for an `LtiDeepLinkingRequest` once it is recorded: sends the
/// browser to the picker, through the platform-storage page when the launch was bound that
/// way rather than by our cookie.
pub(super) fn open_picker(
    app: &App,
    registration: &PlatformRegistration,
    claims: &lti::LaunchClaims,
    recorded: &RecordedLaunch,
    storage_binding: Option<(String, String)>,
    state_hash: &str,
) -> Result<Response, LaunchFailure> {
    let settings = claims
        .deep_linking_settings
        .clone()
        .ok_or(LaunchFailure::Token(lti::LaunchError::MissingClaim(
            "deep_linking_settings",
        )))?;
    if web_url(&settings.deep_link_return_url).is_none() {
        return Err(LaunchFailure::Token(lti::LaunchError::InvalidClaim(
            "deep_link_return_url",
        )));
    }
    let token = PickerToken {
        jti: random_token(32),
        tenant_id: registration.scope.tenant_id(),
        platform_id: registration.platform.id,
        deployment_id: claims.deployment_id.clone(),
        launch_id: recorded.launch_id,
        person_id: recorded.person_id,
        settings,
        expires_at: now_micros() + PICKER_TTL_SECS * 1_000_000,
    };
    let mut picker = app.settings().public("lti/deep_linking");
    picker.query_pairs_mut().append_pair(
        "token",
        &seal(&app.inner().master, &token).map_err(LaunchFailure::Internal)?,
    );
    Ok(match storage_binding {
        None => Redirect::to(picker.as_str()).into_response(),
        Some((target, secret)) => storage::get_page(
            &storage::seal(&secret, &picker).map_err(LaunchFailure::Internal)?,
            &storage::platform_origin(&registration.platform.auth_url),
            &target,
            &storage::storage_key(state_hash),
        ),
    })
}

/// Why a picker request was refused before any choice could be looked at.
#[derive(Debug)]
pub enum PickerError {
    TokenMissing,
    TokenInvalid,
    TokenExpired,
    TokenUsed,
    RegistrationUnknown,
    Internal(anyhow::Error),
}

impl PickerError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::TokenMissing => (
                StatusCode::BAD_REQUEST,
                "picker_token_missing",
                "This page can only be opened from the LMS.",
            ),
            Self::TokenInvalid => (
                StatusCode::BAD_REQUEST,
                "picker_token_invalid",
                "This selection page is not valid. Please open it again from the LMS.",
            ),
            Self::TokenExpired => (
                StatusCode::BAD_REQUEST,
                "picker_token_expired",
                "This selection page has expired. Please open it again from the LMS.",
            ),
            Self::TokenUsed => (
                StatusCode::CONFLICT,
                "picker_token_used",
                "This selection was already sent to the LMS. To add more, open the selection again from the LMS.",
            ),
            Self::RegistrationUnknown => (
                StatusCode::BAD_REQUEST,
                "registration_unknown",
                "This tool is no longer set up for this LMS.",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Something went wrong on our side.",
            ),
        }
    }
}

impl IntoResponse for PickerError {
    fn into_response(self) -> Response {
        let (status, code, sentence) = self.parts();
        let id = uuid::Uuid::new_v4().simple().to_string();
        match &self {
            Self::Internal(e) => {
                tracing::error!(correlation_id = %id, code, error = %format!("{e:#}"), "deep linking failed");
            }
            _ => tracing::warn!(correlation_id = %id, code, "deep linking refused"),
        }
        let mut body = Markup::element("h1", "The content could not be added");
        body.push(Markup::element("p", sentence));
        body.push(Markup::raw("<p class=\"note\">If this keeps happening, give your LMS administrator this information:</p><dl>"));
        body.push(Markup::row("Check that failed", code));
        body.push(Markup::row("Reference", &id));
        body.push(Markup::raw("</dl>"));
        page(status, "Content not added", body)
    }
}

impl From<store::StoreError> for PickerError {
    fn from(e: store::StoreError) -> Self {
        Self::Internal(e.into())
    }
}

/// The token's registration and tenant scope, as the store knows them now.
async fn bound(app: &App, token: &PickerToken) -> Result<PlatformRegistration, PickerError> {
    let resolved = app
        .inner()
        .registrations
        .by_id(token.platform_id)
        .await?
        .ok_or(PickerError::RegistrationUnknown)?;
    let registration = resolved.registration.clone();
    // Sealed by us, so this holds; checked anyway so a scope never comes from the token alone.
    if registration.scope.tenant_id() != token.tenant_id {
        return Err(PickerError::TokenInvalid);
    }
    Ok(registration)
}

/// The catalog items this request can place: not archived, of a type the platform accepts.
async fn offered(
    app: &App,
    scope: &TenantScope,
    settings: &DeepLinkingSettingsClaim,
) -> Result<Vec<CatalogItem>, PickerError> {
    Ok(app
        .store()
        .tenant(scope)
        .catalog_items(false)
        .await?
        .into_iter()
        .filter(|i| {
            settings
                .accept_types
                .iter()
                .any(|t| t == i.item_type.as_str())
        })
        .collect())
}

/// `GET /lti/deep_linking?token=…`: the picker.
pub async fn picker(
    State(app): State<App>,
    RawQuery(query): RawQuery,
) -> Result<Response, PickerError> {
    let sealed = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .ok_or(PickerError::TokenMissing)?;
    let token = open(&app.inner().master, &sealed)?;
    let registration = bound(&app, &token).await?;
    let items = offered(&app, &registration.scope, &token.settings).await?;
    Ok(picker_page(
        &app,
        StatusCode::OK,
        &sealed,
        &token.settings,
        &items,
        None,
    ))
}

/// `POST /lti/deep_linking`: the teacher's choice (`item`, repeated) or `action=cancel`.
pub async fn submit(State(app): State<App>, body: Bytes) -> Result<Response, PickerError> {
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let sealed = field("token").ok_or(PickerError::TokenMissing)?.clone();
    let token = open(&app.inner().master, &sealed)?;
    let registration = bound(&app, &token).await?;
    let cancelled = field("action").is_some_and(|a| a == "cancel");
    let offered = offered(&app, &registration.scope, &token.settings).await?;
    let refuse = |code: &'static str, message: &str| {
        tracing::info!(code, "deep linking selection refused");
        picker_page(
            &app,
            StatusCode::UNPROCESSABLE_ENTITY,
            &sealed,
            &token.settings,
            &offered,
            Some((code, message)),
        )
    };

    let mut chosen: Vec<&CatalogItem> = Vec::new();
    if !cancelled {
        for (_, value) in fields.iter().filter(|(k, _)| k == "item") {
            // Only what this page offered can be chosen: an id from another tenant's catalog,
            // an archived item or a type the platform refuses is simply not there.
            let Some(item) = value
                .parse::<CatalogItemId>()
                .ok()
                .and_then(|id| offered.iter().find(|i| i.id == id))
            else {
                return Ok(refuse(
                    "item_not_offered",
                    "One of the chosen items is not in this catalog any more. Please choose again.",
                ));
            };
            if !chosen.iter().any(|c| c.id == item.id) {
                chosen.push(item);
            }
        }
        if chosen.is_empty() {
            return Ok(refuse(
                "nothing_chosen",
                "Choose at least one item, or press Cancel.",
            ));
        }
        if chosen.len() > MAX_SELECTED {
            return Ok(refuse(
                "too_many_chosen",
                "Too many items were chosen at once; add them in smaller groups.",
            ));
        }
    }

    let platform = &registration.platform;
    let parties = ResponseParties {
        client_id: platform.client_id.clone(),
        platform_issuer: platform.issuer.clone(),
        deployment_id: token.deployment_id.clone(),
    };
    let items = chosen
        .iter()
        .map(|i| content_item(&app, i, &token.settings));
    let builder = ResponseBuilder::new(parties, &token.settings).items(items);
    let builder = if cancelled {
        builder
            .msg("No content was added.")
            .log("the selection was cancelled in lmsbridge's picker")
    } else {
        let n = chosen.len();
        builder.msg(format!("{n} item{} added.", if n == 1 { "" } else { "s" }))
    };
    let claims = match builder.build(now_micros() / 1_000_000) {
        Ok(c) => c,
        Err(e) => return Ok(refuse(e.code(), &refusal_sentence(&e))),
    };
    let key = app
        .keyring()
        .current()
        .ok_or_else(|| PickerError::Internal(anyhow::anyhow!("no tool key is current")))?;
    let jwt = claims
        .sign(&key)
        .map_err(|e| PickerError::Internal(e.into()))?;

    let actor = match token.person_id {
        Some(p) => Actor {
            kind: ActorKind::Instructor,
            id: p.to_string(),
        },
        None => Actor::system("deep-linking"),
    };
    let first_use = app
        .store()
        .tenant(&registration.scope)
        .use_picker_token(
            &token.jti,
            token.expires_at,
            &actor,
            format!("launch:{}", token.launch_id),
            serde_json::json!({
                "platform_id": platform.id,
                "deployment_id": token.deployment_id,
                "cancelled": cancelled,
                "items": chosen.iter().map(|i| i.id).collect::<Vec<_>>(),
                "kid": key.kid(),
            }),
        )
        .await?;
    if !first_use {
        return Err(PickerError::TokenUsed);
    }
    tracing::info!(
        launch = %token.launch_id,
        platform = %platform.id,
        items = chosen.len(),
        cancelled,
        "deep linking response sent"
    );
    // Checked when the token was made; a token only opens unaltered.
    let return_url =
        web_url(&token.settings.deep_link_return_url).ok_or(PickerError::TokenInvalid)?;
    Ok(response_page(&return_url, &jwt))
}

/// What a catalog item becomes in the response.
fn content_item(app: &App, item: &CatalogItem, settings: &DeepLinkingSettingsClaim) -> ContentItem {
    let title = Some(item.title.clone());
    match item.item_type {
        CatalogItemType::LtiResourceLink => {
            let mut custom = item.custom.clone();
            custom.insert(CUSTOM_CATALOG_ITEM.to_owned(), item.id.to_string());
            ContentItem::LtiResourceLink(ResourceLinkItem {
                // Launches of the placed link come back through lmsbridge (the only target a
                // login accepts), which hands them to the product with the custom parameters.
                url: Some(app.inner().launch_url.clone()),
                title: title.clone(),
                text: item.text.clone(),
                custom,
                // A platform that says it ignores line items gets the link without one.
                line_item: item
                    .score_maximum
                    .filter(|_| settings.accept_lineitem != Some(false))
                    .map(|score_maximum| LineItem {
                        label: title,
                        score_maximum,
                        resource_id: Some(item.id.to_string()),
                        tag: None,
                        grades_released: None,
                    }),
                ..ResourceLinkItem::default()
            })
        }
        CatalogItemType::Link => ContentItem::Link(LinkItem {
            url: item.url.clone(),
            title,
            text: item.text.clone(),
            icon: None,
            thumbnail: None,
            embed: None,
            window: None,
            iframe: None,
        }),
        CatalogItemType::Html => ContentItem::Html(HtmlItem {
            html: item.text.clone().unwrap_or_default(),
            title,
            text: None,
        }),
        CatalogItemType::File => ContentItem::File(FileItem {
            url: item.url.clone(),
            title,
            text: item.text.clone(),
            icon: None,
            thumbnail: None,
            expires_at: None,
        }),
        CatalogItemType::Image => ContentItem::Image(ImageItem {
            url: item.url.clone(),
            title,
            text: item.text.clone(),
            icon: None,
            thumbnail: None,
            width: None,
            height: None,
        }),
    }
}

/// The teacher-facing sentence for a refused selection.
fn refusal_sentence(e: &DeepLinkingError) -> String {
    match e {
        DeepLinkingError::MultipleNotAccepted { .. } => {
            "The course accepts only one item here. Choose one.".to_owned()
        }
        DeepLinkingError::TypeNotAccepted { .. } => {
            "The course does not accept that kind of content here.".to_owned()
        }
        DeepLinkingError::PresentationNotAccepted { .. } => {
            "The course cannot show that content the way it asks to be shown.".to_owned()
        }
        DeepLinkingError::LineItemNotAccepted { .. } => {
            "The course does not accept graded items here.".to_owned()
        }
        _ => "One of the chosen items cannot be added to this course.".to_owned(),
    }
}

fn kind_label(t: CatalogItemType) -> &'static str {
    match t {
        CatalogItemType::LtiResourceLink => "Activity",
        CatalogItemType::Link => "Link",
        CatalogItemType::Html => "Text",
        CatalogItemType::File => "File",
        CatalogItemType::Image => "Image",
    }
}

/// `frame-ancestors` for pages shown in the platform's frame: the platform's web origin (the
/// return URL's, which is the page the teacher is on) and ours.
fn frame_ancestors(settings: &DeepLinkingSettingsClaim) -> String {
    match web_url(&settings.deep_link_return_url) {
        Some(u) => format!("'self' {}", u.origin().ascii_serialization()),
        None => "'self'".to_owned(),
    }
}

fn html_response(status: StatusCode, html: String, csp: &str) -> Response {
    let mut resp = (status, html).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

const PICKER_STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:44rem;margin:1.5rem auto;padding:0 1rem;color:#1d2733;line-height:1.5}\
h1{font-size:1.35rem}ul{list-style:none;padding:0}li{border:1px solid #d5dbe1;border-radius:6px;padding:.6rem .8rem;margin:.5rem 0}\
.kind,.points,.note{color:#5a6675;font-size:.9rem}.title{font-weight:600}.text{margin:.3rem 0 0 1.6rem}\
.error{border-left:4px solid #b42318;padding:.4rem .8rem;background:#fef3f2}button{font-size:1rem;padding:.4rem 1rem;margin-right:.5rem}\
form.inline{display:inline}";

/// The picker: the offered items with checkboxes (radio buttons when the platform takes one
/// item), "Add selected" and "Cancel".
fn picker_page(
    app: &App,
    status: StatusCode,
    sealed: &str,
    settings: &DeepLinkingSettingsClaim,
    items: &[CatalogItem],
    problem: Option<(&'static str, &str)>,
) -> Response {
    let nonce = random_token(16);
    let action = app.settings().public("lti/deep_linking");
    let action = escape(action.as_str());
    let token = escape(sealed);
    let input_type = if settings.accept_multiple == Some(true) {
        "checkbox"
    } else {
        "radio"
    };
    let mut body = String::from("<h1>Add content to the course</h1>");
    // The platform's own words about this placement, escaped like everything else.
    if let Some(t) = settings.title.as_deref().filter(|t| !t.is_empty()) {
        let _ = write!(body, "<p class=\"note\">{}</p>", escape(t));
    }
    if let Some(t) = settings.text.as_deref().filter(|t| !t.is_empty()) {
        let _ = write!(body, "<p class=\"note\">{}</p>", escape(t));
    }
    if let Some((code, message)) = problem {
        let _ = write!(
            body,
            "<div class=\"error\" role=\"alert\" id=\"problem\" data-code=\"{code}\"><p>{}</p><p class=\"note\">Check that failed: {code}</p></div>",
            escape(message)
        );
    }
    if items.is_empty() {
        body.push_str(
            "<p id=\"empty\">There is nothing in the catalog that can be added here.</p>",
        );
    } else {
        let _ = write!(
            body,
            "<form id=\"picker\" method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"token\" value=\"{token}\"><ul>"
        );
        for item in items {
            let _ = write!(
                body,
                "<li><label><input type=\"{input_type}\" name=\"item\" value=\"{id}\"> <span class=\"title\">{title}</span> <span class=\"kind\">{kind}</span>",
                id = escape(&item.id.to_string()),
                title = escape(&item.title),
                kind = kind_label(item.item_type),
            );
            if let Some(max) = item.score_maximum {
                let _ = write!(
                    body,
                    " <span class=\"points\">· graded, {max} points</span>"
                );
            }
            body.push_str("</label>");
            // An html item's text is markup for the platform: not rendered here.
            if let (Some(text), false) = (&item.text, item.item_type == CatalogItemType::Html) {
                let _ = write!(body, "<p class=\"text\">{}</p>", escape(text));
            }
            body.push_str("</li>");
        }
        body.push_str(
            "</ul><button type=\"submit\" name=\"action\" value=\"select\">Add selected</button></form>",
        );
    }
    let _ = write!(
        body,
        "<form id=\"cancel\" class=\"inline\" method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"token\" value=\"{token}\"><input type=\"hidden\" name=\"action\" value=\"cancel\"><button type=\"submit\">Cancel</button></form>"
    );
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>Add content</title><style nonce=\"{nonce}\">{PICKER_STYLE}</style></head><body>{body}</body></html>"
    );
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self' data:; form-action 'self'; frame-ancestors {}; base-uri 'none'",
        frame_ancestors(settings)
    );
    html_response(status, html, &csp)
}

/// The page that carries the signed response to the platform: a form posted by script at
/// once, with a button for browsers without it.
fn response_page(return_url: &Url, jwt: &str) -> Response {
    let nonce = random_token(16);
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Returning to the course</title></head><body>\
         <p>Returning to the course…</p>\
         <form id=\"lti\" method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"JWT\" value=\"{jwt}\">\
         <noscript><button type=\"submit\">Continue</button></noscript></form>\
         <script nonce=\"{nonce}\">document.getElementById('lti').submit();</script></body></html>",
        action = escape(return_url.as_str()),
        jwt = escape(jwt),
    );
    // form-action stays open: CSP checks it on the redirects that follow the post too, and a
    // platform may answer its return URL with a redirect elsewhere; the one form here is ours.
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; form-action *; frame-ancestors 'self' {}; base-uri 'none'",
        return_url.origin().ascii_serialization()
    );
    html_response(StatusCode::OK, html, &csp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_at: i64) -> PickerToken {
        PickerToken {
            jti: "j".into(),
            tenant_id: TenantId::generate(),
            platform_id: PlatformId::generate(),
            deployment_id: "d".into(),
            launch_id: LaunchId::generate(),
            person_id: None,
            settings: DeepLinkingSettingsClaim {
                deep_link_return_url: "https://lms.example/return?x=1".into(),
                accept_types: vec!["ltiResourceLink".into()],
                accept_presentation_document_targets: vec![],
                accept_media_types: None,
                accept_multiple: None,
                accept_lineitem: None,
                auto_create: None,
                title: None,
                text: None,
                data: Some("d".into()),
            },
            expires_at,
        }
    }

    #[test]
    fn only_unaltered_unexpired_tokens_sealed_here_open() {
        let master = MasterKey::generate();
        let t = token(now_micros() + 60_000_000);
        let sealed = seal(&master, &t).unwrap();
        assert_eq!(open(&master, &sealed).unwrap(), t);
        assert!(matches!(
            open(&MasterKey::generate(), &sealed),
            Err(PickerError::TokenInvalid)
        ));
        let mut altered = sealed.clone().into_bytes();
        altered[30] = if altered[30] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            open(&master, std::str::from_utf8(&altered).unwrap()),
            Err(PickerError::TokenInvalid)
        ));
        // A login state is sealed with the same key but does not open as a picker token.
        let other = master.seal(b"{}", "lmsbridge-login-state").unwrap();
        use base64::Engine;
        let other = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(other);
        assert!(matches!(
            open(&master, &other),
            Err(PickerError::TokenInvalid)
        ));
        let expired = seal(&master, &token(now_micros() - 1)).unwrap();
        assert!(matches!(
            open(&master, &expired),
            Err(PickerError::TokenExpired)
        ));
        assert!(matches!(
            open(&master, &"A".repeat(MAX_TOKEN_LEN + 1)),
            Err(PickerError::TokenInvalid)
        ));
    }

    #[test]
    fn response_page_escapes_and_frames_only_in_the_platform() {
        let url = Url::parse("https://lms.example/return?a=\"><script>x</script>").unwrap();
        let resp = response_page(&url, "a.b.c");
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains("frame-ancestors 'self' https://lms.example;"),
            "{csp}"
        );
        assert!(csp.contains("script-src 'nonce-"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(web_url("javascript:alert(1)"), None);
        assert_eq!(web_url("data:text/html,x"), None);
        assert!(web_url("https://lms.example/r").is_some());
        let s = token(0).settings;
        assert_eq!(frame_ancestors(&s), "'self' https://lms.example");
    }
}
