//! The NRPS client against a membership service on loopback that records what it was asked:
//! paging over `rel="next"`, the `role`/`rlid`/`limit` parameters, the `differences` link,
//! loop and origin guards, one token refresh on 401, and a typed error for each status.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lti::ToolKey;
use lti::nrps::{
    MEDIA_TYPE_MEMBERSHIPS, MemberStatus, MembershipQuery, NrpsClient, NrpsError,
    SCOPE_MEMBERSHIP_READONLY,
};
use lti::token::{TokenClient, TokenEndpoint};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

/// What the platform saw and how it behaves.
#[derive(Default)]
struct Seen {
    /// Query strings of membership requests, in order.
    queries: Vec<String>,
    /// Accept headers of membership requests.
    accepts: Vec<String>,
    tokens_issued: u32,
    /// Tokens the platform no longer accepts.
    revoked: HashSet<String>,
    /// Scopes asked for at the token endpoint.
    scopes: Vec<String>,
    /// What the token endpoint answers instead of a token.
    token_refusal: Option<(StatusCode, &'static str)>,
}

#[derive(Clone, Default)]
struct Platform(Arc<Mutex<Seen>>);

impl Platform {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn token(State(p): State<Platform>, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let mut seen = p.seen();
    seen.scopes
        .push(form.get("scope").cloned().unwrap_or_default());
    if let Some((status, error)) = seen.token_refusal {
        return (status, axum::Json(json!({"error": error}))).into_response();
    }
    seen.tokens_issued += 1;
    let token = format!("token-{}", seen.tokens_issued);
    axum::Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}))
        .into_response()
}

fn member(id: &str, status: &str, role: &str) -> Value {
    json!({"user_id": id, "status": status, "name": format!("Name {id}"), "roles": [role]})
}

fn page(members: Vec<Value>, links: &[String]) -> Response {
    let body = json!({
        "id": "http://lms/members",
        "context": {"id": "course-7", "title": "Chemistry"},
        "members": members,
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        MEDIA_TYPE_MEMBERSHIPS.parse().unwrap(),
    );
    for l in links {
        headers.append(header::LINK, l.parse().unwrap());
    }
    (StatusCode::OK, headers, body.to_string()).into_response()
}

/// Checks the bearer token and records the request; `Err` is the 401 answer.
fn admit(p: &Platform, headers: &HeaderMap, query: &str) -> Result<(), Box<Response>> {
    let mut seen = p.seen();
    seen.queries.push(query.to_owned());
    seen.accepts.push(
        headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    );
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bearer.is_empty() || seen.revoked.contains(bearer) {
        return Err(Box::new(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
                "{\"error\":\"invalid_token\"}",
            )
                .into_response(),
        ));
    }
    Ok(())
}

/// Three pages of a course; the last one carries the differences link.
async fn members(
    State(p): State<Platform>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    if let Err(r) = admit(&p, &headers, raw.as_deref().unwrap_or_default()) {
        return *r;
    }
    let n: u32 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    // The next link keeps the tool's parameters, as platforms do.
    let mut keep: Vec<(String, String)> = q
        .iter()
        .filter(|(k, _)| k.as_str() != "page")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    keep.sort();
    let next = |page: u32| {
        let mut u = Url::parse("http://placeholder/members").unwrap();
        u.query_pairs_mut()
            .extend_pairs(&keep)
            .append_pair("page", &page.to_string());
        // Relative, to check resolution against the page's URL.
        format!("</members?{}>; rel=\"next\"", u.query().unwrap())
    };
    match n {
        1 => page(
            vec![
                member("u1", "Active", "Learner"),
                member(
                    "u2",
                    "Active",
                    "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor",
                ),
            ],
            &[next(2)],
        ),
        2 => page(
            vec![
                member("u3", "Inactive", "Learner"),
                member("u4", "Active", "Learner"),
            ],
            &[next(3)],
        ),
        _ => page(
            vec![member("u5", "Active", "Learner")],
            &["</members/changes?since=41>; rel=\"differences\"".to_owned()],
        ),
    }
}

