//! The AGS client against a small platform on loopback that records every request: line
//! items paged and filtered, created, replaced and deleted, results paged, scores with the
//! Canvas extension, tokens per scope refreshed once on 401, Moodle's `?type_id=` URLs, and
//! every refusal mapped to its own error.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use lti::ToolKey;
use lti::ags::*;
use lti::token::{TokenClient, TokenEndpoint};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use url::Url;

/// One request the platform received.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: Option<String>,
    token: Option<String>,
    content_type: Option<String>,
    accept: Option<String>,
    body: Bytes,
}

#[derive(Default)]
struct PlatformState {
    seen: Vec<Seen>,
    /// Scope granted to each token issued.
    tokens: HashMap<String, String>,
    revoked: HashSet<String>,
    token_requests: Vec<String>,
    line_items: BTreeMap<u64, Value>,
    next_id: u64,
    /// Moodle's one line item, with its own results.
    moodle_item: Value,
    /// Like a platform that advertises only `lineitem`: reads with a read-only token are
    /// refused as unauthenticated.
    reads_need_full_scope: bool,
}

#[derive(Clone)]
struct Platform {
    base: Url,
    state: Arc<Mutex<PlatformState>>,
}

impl Platform {
    fn state(&self) -> std::sync::MutexGuard<'_, PlatformState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap()
    }

    fn container(&self) -> Url {
        self.url("courses/1/line_items")
    }

    fn item_url(&self, id: u64) -> Url {
        self.url(&format!("courses/1/line_items/{id}"))
    }

    fn moodle_url(&self) -> Url {
        self.url("mod/lti/services.php/2/lineitems/7/lineitem?type_id=3")
    }

    /// Requests to `path` (not the token endpoint), in order.
    fn seen(&self, path: &str) -> Vec<Seen> {
        self.state()
            .seen
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }

    fn token_requests(&self) -> Vec<String> {
        self.state().token_requests.clone()
    }

    fn revoke_all(&self) {
        let mut s = self.state();
        let all: Vec<String> = s.tokens.keys().cloned().collect();
        s.revoked.extend(all);
    }
}

/// Seven line items: odd ones tagged `quiz`, each bound to resource link `rl-{id % 3}`.
async fn platform() -> Platform {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let p = Platform {
        base,
        state: Arc::default(),
    };
    {
        let mut s = p.state();
        for id in 1..=7u64 {
            let mut item = json!({
                "id": p.item_url(id).as_str(),
                "label": format!("Item {id}"),
                "scoreMaximum": 10 * id,
                "resourceLinkId": format!("rl-{}", id % 3),
                "resourceId": format!("res-{id}"),
            });
            if id % 2 == 1 {
                item["tag"] = json!("quiz");
            }
            s.line_items.insert(id, item);
        }
        s.next_id = 8;
        s.moodle_item = json!({
            "id": p.moodle_url().as_str(),
            "label": "Moodle item",
            "scoreMaximum": 20,
        });
    }
    let router = axum::Router::new().fallback(handle).with_state(p.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    p
}

fn client() -> AgsClient {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    AgsClient::new(http.clone(), TokenClient::new(http))
}

fn auth(p: &Platform) -> ServiceAuth {
    static KEY: std::sync::OnceLock<ToolKey> = std::sync::OnceLock::new();
    ServiceAuth {
        endpoint: TokenEndpoint {
            issuer: p.base.as_str().trim_end_matches('/').to_owned(),
            client_id: "tool-1".into(),
            token_url: p.url("token"),
            audience: None,
        },
        key: KEY
            .get_or_init(|| ToolKey::generate("ags-test").unwrap())
            .clone(),
    }
}

fn json_response(status: StatusCode, media_type: &str, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, media_type.to_owned())],
        body.to_string(),
    )
        .into_response()
}

