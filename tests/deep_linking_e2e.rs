//! LTI Deep Linking 2.0 end to end, over real HTTP on loopback, on SQLite and PostgreSQL: the
//! demo's sample product registers its catalog through the product API; a teacher starts a
//! deep linking request in the simulated LMS, lmsbridge's picker lists the catalog items the
//! course accepts, the teacher picks two, and the simulated LMS verifies the signed response
//! and creates two activities with their gradebook columns. Two students launch each, the
//! product grades them, the worker delivers, and the gradebook shows both columns with the
//! right scores. Then what must be refused is: a picker token used twice, one tenant's token
//! used on another tenant's catalog, a selection the platform's settings forbid, and a
//! tampered form.

use serde_json::Value;
use std::time::Duration;
use testkit::{Browser, Page, SimulatedLms, ToolRegistration};
use url::Url;

mod common;
use common::{Running, start, stop};

const QUIZ: &str = "Enzyme kinetics quiz";
const LAB: &str = "Genetics lab report";
const READING: &str = "Cell biology reading";

fn actor() -> domain::Actor {
    domain::Actor::system("e2e")
}

/// The demo tenant's catalog ids by title, read from the store.
async fn catalog_ids(r: &Running) -> Vec<(String, String)> {
    let scope = r
        .store
        .find_tenant_by_name(lmsbridge::demo::DEMO_TENANT)
        .await
        .unwrap()
        .expect("the demo tenant");
    r.store
        .tenant(&scope)
        .catalog_items(false)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.title, i.id.to_string()))
        .collect()
}

fn id_of<'a>(ids: &'a [(String, String)], title: &str) -> &'a str {
    &ids.iter()
        .find(|(t, _)| t == title)
        .unwrap_or_else(|| panic!("{title} is in the catalog: {ids:?}"))
        .1
}

/// Starts a deep linking request as `user` with extra settings, and lands on the picker.
async fn open_picker(
    browser: &Browser,
    lms: &SimulatedLms,
    user: &str,
    query: &[(&str, &str)],
) -> Page {
    let mut url = lms.deep_linking_url(user);
    url.query_pairs_mut().extend_pairs(query);
    let page = browser.get(url.as_str()).await.unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.url.path(), "/lti/deep_linking", "{:?}", page.trail);
    assert!(
        page.trail.iter().any(|u| u.path() == "/lti/launch"),
        "the request went through lmsbridge's launch: {:?}",
        page.trail
    );
    page
}

/// The picker form's fields with these items chosen.
fn choose(page: &Page, items: &[&str]) -> (testkit::Form, Vec<(String, String)>) {
    let form = page.form("picker").expect("the picker form");
    let mut fields = form.fields.clone();
    fields.extend(items.iter().map(|i| ("item".to_owned(), (*i).to_owned())));
    fields.push(("action".into(), "select".into()));
    (form, fields)
}

async fn inspect(http: &reqwest::Client, lms: &SimulatedLms) -> Value {
    let url = lms.home_url().as_str().to_owned() + "/_inspect/deep_linking";
    http.get(url).send().await.unwrap().json().await.unwrap()
}