/// The differences since the link was issued: one member left, one joined, over two pages.
async fn changes(
    State(p): State<Platform>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    if let Err(r) = admit(&p, &headers, raw.as_deref().unwrap_or_default()) {
        return *r;
    }
    if q.get("page").map(String::as_str) == Some("2") {
        return page(
            vec![member("u6", "Active", "Learner")],
            &["</members/changes?since=42>; rel=\"differences\"".to_owned()],
        );
    }
    page(
        vec![json!({"user_id": "u4", "status": "Deleted"})],
        &["</members/changes?since=41&page=2>; rel=\"next\"".to_owned()],
    )
}

/// Two pages that link to each other.
async fn looping(
    State(p): State<Platform>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = admit(&p, &headers, "") {
        return *r;
    }
    let other = if q.get("page").map(String::as_str) == Some("2") {
        1
    } else {
        2
    };
    page(
        vec![member("u1", "Active", "Learner")],
        &[format!("</loop?page={other}>; rel=\"next\"")],
    )
}

/// A page whose next link leaves for another host.
async fn foreign(State(p): State<Platform>, headers: HeaderMap) -> Response {
    if let Err(r) = admit(&p, &headers, "") {
        return *r;
    }
    page(
        vec![member("u1", "Active", "Learner")],
        &["<http://attacker.example/steal>; rel=\"next\"".to_owned()],
    )
}

/// Answers with the status named in the path, as platforms do when they fail.
async fn status(
    State(p): State<Platform>,
    headers: HeaderMap,
    axum::extract::Path(code): axum::extract::Path<String>,
) -> Response {
    if let Err(r) = admit(&p, &headers, "") {
        return *r;
    }
    match code.as_str() {
        "403-rate" => {
            (StatusCode::FORBIDDEN, "403 Forbidden (Rate Limit Exceeded)").into_response()
        }
        "429" => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "7")],
            "slow down",
        )
            .into_response(),
        "503" => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "2")],
            "maintenance",
        )
            .into_response(),
        "401" => (StatusCode::UNAUTHORIZED, "{\"error\":\"invalid_token\"}").into_response(),
        "not-json" => (StatusCode::OK, "<html>login</html>").into_response(),
        "wrong-shape" => (StatusCode::OK, r#"{"members": "Ada Lovelace"}"#).into_response(),
        other => {
            let s: u16 = other.parse().unwrap();
            (
                StatusCode::from_u16(s).unwrap(),
                format!("{{\"error\":\"status {s}\"}}"),
            )
                .into_response()
        }
    }
}

struct Setup {
    platform: Platform,
    base: Url,
    client: NrpsClient,
    endpoint: TokenEndpoint,
    key: ToolKey,
}

