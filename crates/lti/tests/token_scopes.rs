//! The token client against token endpoints that grant less than asked (Moodle grants only
//! the scopes enabled for the tool) or nothing at all: the error names what is missing.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use lti::ToolKey;
use lti::http_error::ServiceErrorKind;
use lti::token::{TokenClient, TokenEndpoint};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const SCORE: &str = "https://purl.imsglobal.org/spec/lti-ags/scope/score";
const LINEITEM: &str = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem";

/// A token endpoint that grants the intersection of what is asked and `enabled`, and answers
/// `invalid_scope` when that is empty, as Moodle's token.php does.
async fn endpoint(enabled: &'static [&'static str]) -> (TokenEndpoint, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route(
            "/token",
            post(
                move |State(seen): State<Arc<Mutex<Vec<String>>>>,
                      headers: axum::http::HeaderMap,
                      body: String| async move {
                    seen.lock()
                        .unwrap()
                        .push(headers["content-type"].to_str().unwrap().to_owned());
                    let form: HashMap<String, String> =
                        url::form_urlencoded::parse(body.as_bytes())
                            .into_owned()
                            .collect();
                    let granted: Vec<&str> = form["scope"]
                        .split(' ')
                        .filter(|s| enabled.contains(s))
                        .collect();
                    if granted.is_empty() {
                        return (
                            axum::http::StatusCode::BAD_REQUEST,
                            axum::Json(serde_json::json!({"error": "invalid_scope"})),
                        );
                    }
                    (
                        axum::http::StatusCode::OK,
                        axum::Json(serde_json::json!({
                            "access_token": "t", "token_type": "Bearer", "expires_in": 3600,
                            "scope": granted.join(" "),
                        })),
                    )
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let endpoint = TokenEndpoint {
        issuer: "https://moodle.example".into(),
        client_id: "client".into(),
        token_url: url::Url::parse(&format!("http://{addr}/token")).unwrap(),
        audience: None,
    };
    (endpoint, seen)
}

#[tokio::test]
async fn a_partial_grant_names_the_missing_scope() {
    let (endpoint, seen) = endpoint(&[SCORE]).await;
    let key = ToolKey::generate("k1").unwrap();
    let client = TokenClient::new(reqwest::Client::new());
    let err = client
        .token(&endpoint, &[SCORE, LINEITEM], &key)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ServiceErrorKind::InvalidScope);
    assert!(err.detail.contains(LINEITEM), "{}", err.detail);
    assert!(!err.detail.contains(SCORE), "{}", err.detail);
    // What was granted in full still works.
    assert!(client.token(&endpoint, &[SCORE], &key).await.is_ok());
    // Exactly the form media type Moodle insists on.
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|ct| ct == "application/x-www-form-urlencoded")
    );
}

#[tokio::test]
async fn no_grant_at_all_is_invalid_scope_naming_what_was_asked() {
    let (endpoint, _) = endpoint(&[]).await;
    let key = ToolKey::generate("k1").unwrap();
    let err = TokenClient::new(reqwest::Client::new())
        .token(&endpoint, &[LINEITEM], &key)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ServiceErrorKind::InvalidScope);
    assert!(err.detail.contains(LINEITEM), "{}", err.detail);
}
