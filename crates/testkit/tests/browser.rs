//! The scripted browser against a small site that redirects, sets cookies and posts itself.

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use common::serve;
use http::{HeaderMap, StatusCode, header};
use testkit::{Browser, BrowserError};

fn cookies(headers: &HeaderMap) -> String {
    headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn redirect(status: StatusCode, to: &str) -> Response {
    (status, [(header::LOCATION, to.to_owned())]).into_response()
}

fn site() -> Router {
    Router::new()
        .route(
            "/start",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [
                        (header::LOCATION, "hop?x=1"),
                        (
                            header::SET_COOKIE,
                            "session=abc; Path=/; HttpOnly; SameSite=Lax",
                        ),
                    ],
                )
            }),
        )
        .route(
            "/hop",
            get(|| async { redirect(StatusCode::SEE_OTHER, "/form") }),
        )
        .route(
            "/form",
            get(|headers: HeaderMap| async move {
                if cookies(&headers) != "session=abc" {
                    return (StatusCode::FORBIDDEN, "no session").into_response();
                }
                Html(
                    r#"<html><body><form id="lti" method="POST" action='/finish'>
                    <input type="hidden" name="token" value="a&amp;b&quot;c&#39;d">
                    <input type=hidden name=state value=s1></form>
                    <script>document.getElementById('lti').submit()</script></body></html>"#,
                )
                .into_response()
            }),
        )
        .route(
            "/finish",
            post(|headers: HeaderMap, body: Bytes| async move {
                let fields: Vec<(String, String)> =
                    url::form_urlencoded::parse(&body).into_owned().collect();
                Html(format!("fields={fields:?} cookies={}", cookies(&headers)))
            }),
        )
        .route(
            "/loop",
            get(|| async { redirect(StatusCode::FOUND, "/loop") }),
        )
        .route(
            "/keep",
            post(|| async { redirect(StatusCode::TEMPORARY_REDIRECT, "/echo") }),
        )
        .route(
            "/drop",
            post(|| async { redirect(StatusCode::FOUND, "/echo") }),
        )
        .route(
            "/echo",
            get(|| async { "GET with no body".to_owned() }).post(|body: Bytes| async move {
                format!("POST {}", String::from_utf8_lossy(&body))
            }),
        )
        .route(
            "/logout",
            get(|| async { ([(header::SET_COOKIE, "session=; Path=/; Max-Age=0")], "bye") }),
        )
        .route(
            "/product",
            get(|| async {
                Html(
                    r#"<h1>Quiz</h1><form id="buy" method="post" action="/buy">
                    <input type="hidden" name="sku" value="q&amp;1"><input name="qty" value="1">
                    <button name="go" value="now">Buy</button></form>"#,
                )
            }),
        )
        .route(
            "/buy",
            post(|body: Bytes| async move { Html(String::from_utf8_lossy(&body).into_owned()) }),
        )
        .route("/auto/{n}", post(auto_page).get(auto_page))
}

async fn auto_page(Path(n): Path<u32>) -> Html<String> {
    Html(format!(
        r#"<form method="post" action="/auto/{}"><input type="hidden" name="n" value="{n}"></form>
        <script>document.forms[0].submit()</script>"#,
        n + 1
    ))
}

#[tokio::test]
async fn follows_redirects_keeps_cookies_and_submits_self_posting_forms() {
    let (base, _server) = serve(site()).await;
    let browser = Browser::new();
    let page = browser.get(base.join("start").unwrap()).await.unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(page.url.path(), "/finish");
    assert_eq!(
        page.body,
        r#"fields=[("token", "a&b\"c'd"), ("state", "s1")] cookies=session=abc"#
    );
    let trail: Vec<&str> = page.trail.iter().map(|u| u.path()).collect();
    assert_eq!(trail, ["/start", "/hop", "/form"]);
    assert_eq!(page.trail[1].query(), Some("x=1"));
    assert_eq!(
        browser.cookie("127.0.0.1", "session").as_deref(),
        Some("abc")
    );

    browser.get(base.join("logout").unwrap()).await.unwrap();
    assert_eq!(browser.cookie("127.0.0.1", "session"), None);
    let page = browser.get(base.join("form").unwrap()).await.unwrap();
    assert_eq!(page.status, 403, "the removed cookie is no longer sent");
}

#[tokio::test]
async fn redirect_methods_follow_the_browser_rules() {
    let (base, _server) = serve(site()).await;
    let browser = Browser::new();
    let kept = browser
        .post_form(base.join("keep").unwrap(), &[("a", "1 2")])
        .await
        .unwrap();
    assert_eq!(kept.body, "POST a=1+2");
    let dropped = browser
        .post_form(base.join("drop").unwrap(), &[("a", "1")])
        .await
        .unwrap();
    assert_eq!(dropped.body, "GET with no body");
    let err = browser.get(base.join("loop").unwrap()).await.unwrap_err();
    assert!(matches!(err, BrowserError::TooManyRedirects(_)), "{err}");
    assert!(matches!(
        browser.get("not a url").await,
        Err(BrowserError::BadUrl(_))
    ));
}

#[tokio::test]
async fn ordinary_forms_wait_for_the_test_and_auto_posting_stops_after_five() {
    let (base, _server) = serve(site()).await;
    let browser = Browser::new();
    let page = browser.get(base.join("product").unwrap()).await.unwrap();
    assert_eq!(
        page.url.path(),
        "/product",
        "a form without script is not submitted"
    );
    let form = page.form("buy").unwrap();
    assert_eq!(
        form.fields,
        [
            ("sku".to_owned(), "q&1".to_owned()),
            ("qty".to_owned(), "1".to_owned())
        ]
    );
    let bought = page
        .submit("buy", &[("qty", "3"), ("go", "now")])
        .await
        .unwrap();
    assert_eq!(bought.body, "sku=q%261&qty=3&go=now");
    assert!(matches!(
        page.submit("missing", &[]).await,
        Err(BrowserError::NoSuchForm { .. })
    ));

    let page = browser.get(base.join("auto/0").unwrap()).await.unwrap();
    assert_eq!(page.url.path(), "/auto/5");
    assert_eq!(page.trail.len(), 5);
    assert!(page.form("missing").is_none());
    assert_eq!(page.forms().len(), 1);
}