fn query_pairs(query: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn handle(
    State(p): State<Platform>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().map(str::to_owned);
    let header = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if path == "/token" {
        let form = query_pairs(std::str::from_utf8(&body).ok());
        let scope = form.get("scope").cloned().unwrap_or_default();
        let mut s = p.state();
        s.token_requests.push(scope.clone());
        let token = format!("tok-{}", s.token_requests.len());
        s.tokens.insert(token.clone(), scope);
        return axum::Json(
            json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}),
        )
        .into_response();
    }
    let token =
        header(header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned));
    p.state().seen.push(Seen {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        token: token.clone(),
        content_type: header(header::CONTENT_TYPE),
        accept: header(header::ACCEPT),
        body: body.clone(),
    });

    if let Some(code) = path.strip_prefix("/fail/") {
        return failure(code);
    }
    // Bearer check: known, not revoked, and granted the scope this operation needs.
    let needed = match (method.as_str(), path.as_str()) {
        (_, p) if p.ends_with("/scores") => SCOPE_SCORE,
        (_, p) if p.ends_with("/results") => SCOPE_RESULT_READONLY,
        ("GET", _) if !p.state().reads_need_full_scope => SCOPE_LINEITEM_READONLY,
        _ => SCOPE_LINEITEM,
    };
    {
        let s = p.state();
        if s.reads_need_full_scope
            && method == Method::GET
            && token
                .as_ref()
                .and_then(|t| s.tokens.get(t))
                .map(String::as_str)
                == Some(SCOPE_LINEITEM_READONLY)
        {
            return (
                StatusCode::UNAUTHORIZED,
                "Invalid LTI 1.3 authentication token",
            )
                .into_response();
        }
        let granted = token.as_ref().and_then(|t| s.tokens.get(t));
        if granted.is_none() || token.as_ref().is_some_and(|t| s.revoked.contains(t)) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
                "token expired",
            )
                .into_response();
        }
        if granted.is_some_and(|g| g != needed) {
            return (StatusCode::FORBIDDEN, "insufficient_scope").into_response();
        }
    }
    let q = query_pairs(query.as_deref());
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["courses", "1", "line_items"]) => {
            let items: Vec<Value> = p
                .state()
                .line_items
                .values()
                .filter(|li| {
                    ["tag", "resource_link_id", "resource_id"]
                        .iter()
                        .zip(["tag", "resourceLinkId", "resourceId"])
                        .all(|(param, field)| {
                            q.get(*param).is_none_or(|want| li[field] == json!(want))
                        })
                })
                .cloned()
                .collect();
            paged(&p.container(), &q, &items, MEDIA_TYPE_LINE_ITEMS)
        }
        ("POST", ["courses", "1", "line_items"]) => {
            let Ok(mut item) = serde_json::from_slice::<Value>(&body) else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            let mut s = p.state();
            let id = s.next_id;
            s.next_id += 1;
            item["id"] = json!(p.item_url(id).as_str());
            s.line_items.insert(id, item.clone());
            json_response(StatusCode::CREATED, MEDIA_TYPE_LINE_ITEM, &item)
        }
        (m, ["courses", "1", "line_items", id]) => {
            let Some(id) = id
                .parse::<u64>()
                .ok()
                .filter(|id| p.state().line_items.contains_key(id))
            else {
                return (StatusCode::NOT_FOUND, "no such line item").into_response();
            };
            let mut s = p.state();
            match m {
                "GET" => json_response(StatusCode::OK, MEDIA_TYPE_LINE_ITEM, &s.line_items[&id]),
                "PUT" => {
                    let Ok(item) = serde_json::from_slice::<Value>(&body) else {
                        return StatusCode::BAD_REQUEST.into_response();
                    };
                    s.line_items.insert(id, item.clone());
                    json_response(StatusCode::OK, MEDIA_TYPE_LINE_ITEM, &item)
                }
                "DELETE" => {
                    s.line_items.remove(&id);
                    StatusCode::NO_CONTENT.into_response()
                }
                _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
            }
        }
        ("GET", ["courses", "1", "line_items", id, "results"]) => {
            let li = p.item_url(id.parse().unwrap_or(0));
            let results: Vec<Value> = (1..=7)
                .map(|n| format!("user-{n}"))
                .filter(|u| q.get("user_id").is_none_or(|want| want == u))
                .map(|u| {
                    json!({"id": format!("{li}/results/{u}"), "scoreOf": li.as_str(),
                           "userId": u, "resultScore": 5, "resultMaximum": 10})
                })
                .collect();
            paged(
                &Url::parse(&format!("{li}/results")).unwrap(),
                &q,
                &results,
                MEDIA_TYPE_RESULTS,
            )
        }
        ("POST", ["courses", "1", "line_items", _, "scores"]) => StatusCode::OK.into_response(),
        (
            m,
            [
                "mod",
                "lti",
                "services.php",
                "2",
                "lineitems",
                "7",
                "lineitem",
                rest @ ..,
            ],
        ) => {
            // Moodle routes by the query: without type_id the service is not found.
            if q.get("type_id").map(String::as_str) != Some("3") {
                return (StatusCode::NOT_FOUND, "No handler found").into_response();
            }
            let item = p.state().moodle_item.clone();
            match (m, rest) {
                ("GET", []) => json_response(StatusCode::OK, MEDIA_TYPE_LINE_ITEM, &item),
                ("PUT", []) => {
                    let Ok(item) = serde_json::from_slice::<Value>(&body) else {
                        return StatusCode::BAD_REQUEST.into_response();
                    };
                    p.state().moodle_item = item.clone();
                    json_response(StatusCode::OK, MEDIA_TYPE_LINE_ITEM, &item)
                }
                ("DELETE", []) => StatusCode::NO_CONTENT.into_response(),
                ("POST", ["scores"]) => StatusCode::NO_CONTENT.into_response(),
                ("GET", ["results"]) => json_response(
                    StatusCode::OK,
                    MEDIA_TYPE_RESULTS,
                    &json!([{"userId": "42", "resultScore": 15, "resultMaximum": 20,
                             "scoreOf": item["id"]}]),
                ),
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        }
        ("GET", ["elsewhere"]) => {
            let mut r = json_response(StatusCode::OK, MEDIA_TYPE_LINE_ITEMS, &json!([]));
            r.headers_mut().insert(
                header::LINK,
                "<http://collector.invalid/steal?page=2>; rel=\"next\""
                    .parse()
                    .unwrap(),
            );
            r
        }
        (_, ["foreign-items"]) => {
            let item =
                json!({"id": "http://collector.invalid/li/1", "label": "x", "scoreMaximum": 1});
            let body = if method == Method::GET {
                json!([item])
            } else {
                item
            };
            json_response(StatusCode::OK, MEDIA_TYPE_LINE_ITEMS, &body)
        }
        ("GET", ["loop"]) => {
            let mut r = json_response(StatusCode::OK, MEDIA_TYPE_LINE_ITEMS, &json!([]));
            r.headers_mut()
                .insert(header::LINK, "</loop>; rel=\"next\"".parse().unwrap());
            r
        }
        _ => (StatusCode::NOT_FOUND, "no route").into_response(),
    }
}

