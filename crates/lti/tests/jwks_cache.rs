//! The platform key cache against a JWKS server on loopback that counts its requests.

use lti::ToolKey;
use lti::jwks::{JwksCache, JwksCachePolicy, JwksError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

#[derive(Clone)]
struct Platform {
    keys: Arc<Mutex<Vec<ToolKey>>>,
    hits: Arc<AtomicU64>,
    down: Arc<Mutex<bool>>,
    cache_control: &'static str,
}

async fn platform(cache_control: &'static str) -> (Platform, Url) {
    let p = Platform {
        keys: Arc::new(Mutex::new(vec![ToolKey::generate("k1").unwrap()])),
        hits: Arc::default(),
        down: Arc::default(),
        cache_control,
    };
    let state = p.clone();
    let router = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let p = state.clone();
            async move {
                p.hits.fetch_add(1, Ordering::SeqCst);
                // Slow enough that concurrent misses overlap.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if *p.down.lock().unwrap() {
                    return (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        [("cache-control", "no-store")],
                        String::new(),
                    );
                }
                let keys: Vec<_> = p
                    .keys
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|k| k.public_jwk().clone())
                    .collect();
                (
                    axum::http::StatusCode::OK,
                    [("cache-control", p.cache_control)],
                    serde_json::json!({"keys": keys}).to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/jwks", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (p, url)
}

fn policy(min_refetch: Duration) -> JwksCachePolicy {
    JwksCachePolicy {
        default_ttl: Duration::from_secs(600),
        min_ttl: Duration::from_millis(1),
        max_ttl: Duration::from_secs(3600),
        min_refetch,
    }
}

#[tokio::test]
async fn many_launches_waiting_on_a_cold_cache_cause_one_fetch() {
    let (p, url) = platform("max-age=300").await;
    let cache = JwksCache::new(reqwest::Client::new(), policy(Duration::from_secs(10)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (cache, url) = (cache.clone(), url.clone());
        tasks.spawn(async move { cache.key(&url, "k1").await });
    }
    while let Some(r) = tasks.join_next().await {
        assert!(r.unwrap().is_ok());
    }
    assert_eq!(
        p.hits.load(Ordering::SeqCst),
        1,
        "one fetch in flight, shared by every waiter"
    );
    // Warm: no more fetches.
    cache.key(&url, "k1").await.unwrap();
    assert_eq!(p.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_rotated_platform_key_is_picked_up_and_a_flood_of_bad_kids_is_throttled() {
    let (p, url) = platform("max-age=3600").await;
    let cache = JwksCache::new(reqwest::Client::new(), policy(Duration::from_millis(400)));
    cache.key(&url, "k1").await.unwrap();
    // Right after a fetch, unknown kids are refused without asking the platform again.
    for i in 0..50 {
        let err = cache.key(&url, &format!("forged-{i}")).await.unwrap_err();
        assert_eq!(err, JwksError::UnknownKid(format!("forged-{i}")));
    }
    assert_eq!(p.hits.load(Ordering::SeqCst), 1, "the refetch floor holds");
    // The platform rotates; after the floor, the new kid triggers one refetch and is found.
    p.keys
        .lock()
        .unwrap()
        .push(ToolKey::generate("k2").unwrap());
    tokio::time::sleep(Duration::from_millis(450)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (cache, url) = (cache.clone(), url.clone());
        tasks.spawn(async move { cache.key(&url, "k2").await });
    }
    while let Some(r) = tasks.join_next().await {
        assert!(r.unwrap().is_ok());
    }
    assert_eq!(p.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn cached_keys_keep_serving_when_the_platform_is_down() {
    let (p, url) = platform("max-age=0").await;
    let cache = JwksCache::new(reqwest::Client::new(), policy(Duration::from_millis(1)));
    cache.key(&url, "k1").await.unwrap();
    *p.down.lock().unwrap() = true;
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Expired and the refetch fails: the key we hold still verifies (stale-if-error).
    cache.key(&url, "k1").await.unwrap();
    assert!(p.hits.load(Ordering::SeqCst) >= 2, "it did try to refresh");
    // A kid we never had cannot be served from stale data.
    assert!(matches!(
        cache.key(&url, "k9").await,
        Err(JwksError::Fetch(_))
    ));
}

#[tokio::test]
async fn cache_headers_set_the_lifetime() {
    let (p, url) = platform("public, Max-Age=1").await;
    let cache = JwksCache::new(
        reqwest::Client::new(),
        JwksCachePolicy {
            min_ttl: Duration::from_millis(1),
            ..policy(Duration::from_millis(1))
        },
    );
    cache.key(&url, "k1").await.unwrap();
    cache.key(&url, "k1").await.unwrap();
    assert_eq!(p.hits.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cache.key(&url, "k1").await.unwrap();
    assert_eq!(p.hits.load(Ordering::SeqCst), 2, "refetched after max-age");
}