async fn walk_deep_linking_to_gradebook(r: &Running) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let lms = &r.lms;
    let ids = catalog_ids(r).await;
    assert_eq!(ids.len(), 3, "the product registered its catalog: {ids:?}");
    let (quiz, lab, reading) = (id_of(&ids, QUIZ), id_of(&ids, LAB), id_of(&ids, READING));

    // The teacher opens the course's deep linking request; lmsbridge shows its picker.
    let teacher = Browser::new();
    let data = format!("e2e-{}", uuid::Uuid::new_v4().simple());
    let picker = open_picker(&teacher, lms, "teacher-1", &[("data", &data)]).await;
    for title in [QUIZ, LAB] {
        assert!(picker.body.contains(title), "{}", picker.body);
    }
    // The course accepts resource links only here: the plain link is not offered.
    assert!(!picker.body.contains(READING), "{}", picker.body);
    assert!(!picker.body.contains(reading), "{}", picker.body);
    assert!(
        picker.body.contains("type=\"checkbox\""),
        "several may be chosen"
    );
    // Shown in the LMS's frame: framing allowed for the LMS's origin, by CSP, not refused.
    let csp = picker.header("content-security-policy").unwrap_or_default();
    let lms_origin = lms.home_url().origin().ascii_serialization();
    assert!(
        csp.contains(&format!("frame-ancestors 'self' {lms_origin}")),
        "{csp}"
    );
    assert!(picker.header("x-frame-options").is_none());

    // Two items chosen: the signed response goes back and the LMS creates two activities.
    let (form, fields) = choose(&picker, &[quiz, lab]);
    let placed = teacher.submit_form(&form, &fields).await.unwrap();
    assert_eq!(placed.status, 200, "{}", placed.body);
    assert_eq!(placed.url.path(), "/lms/deep_linking/return");
    assert!(
        placed.body.contains("2 activities added"),
        "{}",
        placed.body
    );
    let links = lms.deep_linked_resources();
    assert_eq!(links.len(), 2, "{links:?}");
    assert_eq!(
        links.iter().map(|l| l.title.as_str()).collect::<Vec<_>>(),
        [QUIZ, LAB]
    );
    let columns: Vec<_> = links
        .iter()
        .map(|l| {
            lms.line_items()
                .into_iter()
                .find(|li| li.id == l.line_item_id)
                .unwrap_or_else(|| panic!("{l:?} has a gradebook column"))
        })
        .collect();
    assert_eq!(columns[0].score_maximum, 10.0);
    assert_eq!(columns[1].score_maximum, 20.0);
    assert_eq!(columns[0].label, QUIZ);
    assert_eq!(
        columns[1].resource_link_id.as_deref(),
        Some(links[1].id.as_str())
    );
    assert_eq!(columns[0].resource_id.as_deref(), Some(quiz));

    // What the LMS verified: our issuer, its audience, the data echoed, the item ids.
    let seen = inspect(&http, lms).await;
    let response = &seen["responses"][0];
    assert_eq!(response["accepted"], true, "{seen:#}");
    let claims = &response["claims"];
    assert_eq!(claims["iss"], lms.tool().client_id);
    assert_eq!(claims["aud"], lms.issuer());
    assert_eq!(
        claims["https://purl.imsglobal.org/spec/lti-dl/claim/data"],
        data.as_str()
    );
    assert_eq!(
        claims["https://purl.imsglobal.org/spec/lti-dl/claim/msg"],
        "2 items added."
    );
    assert_eq!(
        response["content_items"][0]["custom"]["lmsbridge_catalog_item"],
        quiz
    );

    // Two students launch each activity and the product grades them.
    let grades = [
        ("student-1", 0, "8"),
        ("student-1", 1, "17"),
        ("student-2", 0, "6.5"),
        ("student-2", 1, "19"),
    ];
    for (student, link, score) in grades {
        let browser = Browser::new();
        let product = browser
            .get(
                lms.deep_linked_launch_url(student, &links[link].id)
                    .as_str(),
            )
            .await
            .unwrap();
        assert_eq!(product.status, 200, "{}", product.body);
        assert_eq!(product.url.path(), "/product/launch");
        let title = [QUIZ, LAB][link];
        assert!(
            product
                .body
                .contains(&format!("<span id=\"catalog-item\">{title}</span>")),
            "{}",
            product.body
        );
        let max = ["10", "20"][link];
        assert!(
            product
                .body
                .contains(&format!("<span id=\"score-maximum\">{max}</span>")),
            "{}",
            product.body
        );
        let sent = product.submit("grade", &[("score", score)]).await.unwrap();
        assert_eq!(sent.status, 200, "{}", sent.body);
        assert!(sent.body.contains("id=\"queued\""), "{}", sent.body);
    }

    // The worker delivers all four to the two columns.
    let expected: Vec<(String, &str, f64, f64)> = grades
        .iter()
        .map(|(student, link, score)| {
            (
                columns[*link].id.clone(),
                *student,
                score.parse::<f64>().unwrap(),
                [10.0, 20.0][*link],
            )
        })
        .collect();
    let mut book = Vec::new();
    for _ in 0..200 {
        book = lms.gradebook();
        if expected.iter().all(|(li, u, _, _)| {
            book.iter()
                .any(|e| &e.line_item_id == li && e.user_id == *u)
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (li, user, given, max) in &expected {
        let entry = book
            .iter()
            .find(|e| &e.line_item_id == li && e.user_id == *user)
            .unwrap_or_else(|| panic!("{user} has a grade in column {li}: {book:#?}"));
        assert_eq!(entry.score_given, Some(*given), "{entry:?}");
        assert_eq!(entry.score_maximum, Some(*max), "{entry:?}");
        assert_eq!(entry.result_score, Some(*given), "{entry:?}");
    }
    let page = Browser::new()
        .get(lms.gradebook_url().as_str())
        .await
        .unwrap();
    for (title, cell) in [
        (QUIZ, ">8 / 10<"),
        (LAB, ">17 / 20<"),
        (QUIZ, ">6.5 / 10<"),
        (LAB, ">19 / 20<"),
    ] {
        assert!(page.body.contains(title), "{}", page.body);
        assert!(page.body.contains(cell), "{cell} in {}", page.body);
    }

    // The used picker token is refused a second time, and the LMS hears nothing more.
    let replay = teacher.submit_form(&form, &fields).await.unwrap();
    assert_eq!(replay.status, 409, "{}", replay.body);
    assert!(replay.body.contains("picker_token_used"), "{}", replay.body);
    assert_eq!(replay.url.path(), "/lti/deep_linking");
    assert_eq!(lms.deep_linking_responses().len(), 1);
    assert_eq!(lms.deep_linked_resources().len(), 2);

    // Everything above is in intact audit chains, the response included.
    assert!(
        r.store
            .verify_audit(None)
            .await
            .unwrap()
            .iter()
            .all(|c| c.is_intact())
    );
    let scope = r
        .store
        .find_tenant_by_name(lmsbridge::demo::DEMO_TENANT)
        .await
        .unwrap()
        .unwrap();
    let sent = r
        .store
        .tenant(&scope)
        .audit_entries()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "deep_linking.response_sent")
        .count();
    assert_eq!(sent, 1);
}

async fn refusals(r: &Running) {
    let lms = &r.lms;
    let ids = catalog_ids(r).await;
    let (quiz, lab, reading) = (id_of(&ids, QUIZ), id_of(&ids, LAB), id_of(&ids, READING));
    let before = lms.deep_linking_responses().len();

    // The platform takes one item and no line items: radio buttons; two items are refused
    // with the reason, and the token stays good for a choice the platform accepts.
    let teacher = Browser::new();
    let picker = open_picker(
        &teacher,
        lms,
        "teacher-1",
        &[("accept_multiple", "false"), ("accept_lineitem", "false")],
    )
    .await;
    assert!(picker.body.contains("type=\"radio\""), "{}", picker.body);
    assert!(
        !picker.body.contains("type=\"checkbox\""),
        "{}",
        picker.body
    );
    let (form, fields) = choose(&picker, &[quiz, lab]);
    let refused = teacher.submit_form(&form, &fields).await.unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("data-code=\"multiple_not_accepted\""),
        "{}",
        refused.body
    );
    assert!(
        refused.form("picker").is_some(),
        "the teacher can choose again"
    );
    // A type the platform does not accept here cannot be slipped in by editing the form.
    let (_, sneaky) = choose(&picker, &[reading]);
    let refused = teacher.submit_form(&form, &sneaky).await.unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("data-code=\"item_not_offered\""),
        "{}",
        refused.body
    );
    assert_eq!(
        lms.deep_linking_responses().len(),
        before,
        "nothing was sent"
    );
    let (_, one) = choose(&picker, &[quiz]);
    let placed = teacher.submit_form(&form, &one).await.unwrap();
    assert_eq!(placed.status, 200, "{}", placed.body);
    assert!(placed.body.contains("1 activity added"), "{}", placed.body);
    let last = lms.deep_linked_resources().pop().unwrap();
    assert_eq!(last.title, QUIZ);
    assert_eq!(
        last.line_item_id, "",
        "no line item where the platform takes none"
    );

    // A tampered token or an item id nobody issued is refused, and nothing is sent.
    let picker = open_picker(&teacher, lms, "teacher-1", &[]).await;
    let (form, fields) = choose(&picker, &[quiz]);
    let mut tampered = fields.clone();
    let token = &mut tampered.iter_mut().find(|(k, _)| k == "token").unwrap().1;
    let flipped = if token.ends_with('A') { 'B' } else { 'A' };
    token.pop();
    token.push(flipped);
    let refused = teacher.submit_form(&form, &tampered).await.unwrap();
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("picker_token_invalid"),
        "{}",
        refused.body
    );
    let forged = uuid::Uuid::now_v7().to_string();
    let (_, unknown) = choose(&picker, &[&forged]);
    let refused = teacher.submit_form(&form, &unknown).await.unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("item_not_offered"),
        "{}",
        refused.body
    );
    let no_token: Vec<_> = fields
        .iter()
        .filter(|(k, _)| k != "token")
        .cloned()
        .collect();
    let refused = teacher.submit_form(&form, &no_token).await.unwrap();
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("picker_token_missing"),
        "{}",
        refused.body
    );
    let before_cancel = lms.deep_linking_responses().len();
    assert_eq!(before_cancel, before + 1);

    // Cancel: an empty response with a message; the LMS adds nothing.
    let cancelled = picker.submit("cancel", &[]).await.unwrap();
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert!(
        cancelled.body.contains("0 activities added"),
        "{}",
        cancelled.body
    );
    let responses = lms.deep_linking_responses();
    let last = responses.last().unwrap();
    assert_eq!(last["accepted"], true, "{last:#}");
    assert_eq!(last["content_items"], serde_json::json!([]), "{last:#}");
    assert_eq!(
        last["claims"]["https://purl.imsglobal.org/spec/lti-dl/claim/msg"],
        "No content was added."
    );

    // Another tenant with its own LMS and catalog: its picker shows only its items, and its
    // token cannot place this tenant's items.
    let base = r.demo_url.join("/").unwrap();
    let at = |p: &str| base.join(p).unwrap();
    let (lms_b, _server_b) = SimulatedLms::spawn(ToolRegistration {
        client_id: "other-school".into(),
        deployment_id: "other-deployment".into(),
        login_url: at("lti/login"),
        launch_url: at("lti/launch"),
        jwks_url: at(".well-known/jwks.json"),
    })
    .await
    .unwrap();
    let (tenant_b, key_b) = r
        .store
        .create_tenant(
            "Other school",
            Some(&Url::parse("https://other.example/launch").unwrap()),
            &actor(),
        )
        .await
        .unwrap();
    let scope_b = r.store.tenant_scope(tenant_b.id).await.unwrap();
    r.store
        .tenant(&scope_b)
        .add_platform(
            &store::NewPlatform {
                kind: domain::PlatformKind::Lti,
                issuer: lms_b.issuer(),
                client_id: "other-school".into(),
                auth_url: lms_b.auth_url(),
                token_url: lms_b.token_url(),
                jwks_url: lms_b.jwks_url(),
                token_audience: None,
                accept_new_deployments: false,
                deployment_ids: vec!["other-deployment".into()],
            },
            &actor(),
        )
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let created: Value = http
        .post(at("api/v1/catalog"))
        .bearer_auth(key_b.secret())
        .json(&serde_json::json!({"title": "Other school's essay", "score_maximum": 5}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let item_b = created["id"].as_str().unwrap().to_owned();
    let picker_b = open_picker(&Browser::new(), &lms_b, "teacher-1", &[]).await;
    assert!(
        picker_b.body.contains("Other school&#39;s essay"),
        "{}",
        picker_b.body
    );
    for title in [QUIZ, LAB] {
        assert!(!picker_b.body.contains(title), "{}", picker_b.body);
    }
    let (form_b, with_a_item) = choose(&picker_b, &[quiz]);
    let refused = Browser::new()
        .submit_form(&form_b, &with_a_item)
        .await
        .unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("item_not_offered"),
        "{}",
        refused.body
    );
    assert!(lms_b.deep_linking_responses().is_empty());
    assert_eq!(lms.deep_linking_responses().len(), before_cancel + 1);
    // Its own item goes through, to its own LMS.
    let (_, own) = choose(&picker_b, &[&item_b]);
    let placed = Browser::new().submit_form(&form_b, &own).await.unwrap();
    assert_eq!(placed.status, 200, "{}", placed.body);
    let b_links = lms_b.deep_linked_resources();
    assert_eq!(b_links.len(), 1);
    assert_eq!(b_links[0].title, "Other school's essay");
    let claims = &lms_b.deep_linking_responses()[0]["claims"];
    assert_eq!(claims["iss"], "other-school");
    assert_eq!(claims["aud"], lms_b.issuer());
}