/// A page of `items` by `limit` and `page`, with a `next` link that keeps every other
/// parameter.
fn paged(base: &Url, q: &HashMap<String, String>, items: &[Value], media_type: &str) -> Response {
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
    let page: usize = q.get("page").and_then(|l| l.parse().ok()).unwrap_or(1);
    let start = (limit * (page - 1)).min(items.len());
    let end = (start + limit).min(items.len());
    let mut r = json_response(
        StatusCode::OK,
        media_type,
        &Value::from(items[start..end].to_vec()),
    );
    if end < items.len() {
        let mut next = base.clone();
        {
            let mut pairs = next.query_pairs_mut();
            let mut kept: Vec<_> = q.iter().filter(|(k, _)| *k != "page").collect();
            kept.sort();
            for (k, v) in kept {
                pairs.append_pair(k, v);
            }
            pairs.append_pair("page", &(page + 1).to_string());
        }
        // Relative, as some platforms send it.
        let relative = format!("{}?{}", next.path(), next.query().unwrap_or_default());
        r.headers_mut().insert(
            header::LINK,
            format!("<{relative}>; rel=\"next\"").parse().unwrap(),
        );
    }
    r
}

/// `/fail/{code}`: the refusals platforms give, with the bodies they give them.
fn failure(code: &str) -> Response {
    match code {
        "403-rate-limit" => {
            (StatusCode::FORBIDDEN, "403 Forbidden (Rate Limit Exceeded)").into_response()
        }
        "429" => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "7")],
            r#"{"error":"rate_limited"}"#,
        )
            .into_response(),
        "429-date" => {
            let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, at)],
                "slow down",
            )
                .into_response()
        }
        "503-retry" => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "30")],
            "maintenance",
        )
            .into_response(),
        other => {
            let status = other
                .parse::<u16>()
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::IM_A_TEAPOT);
            (
                status,
                format!("{{\"error\":\"refused with {status}\",\"secret\":\"\u{7}\"}}"),
            )
                .into_response()
        }
    }
}

