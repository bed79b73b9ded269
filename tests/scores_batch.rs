//! `POST /api/v1/scores:batch` end to end over loopback, on SQLite and PostgreSQL: learners
//! launch from the simulated LMS, the product sends their scores in batches mixing valid and
//! invalid items, duplicate idempotency keys and the same learner twice; each item is
//! answered on its own, in order, and the worker delivers only the newest score of each
//! learner to the LMS gradebook. Whole-request refusals write nothing; another tenant's key
//! reaches nothing.

use serde_json::{Value, json};
use std::time::Duration;
use testkit::Browser;
use url::Url;

mod common;
use common::{Running, start, stop};

async fn handoff_receiver() -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/launch", listener.local_addr().unwrap())).unwrap();
    let router = axum::Router::new().route("/launch", axum::routing::get(|| async { "received" }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

struct Api {
    http: reqwest::Client,
    base: Url,
    key: String,
}

impl Api {
    async fn send(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let resp = self
            .http
            .post(self.base.join(path).unwrap())
            .bearer_auth(&self.key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn batch(&self, items: Value) -> (u16, Value) {
        self.send(
            "api/v1/scores:batch",
            "application/json",
            json!({ "scores": items }).to_string().into_bytes(),
        )
        .await
    }

    async fn get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(self.base.join(path).unwrap())
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.unwrap()
    }
}

/// The status of a POST announcing a body of `length` bytes, before any of it is sent.
async fn declared_length_status(api: &Api, path: &str, length: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = api.base.join(path).unwrap();
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
        url.path(),
        url.host_str().unwrap(),
        api.key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered before the body")
        .unwrap();
    let line = String::from_utf8_lossy(&answer[..n]).into_owned();
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn api(r: &Running) -> Api {
    let actor = domain::Actor::system("batch-test");
    let scope = r
        .store
        .find_tenant_by_name(lmsbridge::demo::DEMO_TENANT)
        .await
        .unwrap()
        .expect("the demo tenant");
    let key = r
        .store
        .issue_api_key(&scope, Some("batch test"), &actor)
        .await
        .unwrap();
    r.store
        .tenant(&scope)
        .set_launch_url(Some(&handoff_receiver().await), &actor)
        .await
        .unwrap();
    Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        base: r.demo_url.join("/").unwrap(),
        key: key.secret().to_owned(),
    }
}

/// `user` launches `resource` from the LMS; returns (grade target id, person id).
async fn launch(r: &Running, api: &Api, user: &str, resource: &str) -> (String, String) {
    let page = Browser::new()
        .get(r.lms.launch_url(user, resource).as_str())
        .await
        .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    let code = page
        .url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a handoff code");
    let (status, launch) = api
        .send(
            "api/v1/launches/redeem",
            "application/json",
            json!({ "code": code }).to_string().into_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{launch:#}");
    (
        launch["grade_target_id"].as_str().unwrap().to_owned(),
        launch["person"]["id"].as_str().unwrap().to_owned(),
    )
}

fn score(pair: &(String, String), given: f64, key: Option<&str>) -> Value {
    let mut v = json!({
        "grade_target_id": pair.0, "person_id": pair.1,
        "score_given": given, "score_maximum": 10, "comment": format!("batch {given}"),
        "actor": {"kind": "ai_grader", "id": "grader-v3"},
    });
    if let Some(key) = key {
        v["idempotency_key"] = json!(key);
    }
    v
}

/// The LMS's current grade for `user` on the line item of `resource`, once it equals
/// `given` (waits for the worker).
async fn wait_for_grade(r: &Running, user: &str, line_item: &str, given: f64) {
    let mut seen = None;
    for _ in 0..200 {
        seen = r
            .lms
            .gradebook()
            .into_iter()
            .find(|g| g.user_id == user && g.line_item_id == line_item)
            .and_then(|g| g.score_given);
        if seen == Some(given) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{user} on line item {line_item}: the LMS shows {seen:?}, expected {given}");
}

async fn walk(r: &Running) {
    let api = api(r).await;
    let ada_quiz = launch(r, &api, "student-1", "resource-1").await;
    let alan_quiz = launch(r, &api, "student-2", "resource-1").await;
    let ada_essay = launch(r, &api, "student-1", "resource-2").await;

    // One score through the single endpoint, whose key a batch item then reuses.
    let (status, single) = api
        .send(
            "api/v1/scores",
            "application/json",
            score(&alan_quiz, 2.0, None).to_string().into_bytes(),
        )
        .await;
    assert_eq!(status, 202, "{single:#}");
    let resp = api
        .http
        .post(api.base.join("api/v1/scores").unwrap())
        .bearer_auth(&api.key)
        .header("Idempotency-Key", "single-1")
        .json(&score(&ada_essay, 3.0, None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let single_keyed: Value = resp.json().await.unwrap();

    let unknown = (ada_quiz.0.clone(), uuid::Uuid::new_v4().to_string());
    let mut not_an_object = json!(["nope"]);
    let mut unknown_field = score(&ada_quiz, 4.0, None);
    unknown_field["colour"] = json!("red");
    let mut no_maximum = score(&ada_quiz, 4.0, None);
    no_maximum.as_object_mut().unwrap().remove("score_maximum");
    let mut bad_key = score(&ada_quiz, 4.0, None);
    bad_key["idempotency_key"] = json!("tab\there");
    let items = json!([
        score(&ada_quiz, 6.0, Some("k-ada")), // 0: queued, then superseded by 6
        no_maximum,                           // 1: 422
        not_an_object.take(),                 // 2: 422
        unknown_field,                        // 3: 422
        score(&unknown, 5.0, None),           // 4: 404
        score(&ada_quiz, 6.0, Some("k-ada")), // 5: replays 0
        score(&ada_quiz, 9.0, Some("k-ada")), // 6: same key, other body: 409
        score(&ada_quiz, 7.5, None),          // 7: the newest for Ada's quiz
        score(&alan_quiz, 8.0, Some("k-alan")), // 8: supersedes the single score
        score(&ada_essay, 3.0, Some("single-1")), // 9: replays the single endpoint's score
        bad_key,                              // 10: 422
    ]);
    let (status, body) = api.batch(items).await;
    assert_eq!(status, 207, "{body:#}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 11);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"], i, "answers are in item order");
    }
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [202, 422, 422, 422, 404, 202, 409, 202, 202, 202, 422]
    );
    assert_eq!(
        (body["accepted"].as_u64(), body["refused"].as_u64()),
        (Some(5), Some(6))
    );
    assert_eq!(results[1]["message"], "score_given needs score_maximum");
    assert_eq!(results[2]["message"], "each score must be a JSON object");
    assert!(
        results[3]["message"].as_str().unwrap().contains("colour"),
        "{:#}",
        results[3]
    );
    assert_eq!(results[4]["error"], "grade_target_or_person_unknown");
    assert_eq!(
        results[5]["id"], results[0]["id"],
        "the same key and body: the same score"
    );
    assert_eq!(results[5]["replayed"], true);
    assert_eq!(results[6]["error"], "conflict");
    assert_eq!(
        results[9]["id"], single_keyed["id"],
        "keys are shared with the single endpoint"
    );
    assert_eq!(results[9]["replayed"], true);
    assert!(
        results[10]["message"]
            .as_str()
            .unwrap()
            .contains("idempotency_key")
    );
    assert_eq!(
        results[0]["state"], "superseded",
        "a later item is for the same learner"
    );
    assert_eq!(results[7]["state"], "queued");

    // The worker sends only the newest score of each learner.
    let line_item_1 = r.lms.resources()[0].line_item_id.clone();
    let line_item_2 = r.lms.resources()[1].line_item_id.clone();
    wait_for_grade(r, "student-1", &line_item_1, 7.5).await;
    wait_for_grade(r, "student-2", &line_item_1, 8.0).await;
    wait_for_grade(r, "student-1", &line_item_2, 3.0).await;
    let sent: Vec<f64> = r
        .lms
        .scores()
        .iter()
        .filter(|s| s.line_item_id == line_item_1 && s.user_id == "student-1")
        .filter_map(|s| s.score_given)
        .collect();
    assert!(
        !sent.contains(&6.0),
        "the superseded score was never sent: {sent:?}"
    );
    let newest = api
        .get(&format!(
            "api/v1/scores/{}",
            results[7]["id"].as_str().unwrap()
        ))
        .await;
    for _ in 0..100 {
        let s = api
            .get(&format!(
                "api/v1/scores/{}",
                results[7]["id"].as_str().unwrap()
            ))
            .await;
        if s["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = api
        .get(&format!(
            "api/v1/scores/{}",
            results[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(first["state"], "superseded");
    assert!(first["attempt_log"].as_array().unwrap().is_empty());
    assert!(newest["timestamp_micros"].as_i64() > first["timestamp_micros"].as_i64());
    let audit = api.get("api/v1/audit?limit=200").await;
    let text = audit.to_string();
    assert!(
        text.contains("score.corrected") && text.contains("score.superseded"),
        "{audit:#}"
    );

    // Whole-request refusals write nothing.
    let (status, refused) = api
        .send(
            "api/v1/scores:batch",
            "application/json",
            b"{\"scores\": [".to_vec(),
        )
        .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (422, Some("invalid_request"))
    );
    let many: Vec<Value> = (0..1001)
        .map(|i| score(&ada_quiz, f64::from(i % 10), None))
        .collect();
    let (status, refused) = api.batch(json!(many)).await;
    assert_eq!(status, 422, "{refused:#}");
    assert!(refused["message"].as_str().unwrap().contains("1001"));
    let (status, _) = api.batch(json!([])).await;
    assert_eq!(status, 422, "an empty batch");
    let (status, _) = api
        .send(
            "api/v1/scores:batch",
            "text/plain",
            json!({"scores": [score(&ada_quiz, 1.0, None)]})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(status, 422, "not JSON by its content type");
    let (status, _) = api
        .send(
            "api/v1/scores:batch",
            "application/json",
            json!([score(&ada_quiz, 1.0, None)])
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(status, 422, "a bare array is not the batch shape");
    assert_eq!(
        declared_length_status(&api, "api/v1/scores:batch", 9 * 1024 * 1024).await,
        413,
        "a body over the batch limit"
    );
    assert_eq!(
        declared_length_status(&api, "api/v1/scores", 300 * 1024).await,
        413,
        "the single endpoint keeps the small limit"
    );
    // A full batch of a thousand fits (and the same thousand twice replays).
    let thousand: Vec<Value> = (0..1000)
        .map(|i| score(&alan_quiz, f64::from(i % 10), Some(&format!("bulk-{i}"))))
        .collect();
    let (status, full) = api.batch(json!(thousand)).await;
    assert_eq!(status, 207);
    assert_eq!(full["accepted"], 1000);
    let (_, again) = api.batch(json!(thousand)).await;
    assert_eq!(again["accepted"], 1000);
    assert!(
        again["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["replayed"] == true)
    );
    wait_for_grade(r, "student-2", &line_item_1, 9.0).await;
    let after: Vec<f64> = r
        .lms
        .scores()
        .iter()
        .filter(|s| s.user_id == "student-1" && s.line_item_id == line_item_1)
        .filter_map(|s| s.score_given)
        .collect();
    assert_eq!(
        after.last(),
        Some(&7.5),
        "nothing refused whole reached the LMS"
    );

    // Another tenant's key reaches nothing of this tenant.
    let (_, other_key) = r
        .store
        .create_tenant("Other school", None, &domain::Actor::system("test"))
        .await
        .unwrap();
    let other = Api {
        http: api.http.clone(),
        base: api.base.clone(),
        key: other_key.secret().to_owned(),
    };
    let (status, body) = other
        .batch(json!([
            score(&ada_quiz, 1.0, Some("k-ada")),
            score(&ada_essay, 1.0, None)
        ]))
        .await;
    assert_eq!(status, 207);
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == 404),
        "{body:#}"
    );
    let unauthenticated = api
        .http
        .post(api.base.join("api/v1/scores:batch").unwrap())
        .json(&json!({"scores": [score(&ada_quiz, 1.0, None)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let ada_now = api
        .get(&format!(
            "api/v1/scores/{}",
            results[7]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(ada_now["state"], "delivered", "{ada_now:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_batches_over_the_product_api_on_sqlite() {
    let r = start(None).await;
    walk(&r).await;
    stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_batches_over_the_product_api_on_postgres() {
    let Some(db) = store::testing::TestDatabase::postgres().await.unwrap() else {
        return;
    };
    let r = start(Some(db.url.clone())).await;
    walk(&r).await;
    stop(r).await;
    db.cleanup().await;
}
