//! Gradebook columns through the product API, end to end over loopback: two learners launch
//! from the simulated LMS into the running app, the product creates a line item in their
//! course, lists the course's line items, grades both learners through `POST /api/v1/scores`,
//! the worker delivers the scores to the LMS gradebook, and `GET …/results` reads them back
//! page by page; then the line item is renamed, refused changes are answered without the
//! platform's words, and the line item is deleted.

use serde_json::{Value, json};
use std::time::Duration;
use testkit::Browser;
use url::Url;

mod common;
use common::{Running, start, stop};

/// A product endpoint that receives launch handoffs; the test redeems the codes itself.
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
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.base.join(path).unwrap())
            .bearer_auth(&self.key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

/// An API key of the demo tenant, and its launches redirected to a receiver of ours.
async fn api(r: &Running) -> Api {
    let actor = domain::Actor::system("line-items-test");
    let scope = r
        .store
        .find_tenant_by_name(lmsbridge::demo::DEMO_TENANT)
        .await
        .unwrap()
        .expect("the demo tenant");
    let key = r
        .store
        .issue_api_key(&scope, Some("line items test"), &actor)
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

/// `user` launches the quiz from the LMS; the handoff is redeemed for the normalised launch.
async fn launch(r: &Running, api: &Api, user: &str) -> Value {
    let page = Browser::new()
        .get(r.lms.launch_url(user, "resource-1").as_str())
        .await
        .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    let code = page
        .url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("the launch ended at {} without a code", page.url));
    let (status, launch) = api
        .post("api/v1/launches/redeem", json!({"code": code}))
        .await;
    assert_eq!(status, 200, "{launch:#}");
    launch
}

async fn walk(r: &Running) {
    let api = api(r).await;
    let ada = launch(r, &api, "student-1").await;
    let alan = launch(r, &api, "student-2").await;
    let context = ada["context"]["id"].as_str().unwrap().to_owned();
    assert_eq!(alan["context"]["id"], ada["context"]["id"]);

    // Create: on the platform first, then recorded with our id.
    let (status, created) = api
        .post(
            &format!("api/v1/contexts/{context}/line-items"),
            json!({
                "label": "  Lab report  ", "score_maximum": 25, "resource_link_id": "resource-1",
                "resource_id": "lab-7", "tag": "lab", "end_date_time": "2027-02-01T17:00:00Z",
                "actor": {"kind": "instructor", "id": "teacher-42"},
            }),
        )
        .await;
    assert_eq!(status, 201, "{created:#}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["label"], "Lab report");
    assert_eq!(created["score_maximum"], 25.0);
    assert_eq!(created["tag"], "lab");
    assert_eq!(created["resource_id"], "lab-7");
    assert_eq!(created["end_date_time"], "2027-02-01T17:00:00Z");
    assert_eq!(created["context_id"], context.as_str());
    assert_eq!(created["origin"], "api");
    let on_lms = r
        .lms
        .line_items()
        .into_iter()
        .find(|li| li.label == "Lab report")
        .expect("the line item exists in the LMS");
    assert_eq!(created["platform_line_item_id"], on_lms.url.as_str());
    assert_eq!(on_lms.score_maximum, 25.0);
    assert_eq!(on_lms.resource_link_id.as_deref(), Some("resource-1"));
    assert_eq!(on_lms.resource_id.as_deref(), Some("lab-7"));
    assert_eq!(on_lms.tag.as_deref(), Some("lab"));

    // List: every line item of the course, each with our id; the quiz the launch brought is
    // the launch's own grade target.
    let (status, listed) = api
        .get(&format!("api/v1/contexts/{context}/line-items"))
        .await;
    assert_eq!(status, 200, "{listed:#}");
    let items = listed["line_items"].as_array().unwrap();
    let labels: Vec<&str> = items.iter().map(|i| i["label"].as_str().unwrap()).collect();
    assert_eq!(
        labels,
        ["Cell structure quiz", "Photosynthesis essay", "Lab report"]
    );
    assert_eq!(items[0]["id"], ada["grade_target_id"]);
    assert_eq!(items[0]["origin"], "launch");
    assert_eq!(items[2]["id"], id.as_str());
    let (_, filtered) = api
        .get(&format!("api/v1/contexts/{context}/line-items?tag=lab"))
        .await;
    assert_eq!(filtered["line_items"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["line_items"][0]["id"], id.as_str());

    // Scores for the new line item go through the ordinary score pipeline.
    let mut score_ids = Vec::new();
    for (who, given) in [(&ada, 20.0), (&alan, 22.5)] {
        let resp = api
            .http
            .post(api.base.join("api/v1/scores").unwrap())
            .bearer_auth(&api.key)
            .header(
                "Idempotency-Key",
                format!("lab-{}", who["person"]["id"].as_str().unwrap()),
            )
            .json(&json!({
                "grade_target_id": id, "person_id": who["person"]["id"],
                "score_given": given, "score_maximum": 25, "comment": "Lab graded",
                "actor": {"kind": "ai_grader", "id": "grader-v3"},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let body: Value = resp.json().await.unwrap();
        score_ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let mut delivered = Vec::new();
    for _ in 0..150 {
        delivered = r
            .lms
            .gradebook()
            .into_iter()
            .filter(|g| g.line_item_id == on_lms.id)
            .collect();
        if delivered.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        delivered.len(),
        2,
        "both scores reached the LMS: {delivered:#?}"
    );
    let ada_grade = delivered.iter().find(|g| g.user_id == "student-1").unwrap();
    assert_eq!(ada_grade.score_given, Some(20.0));
    assert_eq!(ada_grade.score_maximum, Some(25.0));
    assert_eq!(ada_grade.comment.as_deref(), Some("Lab graded"));
    let (_, score) = api.get(&format!("api/v1/scores/{}", score_ids[0])).await;
    assert_eq!(score["state"], "delivered", "{score:#}");

    // Results, one page at a time, naming our people.
    let (status, first) = api
        .get(&format!("api/v1/line-items/{id}/results?limit=1"))
        .await;
    assert_eq!(status, 200, "{first:#}");
    assert_eq!(first["line_item_id"], id.as_str());
    assert_eq!(first["results"].as_array().unwrap().len(), 1);
    assert_eq!(first["results"][0]["person_id"], ada["person"]["id"]);
    assert_eq!(first["results"][0]["platform_user_id"], "student-1");
    assert_eq!(first["results"][0]["result_score"], 20.0);
    assert_eq!(first["results"][0]["result_maximum"], 25.0);
    assert_eq!(first["results"][0]["comment"], "Lab graded");
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    assert!(
        !cursor.contains("127.0.0.1") && !cursor.contains("http"),
        "the cursor is opaque: {cursor}"
    );
    let (status, second) = api
        .get(&format!("api/v1/line-items/{id}/results?cursor={cursor}"))
        .await;
    assert_eq!(status, 200, "{second:#}");
    assert_eq!(second["results"][0]["person_id"], alan["person"]["id"]);
    assert_eq!(second["results"][0]["result_score"], 22.5);
    assert!(second["next_cursor"].is_null(), "{second:#}");
    // A cursor is bound to its line item and cannot be forged.
    let quiz = ada["grade_target_id"].as_str().unwrap();
    let (status, wrong) = api
        .get(&format!("api/v1/line-items/{quiz}/results?cursor={cursor}"))
        .await;
    assert_eq!(status, 422, "{wrong:#}");
    let (status, _) = api
        .get(&format!(
            "api/v1/line-items/{id}/results?cursor=aHR0cDovL2V2aWwv"
        ))
        .await;
    assert_eq!(status, 422);
    let (status, only) = api
        .get(&format!(
            "api/v1/line-items/{id}/results?person_id={}",
            alan["person"]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    let only = only["results"].as_array().unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["platform_user_id"], "student-2");

    // A change of label reaches the LMS; what was not changed stays there.
    let (status, renamed) = api
        .patch(
            &format!("api/v1/line-items/{id}"),
            json!({"label": "Lab report (final)", "tag": null}),
        )
        .await;
    assert_eq!(status, 200, "{renamed:#}");
    assert_eq!(renamed["label"], "Lab report (final)");
    assert!(renamed["tag"].is_null());
    let on_lms = r
        .lms
        .line_items()
        .into_iter()
        .find(|li| li.id == on_lms.id)
        .unwrap();
    assert_eq!(on_lms.label, "Lab report (final)");
    assert_eq!(on_lms.tag, None);
    assert_eq!(on_lms.resource_link_id.as_deref(), Some("resource-1"));
    assert_eq!(
        on_lms.end_date_time.as_deref(),
        Some("2027-02-01T17:00:00Z")
    );

    // Refusals: ours name the field; the platform's are told in our words only.
    let (status, bad) = api
        .patch(
            &format!("api/v1/line-items/{id}"),
            json!({"score_maximum": -1}),
        )
        .await;
    assert_eq!(
        (status, bad["error"].as_str()),
        (422, Some("invalid_request"))
    );
    let (status, refused) = api
        .patch(
            &format!("api/v1/line-items/{id}"),
            json!({"resource_link_id": "<script>no-such-link</script>"}),
        )
        .await;
    assert_eq!(status, 422, "{refused:#}");
    assert_eq!(refused["error"], "platform_rejected");
    assert!(refused["correlation_id"].is_string());
    let text = refused.to_string();
    assert!(
        !text.contains("resourceLinkId") && !text.contains("script"),
        "no platform words or echoed input: {text}"
    );
    let (status, _) = api
        .post(
            &format!("api/v1/contexts/{context}/line-items"),
            json!({"label": "x", "score_maximum": 1, "colour": "red"}),
        )
        .await;
    assert_eq!(status, 422, "unknown fields are refused");

    // Another tenant sees none of it.
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
    let (status, _) = other
        .get(&format!("api/v1/contexts/{context}/line-items"))
        .await;
    assert_eq!(status, 404);
    let (status, _) = other.get(&format!("api/v1/line-items/{id}/results")).await;
    assert_eq!(status, 404);
    let (status, _) = other.delete(&format!("api/v1/line-items/{id}")).await;
    assert_eq!(status, 404);
    let (status, _) = api
        .http
        .get(api.base.join(&format!("api/v1/line-items/{id}")).unwrap())
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 401, "no key, no line items");

    // Delete: gone from the LMS, gone here, and takes no more scores.
    let (status, _) = api.delete(&format!("api/v1/line-items/{id}")).await;
    assert_eq!(status, 204);
    assert!(r.lms.line_items().iter().all(|li| li.id != on_lms.id));
    let (status, _) = api.get(&format!("api/v1/line-items/{id}")).await;
    assert_eq!(status, 404);
    let (status, _) = api
        .post(
            "api/v1/scores",
            json!({
                "grade_target_id": id, "person_id": ada["person"]["id"], "score_given": 1,
                "score_maximum": 25, "actor": {"kind": "system", "id": "t"},
            }),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_items_through_the_product_api_on_sqlite() {
    let r = start(None).await;
    walk(&r).await;
    stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_items_through_the_product_api_on_postgres() {
    let Some(db) = store::testing::TestDatabase::postgres().await.unwrap() else {
        return;
    };
    let r = start(Some(db.url.clone())).await;
    walk(&r).await;
    stop(r).await;
    db.cleanup().await;
}