#[tokio::test]
async fn line_items_are_listed_across_pages_with_filters_sent() {
    let p = platform().await;
    let ags = client();
    let query = LineItemQuery {
        tag: Some("quiz".into()),
        limit: Some(1),
        ..Default::default()
    };
    let items = ags
        .list_line_items(&auth(&p), &p.container(), &query)
        .await
        .unwrap();
    let labels: Vec<&str> = items.iter().map(|i| i.item.label.as_str()).collect();
    assert_eq!(labels, ["Item 1", "Item 3", "Item 5", "Item 7"]);
    assert_eq!(items[1].id.as_url(), &p.item_url(3));
    assert_eq!(items[1].item.score_maximum, 30.0);
    assert_eq!(items[1].item.tag.as_deref(), Some("quiz"));

    let pages = p.seen("/courses/1/line_items");
    assert_eq!(pages.len(), 4, "one request per page: {pages:#?}");
    for (n, page) in pages.iter().enumerate() {
        let q = query_pairs(page.query.as_deref());
        assert_eq!(q.get("tag").map(String::as_str), Some("quiz"), "page {n}");
        assert_eq!(q.get("limit").map(String::as_str), Some("1"), "page {n}");
        assert_eq!(page.accept.as_deref(), Some(MEDIA_TYPE_LINE_ITEMS));
    }
    assert_eq!(query_pairs(pages[3].query.as_deref())["page"], "4");
    // One token, for the read-only scope, served every page.
    assert_eq!(p.token_requests(), [SCOPE_LINEITEM_READONLY]);

    // The other filters reach the platform and narrow the listing.
    let query = LineItemQuery {
        resource_link_id: Some("rl-1".into()),
        resource_id: Some("res-4".into()),
        limit: Some(2),
        ..Default::default()
    };
    let items = ags
        .list_line_items(&auth(&p), &p.container(), &query)
        .await
        .unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].item.label, "Item 4");
    let last = p.seen("/courses/1/line_items").pop().unwrap();
    let q = query_pairs(last.query.as_deref());
    assert_eq!(q["resource_link_id"], "rl-1");
    assert_eq!(q["resource_id"], "res-4");
    assert_eq!(q["limit"], "2");
    assert!(!q.contains_key("tag"));
}

#[tokio::test]
async fn line_items_are_created_read_replaced_and_deleted() {
    let p = platform().await;
    let ags = client();
    let auth = auth(&p);
    let mut new = LineItem::new("Lab report", 25.0);
    new.tag = Some("final".into());
    new.resource_id = Some("lab-1".into());
    new.end_date_time = Some(time::macros::datetime!(2026-06-30 23:59 UTC));
    new.extensions.insert(
        "https://canvas.instructure.com/lti/submission_type".into(),
        json!({"type": "external_tool", "external_tool_url": "https://tool.example/lab"}),
    );
    let created = ags
        .create_line_item(&auth, &p.container(), &new)
        .await
        .unwrap();
    assert_eq!(created.id.as_url(), &p.item_url(8));
    assert_eq!(created.item, new);

    let post = p.seen("/courses/1/line_items").pop().unwrap();
    assert_eq!(post.method, Method::POST);
    assert_eq!(post.content_type.as_deref(), Some(MEDIA_TYPE_LINE_ITEM));
    let sent: Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(sent["label"], "Lab report");
    assert_eq!(sent["scoreMaximum"], 25.0);
    assert_eq!(sent["endDateTime"], "2026-06-30T23:59:00Z");
    assert!(sent.get("id").is_none() && sent.get("startDateTime").is_none());

    let fetched = ags.get_line_item(&auth, &created.id).await.unwrap();
    assert_eq!(fetched, created);

    let mut changed = fetched.clone();
    changed.item.label = "Lab report (revised)".into();
    changed.item.score_maximum = 30.0;
    let replaced = ags.update_line_item(&auth, &changed).await.unwrap();
    assert_eq!(replaced, changed);
    let put = p.seen("/courses/1/line_items/8").pop().unwrap();
    assert_eq!(put.method, Method::PUT);
    assert_eq!(put.content_type.as_deref(), Some(MEDIA_TYPE_LINE_ITEM));
    let sent: Value = serde_json::from_slice(&put.body).unwrap();
    assert_eq!(sent["id"], p.item_url(8).as_str());
    assert_eq!(
        sent["https://canvas.instructure.com/lti/submission_type"]["type"], "external_tool",
        "the extension the platform holds goes back unchanged"
    );

    ags.delete_line_item(&auth, &created.id).await.unwrap();
    assert!(matches!(
        ags.get_line_item(&auth, &created.id).await,
        Err(AgsError::NotFound(e)) if e.status == Some(404)
    ));
    // Reads asked for lineitem.readonly, writes for lineitem: one token each, reused.
    assert_eq!(
        p.token_requests(),
        [SCOPE_LINEITEM, SCOPE_LINEITEM_READONLY]
    );
}