impl Setup {
    async fn new() -> Self {
        let platform = Platform::default();
        let router = axum::Router::new()
            .route("/token", post(token))
            .route("/members", get(members))
            .route("/members/changes", get(changes))
            .route("/loop", get(looping))
            .route("/foreign", get(foreign))
            .route("/status/{code}", get(status))
            .with_state(platform.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        Self {
            endpoint: TokenEndpoint {
                issuer: base.to_string(),
                client_id: "tool-1".into(),
                token_url: base.join("token").unwrap(),
                audience: None,
            },
            client: NrpsClient::new(http.clone(), TokenClient::new(http)),
            key: ToolKey::generate("tool-key").unwrap(),
            platform,
            base,
        }
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap()
    }

    async fn error_of(&self, path: &str) -> NrpsError {
        self.client
            .page(&self.endpoint, &self.key, &self.url(path))
            .await
            .expect_err(path)
    }
}

#[tokio::test]
async fn every_page_is_read_with_the_parameters_and_the_differences_link_is_followed() {
    let s = Setup::new().await;
    // The platform's URL already carries a query, as Moodle's do.
    let memberships = s.url("members?type_id=3");
    let query = MembershipQuery {
        role: Some("http://purl.imsglobal.org/vocab/lis/v2/membership#Learner".into()),
        rlid: Some("rl-9".into()),
        limit: NonZeroU32::new(2),
    };
    let all = s
        .client
        .all(&s.endpoint, &s.key, &query.url(&memberships), 100)
        .await
        .unwrap();
    assert_eq!(all.pages, 3);
    let ids: Vec<&str> = all.members.iter().map(|m| m.user_id.as_str()).collect();
    assert_eq!(ids, ["u1", "u2", "u3", "u4", "u5"]);
    assert_eq!(all.members[2].status, MemberStatus::Inactive);
    assert_eq!(all.context.as_ref().unwrap().id, "course-7");
    let differences = all.differences.clone().expect("differences link captured");
    assert_eq!(differences, s.url("members/changes?since=41"));

    {
        let seen = s.platform.seen();
        assert_eq!(seen.queries.len(), 3);
        for (i, q) in seen.queries.iter().enumerate() {
            let pairs: HashMap<String, String> = url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect();
            assert_eq!(pairs["type_id"], "3", "page {i}: {q}");
            assert_eq!(
                pairs["role"], "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner",
                "page {i}: {q}"
            );
            assert_eq!(pairs["rlid"], "rl-9", "page {i}: {q}");
            assert_eq!(pairs["limit"], "2", "page {i}: {q}");
        }
        assert!(!seen.queries[0].contains("page="));
        assert!(seen.queries[2].contains("page=3"));
        assert!(seen.accepts.iter().all(|a| a == MEDIA_TYPE_MEMBERSHIPS));
        // One token, for the NRPS scope, reused for every page.
        assert_eq!(seen.tokens_issued, 1);
        assert_eq!(seen.scopes, [SCOPE_MEMBERSHIP_READONLY]);
    }

    // Later: only the changes, which are themselves paged.
    let changes = s
        .client
        .all(&s.endpoint, &s.key, &differences, 100)
        .await
        .unwrap();
    assert_eq!(changes.pages, 2);
    let got: Vec<(&str, MemberStatus)> = changes
        .members
        .iter()
        .map(|m| (m.user_id.as_str(), m.status))
        .collect();
    assert_eq!(
        got,
        [("u4", MemberStatus::Deleted), ("u6", MemberStatus::Active)]
    );
    assert_eq!(
        changes.differences,
        Some(s.url("members/changes?since=42")),
        "the newest differences link is the one to keep"
    );
    assert_eq!(s.client.tokens().request_count(), 1);
}

#[tokio::test]
async fn next_links_that_loop_leave_the_origin_or_never_end_are_not_followed() {
    let s = Setup::new().await;
    let err = s
        .client
        .all(&s.endpoint, &s.key, &s.url("loop?page=1"), 100)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        NrpsError::LinkLoop {
            url: s.url("loop?page=1")
        }
    );
    assert_eq!(err.code(), "next_link_loop");
    assert_eq!(s.platform.seen().queries.len(), 2, "each page read once");

    let err = s
        .client
        .all(&s.endpoint, &s.key, &s.url("foreign"), 100)
        .await
        .unwrap_err();
    assert!(matches!(err, NrpsError::ForeignLink { .. }), "{err:?}");
    assert_eq!(
        s.platform.seen().queries.len(),
        3,
        "the foreign link was not fetched"
    );

    let err = s
        .client
        .all(&s.endpoint, &s.key, &s.url("members"), 2)
        .await
        .unwrap_err();
    assert_eq!(err, NrpsError::TooManyPages { limit: 2 });
    assert_eq!(
        s.platform.seen().queries.len(),
        5,
        "stopped before a third page"
    );
}