/// The catalog API as a product meets it: clear 422s that change nothing, partial updates,
/// archiving (which takes an item out of the picker), and another tenant's key that reaches
/// none of it.
async fn catalog_api(r: &Running) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = r.demo_url.join("/").unwrap();
    let catalog = base.join("api/v1/catalog").unwrap();
    let scope = r
        .store
        .find_tenant_by_name(lmsbridge::demo::DEMO_TENANT)
        .await
        .unwrap()
        .unwrap();
    let key = r
        .store
        .issue_api_key(&scope, Some("e2e"), &actor())
        .await
        .unwrap();
    let key = key.secret().to_owned();
    let send = |method: reqwest::Method, url: Url, body: Option<Value>, key: Option<String>| {
        let mut req = http.request(method, url);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let before = catalog_ids(r).await.len();

    let (status, _) = send(reqwest::Method::GET, catalog.clone(), None, None).await;
    assert_eq!(status, 401);
    for (body, says) in [
        (serde_json::json!({"text": "no title"}), "title"),
        (serde_json::json!({"title": " "}), "title must be"),
        (
            serde_json::json!({"title": "x", "url": "not a url"}),
            "absolute http or https",
        ),
        (
            serde_json::json!({"title": "x", "url": "ftp://f.example/x"}),
            "absolute http or https",
        ),
        (serde_json::json!({"title": "x", "type": "video"}), "type"),
        (
            serde_json::json!({"title": "x", "type": "link", "score_maximum": 5}),
            "only for ltiResourceLink",
        ),
        (
            serde_json::json!({"title": "x", "score_maximum": -1}),
            "above 0",
        ),
        (
            serde_json::json!({"title": "x", "custom": {"lmsbridge_catalog_item": "y"}}),
            "reserved",
        ),
        (
            serde_json::json!({"title": "x", "custom": {"n": 1}}),
            "custom",
        ),
        (serde_json::json!({"title": "x", "colour": "red"}), "colour"),
    ] {
        let (status, err) = send(
            reqwest::Method::POST,
            catalog.clone(),
            Some(body.clone()),
            Some(key.clone()),
        )
        .await;
        assert_eq!(status, 422, "{body} -> {err}");
        assert_eq!(err["error"], "invalid_request", "{err}");
        assert!(
            err["message"].as_str().is_some_and(|m| m.contains(says)),
            "{body}: {err} should say {says:?}"
        );
    }
    assert_eq!(catalog_ids(r).await.len(), before, "nothing was written");

    let (status, item) = send(
        reqwest::Method::POST,
        catalog.clone(),
        Some(serde_json::json!({"title": "Mitosis drill", "text": "Five minutes", "score_maximum": 5})),
        Some(key.clone()),
    )
    .await;
    assert_eq!(status, 201, "{item}");
    assert_eq!(item["type"], "ltiResourceLink");
    // No URL given: the tenant's launch URL.
    assert_eq!(item["url"], base.join("product/launch").unwrap().as_str());
    let at = catalog
        .join(&format!("catalog/{}", item["id"].as_str().unwrap()))
        .unwrap();
    let (status, got) = send(reqwest::Method::GET, at.clone(), None, Some(key.clone())).await;
    assert_eq!((status, &got), (200, &item));
    let (status, changed) = send(
        reqwest::Method::PATCH,
        at.clone(),
        Some(serde_json::json!({"title": "Mitosis drill (v2)", "text": null})),
        Some(key.clone()),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["title"], "Mitosis drill (v2)");
    assert!(changed["text"].is_null());
    assert_eq!(changed["score_maximum"], 5.0, "untouched fields stay");
    let (status, _) = send(
        reqwest::Method::PATCH,
        at.clone(),
        Some(serde_json::json!({"score_maximum": 0})),
        Some(key.clone()),
    )
    .await;
    assert_eq!(status, 422);
    let (_, unchanged) = send(reqwest::Method::GET, at.clone(), None, Some(key.clone())).await;
    assert_eq!(unchanged, changed, "a refused change loses nothing");

    // Another tenant's key reaches none of it.
    let (_, other) = r
        .store
        .create_tenant("Third school", None, &actor())
        .await
        .unwrap();
    let other = other.secret().to_owned();
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let (status, _) = send(method, at.clone(), None, Some(other.clone())).await;
        assert_eq!(status, 404);
    }
    let (status, _) = send(
        reqwest::Method::PATCH,
        at.clone(),
        Some(serde_json::json!({"title": "taken"})),
        Some(other.clone()),
    )
    .await;
    assert_eq!(status, 404);
    let (status, list) = send(
        reqwest::Method::GET,
        catalog.clone(),
        None,
        Some(other.clone()),
    )
    .await;
    assert_eq!((status, list), (200, serde_json::json!({"items": []})));

    // Archived: gone from the list and the picker, back with archived=false.
    let (status, _) = send(reqwest::Method::DELETE, at.clone(), None, Some(key.clone())).await;
    assert_eq!(status, 204);
    let (_, list) = send(
        reqwest::Method::GET,
        catalog.clone(),
        None,
        Some(key.clone()),
    )
    .await;
    assert!(!list.to_string().contains("Mitosis"), "{list}");
    let mut all = catalog.clone();
    all.set_query(Some("include_archived=true"));
    let (_, list) = send(reqwest::Method::GET, all.clone(), None, Some(key.clone())).await;
    let archived = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == item["id"])
        .unwrap();
    assert_eq!(archived["archived"], true);
    all.set_query(Some("include_archived=maybe"));
    let (status, _) = send(reqwest::Method::GET, all, None, Some(key.clone())).await;
    assert_eq!(status, 422);
    let picker = open_picker(&Browser::new(), &r.lms, "teacher-1", &[]).await;
    assert!(!picker.body.contains("Mitosis"), "{}", picker.body);
    let (status, back) = send(
        reqwest::Method::PATCH,
        at,
        Some(serde_json::json!({"archived": false})),
        Some(key),
    )
    .await;
    assert_eq!((status, &back["archived"]), (200, &Value::Bool(false)));
    let picker = open_picker(&Browser::new(), &r.lms, "teacher-1", &[]).await;
    assert!(
        picker.body.contains("Mitosis drill (v2)"),
        "{}",
        picker.body
    );
}

/// The whole flow, on one database, bounded in time.
async fn run(database_url: Option<String>) {
    let flow = async {
        let r = start(database_url).await;
        walk_deep_linking_to_gradebook(&r).await;
        refusals(&r).await;
        catalog_api(&r).await;
        stop(r).await;
    };
    tokio::time::timeout(Duration::from_secs(240), flow)
        .await
        .expect("the deep linking flow finished within 240 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teacher_places_two_catalog_items_and_both_columns_fill_on_sqlite() {
    run(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teacher_places_two_catalog_items_and_both_columns_fill_on_postgres() {
    let Some(db) = store::testing::TestDatabase::postgres().await.unwrap() else {
        return;
    };
    run(Some(db.url.clone())).await;
    db.cleanup().await;
}