#[tokio::test]
async fn results_are_paged_and_filtered_by_user() {
    let p = platform().await;
    let ags = client();
    let li = LineItemUrl::new(p.item_url(2));
    let page = ags
        .results(
            &auth(&p),
            &li,
            &ResultsQuery {
                user_id: None,
                limit: Some(3),
            },
        )
        .await
        .unwrap();
    assert_eq!(page.results.len(), 3);
    let next = page.next.clone().expect("a second page");
    assert_eq!(next.origin(), p.base.origin());
    let all = ags
        .all_results(
            &auth(&p),
            &li,
            &ResultsQuery {
                user_id: None,
                limit: Some(3),
            },
        )
        .await
        .unwrap();
    let users: Vec<&str> = all.iter().map(|r| r.user_id.as_str()).collect();
    assert_eq!(
        users,
        [
            "user-1", "user-2", "user-3", "user-4", "user-5", "user-6", "user-7"
        ]
    );
    assert_eq!(all[0].result_score, Some(5.0));
    assert_eq!(all[0].score_of.as_ref(), Some(&li));
    // 1 + 3 pages.
    let seen = p.seen("/courses/1/line_items/2/results");
    assert_eq!(seen.len(), 4);
    assert!(
        seen.iter()
            .all(|s| s.accept.as_deref() == Some(MEDIA_TYPE_RESULTS))
    );

    let one = ags
        .results(
            &auth(&p),
            &li,
            &ResultsQuery {
                user_id: Some("user-5".into()),
                limit: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(one.results.len(), 1);
    assert_eq!(one.results[0].user_id, "user-5");
    assert_eq!(one.next, None);
    let last = p.seen("/courses/1/line_items/2/results").pop().unwrap();
    assert_eq!(last.query.as_deref(), Some("user_id=user-5"));
    assert_eq!(p.token_requests(), [SCOPE_RESULT_READONLY]);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_call_succeeds() {
    let p = platform().await;
    let ags = client();
    let li = LineItemUrl::new(p.item_url(1));
    ags.get_line_item(&auth(&p), &li).await.unwrap();
    assert_eq!(p.token_requests().len(), 1);

    p.revoke_all();
    let item = ags.get_line_item(&auth(&p), &li).await.unwrap();
    assert_eq!(item.item.label, "Item 1");
    let gets = p.seen("/courses/1/line_items/1");
    let tokens: Vec<_> = gets.iter().map(|s| s.token.clone().unwrap()).collect();
    assert_eq!(
        tokens,
        ["tok-1", "tok-1", "tok-2"],
        "refused once, then a fresh token"
    );
    assert_eq!(p.token_requests().len(), 2, "exactly one refresh");

    // The fresh token is cached: the next call needs no token request.
    ags.get_line_item(&auth(&p), &li).await.unwrap();
    assert_eq!(p.token_requests().len(), 2);
}

#[tokio::test]
async fn every_refusal_maps_to_its_typed_error() {
    let p = platform().await;
    let ags = client();
    let get = |code: &str| {
        let ags = ags.clone();
        let auth = auth(&p);
        let url = LineItemUrl::new(p.url(&format!("fail/{code}")));
        async move { ags.get_line_item(&auth, &url).await.unwrap_err() }
    };
    assert!(matches!(get("400").await, AgsError::BadRequest(e) if e.status == Some(400)));
    assert!(matches!(get("403").await, AgsError::Forbidden(e) if e.status == Some(403)));
    assert!(matches!(get("404").await, AgsError::NotFound(_)));
    assert!(matches!(get("409").await, AgsError::Conflict(_)));
    assert!(matches!(get("422").await, AgsError::Unprocessable(_)));
    assert!(matches!(get("405").await, AgsError::Refused(e) if e.status == Some(405)));
    assert!(matches!(get("500").await, AgsError::Unavailable(e) if e.status == Some(500)));
    assert!(matches!(get("503").await, AgsError::Unavailable(e) if e.status == Some(503)));

    let throttled = get("403-rate-limit").await;
    assert!(
        matches!(&throttled, AgsError::RateLimited(e) if e.status == Some(403)),
        "{throttled:?}"
    );
    let e = get("429").await;
    assert!(matches!(e, AgsError::RateLimited(_)));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(e.status(), Some(429));
    let e = get("429-date").await;
    assert!(matches!(e, AgsError::RateLimited(_)));
    let wait = e.retry_after().expect("an HTTP-date Retry-After is read");
    assert!(
        (Duration::from_secs(115)..=Duration::from_secs(120)).contains(&wait),
        "{wait:?}"
    );
    let e = get("503-retry").await;
    assert!(matches!(e, AgsError::RateLimited(_)));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));

    // The platform's words are kept for the log, without control characters.
    let e = get("422").await;
    let detail = &e.service_error().unwrap().detail;
    assert!(detail.contains("refused with 422"), "{detail}");
    assert!(!detail.chars().any(char::is_control), "{detail:?}");

    // 401 twice: one refresh, then the error; no third attempt.
    let before = p.token_requests().len();
    let e = ags
        .delete_line_item(&auth(&p), &LineItemUrl::new(p.url("fail/401")))
        .await
        .unwrap_err();
    assert!(
        matches!(e, AgsError::Unauthorized(ref s) if s.status == Some(401)),
        "{e:?}"
    );
    assert_eq!(p.seen("/fail/401").len(), 2);
    // The lineitem token is cached already (the refused reads above tried it): one refresh.
    assert_eq!(p.token_requests()[before..], [SCOPE_LINEITEM]);
    // A read tries the wider scope too before giving up.
    let e = get("401").await;
    assert!(matches!(e, AgsError::Unauthorized(_)), "{e:?}");
    assert_eq!(p.seen("/fail/401").len(), 6);

    // Nothing listening: a transport error.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gone = LineItemUrl::new(Url::parse(&format!("http://{closed}/li/1")).unwrap());
    assert!(matches!(
        ags.get_line_item(&auth(&p), &gone).await,
        Err(AgsError::Transport(e)) if e.status.is_none()
    ));
}

#[tokio::test]
async fn a_token_endpoint_failure_is_its_own_error() {
    let p = platform().await;
    let ags = client();
    let mut broken = auth(&p);
    broken.endpoint.token_url = p.url("fail/400");
    let e = ags
        .get_line_item(&broken, &LineItemUrl::new(p.item_url(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, AgsError::Token(ref s) if s.status == Some(400)),
        "{e:?}"
    );
    assert!(
        p.seen("/courses/1/line_items/1").is_empty(),
        "no service call without a token"
    );
}

#[tokio::test]
async fn moodle_urls_keep_their_type_id_after_every_segment() {
    let p = platform().await;
    let ags = client();
    let auth = auth(&p);
    let li = LineItemUrl::new(p.moodle_url());
    let path = "/mod/lti/services.php/2/lineitems/7/lineitem";

    let item = ags.get_line_item(&auth, &li).await.unwrap();
    assert_eq!(item.id, li);
    let mut changed = item.clone();
    changed.item.label = "Renamed".into();
    assert_eq!(
        ags.update_line_item(&auth, &changed).await.unwrap(),
        changed
    );

    let status = ags
        .post_score(
            &auth,
            &li,
            &ScorePost::from(Score {
                user_id: "42".into(),
                score_given: Some(15.0),
                score_maximum: Some(20.0),
                comment: None,
                timestamp: format_timestamp(1_800_000_000_000_001),
                activity_progress: "Completed".into(),
                grading_progress: "FullyGraded".into(),
            }),
        )
        .await
        .unwrap();
    assert_eq!(status, 204);
    let results = ags
        .results(&auth, &li, &ResultsQuery::default())
        .await
        .unwrap();
    assert_eq!(results.results[0].user_id, "42");
    assert_eq!(results.results[0].result_score, Some(15.0));
    ags.delete_line_item(&auth, &li).await.unwrap();

    for (path, n) in [
        (path.to_owned(), 3),
        (format!("{path}/scores"), 1),
        (format!("{path}/results"), 1),
    ] {
        let seen = p.seen(&path);
        assert_eq!(seen.len(), n, "{path}: {seen:#?}");
        assert!(
            seen.iter().all(|s| s.query.as_deref() == Some("type_id=3")),
            "{path}: {seen:#?}"
        );
    }
    let score = &p.seen(&format!("{path}/scores"))[0];
    assert_eq!(score.content_type.as_deref(), Some(MEDIA_TYPE_SCORE));
}

#[tokio::test]
async fn scores_carry_the_canvas_submission_when_asked_and_microsecond_timestamps() {
    let p = platform().await;
    let ags = client();
    let score = Score {
        user_id: "user-1".into(),
        score_given: Some(9.0),
        score_maximum: Some(10.0),
        comment: Some("Well argued".into()),
        timestamp: format_timestamp(1_800_000_000_123_456),
        activity_progress: "Completed".into(),
        grading_progress: "FullyGraded".into(),
    };
    let li = LineItemUrl::new(p.item_url(3));
    let post = ScorePost {
        canvas_submission: Some(CanvasSubmission::for_score(&score)),
        score,
    };
    assert_eq!(ags.post_score(&auth(&p), &li, &post).await.unwrap(), 200);
    let sent = p.seen("/courses/1/line_items/3/scores").pop().unwrap();
    assert_eq!(sent.content_type.as_deref(), Some(MEDIA_TYPE_SCORE));
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["timestamp"], "2027-01-15T08:00:00.123456Z");
    assert_eq!(body["scoreGiven"], 9.0);
    assert_eq!(body["comment"], "Well argued");
    assert_eq!(
        body[CANVAS_SUBMISSION_EXTENSION],
        json!({"new_submission": true, "submitted_at": "2027-01-15T08:00:00.123456Z"})
    );
    assert_eq!(p.token_requests(), [SCOPE_SCORE]);
}

#[tokio::test]
async fn links_and_line_items_off_the_platform_or_in_a_loop_are_refused() {
    let p = platform().await;
    let ags = client();
    let e = ags
        .list_line_items(&auth(&p), &p.url("elsewhere"), &LineItemQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(e, AgsError::InvalidResponse(_)), "{e:?}");
    let e = ags
        .list_line_items(&auth(&p), &p.url("loop"), &LineItemQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(e, AgsError::InvalidResponse(_)), "{e:?}");
    assert_eq!(
        p.seen("/loop").len(),
        1,
        "a page already read is not read again"
    );

    // Line item URLs are where tokens go later: one on another host is refused outright.
    let e = ags
        .list_line_items(
            &auth(&p),
            &p.url("foreign-items"),
            &LineItemQuery::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, AgsError::InvalidResponse(_)), "{e:?}");
    let e = ags
        .create_line_item(&auth(&p), &p.url("foreign-items"), &LineItem::new("x", 1.0))
        .await
        .unwrap_err();
    assert!(matches!(e, AgsError::InvalidResponse(_)), "{e:?}");
}

#[tokio::test]
async fn reads_fall_back_to_the_lineitem_scope_when_the_read_only_one_is_refused() {
    let p = platform().await;
    p.state().reads_need_full_scope = true;
    let ags = client();
    let items = ags
        .list_line_items(&auth(&p), &p.container(), &LineItemQuery::default())
        .await
        .unwrap();
    assert_eq!(items.len(), 7);
    assert_eq!(
        p.token_requests(),
        [
            SCOPE_LINEITEM_READONLY,
            SCOPE_LINEITEM_READONLY,
            SCOPE_LINEITEM
        ],
        "read-only refused (and refreshed once), then the lineitem scope"
    );
    // Remembered: the next read goes straight to the scope that worked.
    ags.get_line_item(&auth(&p), &LineItemUrl::new(p.item_url(2)))
        .await
        .unwrap();
    assert_eq!(p.token_requests().len(), 3);
    let last = p.seen("/courses/1/line_items/2").pop().unwrap();
    assert_eq!(last.token.as_deref(), Some("tok-3"));
}