#[tokio::test]
async fn a_refused_token_is_replaced_once_then_the_refusal_is_reported() {
    let s = Setup::new().await;
    let members = s.url("members");
    s.client.page(&s.endpoint, &s.key, &members).await.unwrap();
    assert_eq!(s.client.tokens().request_count(), 1);

    // The platform revokes the cached token before it expires.
    s.platform.seen().revoked.insert("token-1".into());
    let page = s.client.page(&s.endpoint, &s.key, &members).await.unwrap();
    assert_eq!(page.members.len(), 2);
    assert_eq!(s.client.tokens().request_count(), 2, "one fresh token");
    {
        let seen = s.platform.seen();
        assert_eq!(
            seen.queries.len(),
            3,
            "the refused request was made once more"
        );
    }
    // The fresh token stays cached.
    s.client.page(&s.endpoint, &s.key, &members).await.unwrap();
    assert_eq!(s.client.tokens().request_count(), 2);

    // A service that refuses every token: one retry with a fresh token, then the error.
    let err = s.error_of("status/401").await;
    assert!(matches!(err, NrpsError::Unauthorized { .. }), "{err:?}");
    assert_eq!(err.code(), "token_rejected_by_service");
    assert_eq!(s.client.tokens().request_count(), 3);
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn each_failure_status_is_typed() {
    let s = Setup::new().await;
    let detail = |e: &NrpsError| e.to_string();

    let e = s.error_of("status/400").await;
    assert!(matches!(e, NrpsError::BadRequest { .. }), "{e:?}");
    assert!(
        detail(&e).contains("status 400"),
        "the platform's words: {e}"
    );
    let e = s.error_of("status/403").await;
    assert!(matches!(e, NrpsError::Forbidden { .. }), "{e:?}");
    assert!(!e.is_retryable());
    let e = s.error_of("status/403-rate").await;
    assert!(
        matches!(e, NrpsError::RateLimited { status: 403, .. }),
        "Canvas's legacy throttle: {e:?}"
    );
    assert!(e.is_retryable());
    assert!(matches!(
        s.error_of("status/404").await,
        NrpsError::NotFound { .. }
    ));
    assert!(matches!(
        s.error_of("status/409").await,
        NrpsError::Conflict { .. }
    ));
    assert!(matches!(
        s.error_of("status/422").await,
        NrpsError::Unprocessable { .. }
    ));
    assert!(matches!(
        s.error_of("status/406").await,
        NrpsError::Rejected { status: 406, .. }
    ));
    let e = s.error_of("status/429").await;
    assert_eq!(
        e,
        NrpsError::RateLimited {
            status: 429,
            retry_after: Some(Duration::from_secs(7)),
            detail: "slow down".into()
        }
    );
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    let e = s.error_of("status/503").await;
    assert!(
        matches!(e, NrpsError::RateLimited { status: 503, retry_after: Some(d), .. } if d == Duration::from_secs(2)),
        "{e:?}"
    );
    let e = s.error_of("status/500").await;
    assert!(
        matches!(
            e,
            NrpsError::Server {
                status: 500,
                retry_after: None,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.code(), "platform_5xx");
    assert!(e.is_retryable());
    assert!(matches!(
        s.error_of("status/502").await,
        NrpsError::Server { status: 502, .. }
    ));
    let e = s.error_of("status/not-json").await;
    assert!(matches!(e, NrpsError::InvalidContainer { .. }), "{e:?}");
    assert!(
        !detail(&e).contains("<html>"),
        "the body is not echoed: {e}"
    );
    let e = s.error_of("status/wrong-shape").await;
    assert!(matches!(e, NrpsError::InvalidContainer { .. }), "{e:?}");
    assert!(
        !detail(&e).contains("Ada"),
        "the platform's data is not quoted: {e}"
    );

    // Nothing listening: no answer at all.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let e = s
        .client
        .page(
            &s.endpoint,
            &s.key,
            &Url::parse(&format!("http://{closed}/members")).unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, NrpsError::Transport { .. }), "{e:?}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn token_endpoint_refusals_say_what_to_fix() {
    let s = Setup::new().await;
    s.platform.seen().token_refusal = Some((StatusCode::BAD_REQUEST, "invalid_scope"));
    let e = s.error_of("members").await;
    assert!(matches!(e, NrpsError::ScopeNotGranted { .. }), "{e:?}");
    assert!(e.to_string().contains("Names and Roles"), "{e}");

    s.platform.seen().token_refusal = Some((StatusCode::UNAUTHORIZED, "invalid_client"));
    let e = s.error_of("members").await;
    assert!(matches!(e, NrpsError::TokenRefused { .. }), "{e:?}");
    assert_eq!(e.code(), "token_refused");

    s.platform.seen().token_refusal = Some((StatusCode::SERVICE_UNAVAILABLE, "down"));
    let e = s.error_of("members").await;
    assert!(e.is_retryable(), "{e:?}");
    assert!(
        s.platform.seen().queries.is_empty(),
        "no membership request without a token"
    );
}
