//! Names and Role Provisioning Services: membership pages and their `Link` headers.

mod common;

use common::Setup;
use lti::nrps::{MEDIA_TYPE_MEMBERSHIPS, SCOPE_MEMBERSHIP_READONLY};
use serde_json::{Value, json};
use testkit::{LmsConfig, RejectReason};

#[tokio::test]
async fn members_come_in_pages_linked_by_rel_next() {
    let s = Setup::keys_only_with(|c| LmsConfig { page_size: 2, ..c }).await;
    let token = s.access_token(&[SCOPE_MEMBERSHIP_READONLY]).await;
    let http = reqwest::Client::new();

    // The tool asks for more than the platform's page size; the platform caps it.
    let mut first_url = s.lms.memberships_url();
    first_url.query_pairs_mut().append_pair("limit", "10");
    let resp = http
        .get(first_url.clone())
        .bearer_auth(&token)
        .header("accept", MEDIA_TYPE_MEMBERSHIPS)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], MEDIA_TYPE_MEMBERSHIPS);
    let mut next_url = s.lms.memberships_url();
    next_url
        .query_pairs_mut()
        .append_pair("limit", "2")
        .append_pair("page", "2");
    assert_eq!(
        resp.headers()["link"].to_str().unwrap(),
        format!("<{next_url}>; rel=\"next\"")
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["context"],
        json!({"id": "course-1", "label": "BIO101", "title": "Introduction to Biology"})
    );
    assert_eq!(
        body["members"][0],
        json!({
            "user_id": "student-1",
            "status": "Active",
            "name": "Ada Lovelace",
            "given_name": "Ada",
            "family_name": "Lovelace",
            "email": "ada.lovelace@example.edu",
            "roles": ["http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"],
        })
    );
    assert_eq!(body["members"].as_array().unwrap().len(), 2);

    // The lti crate's client walks the pages to the end.
    let client = lti::token::TokenClient::new(http.clone());
    let lti_token = client
        .token(
            &s.token_endpoint(),
            &[SCOPE_MEMBERSHIP_READONLY],
            &s.tool_key,
        )
        .await
        .unwrap();
    let mut url = Some(s.lms.memberships_url());
    let mut pages = Vec::new();
    while let Some(u) = url.take() {
        let page = lti::nrps::fetch_page(&http, &lti_token, &u).await.unwrap();
        pages.push(
            page.members
                .iter()
                .map(|m| m.user_id.clone())
                .collect::<Vec<_>>(),
        );
        url = page.next;
        assert!(pages.len() <= 2, "too many pages");
    }
    assert_eq!(pages, [vec!["student-1", "student-2"], vec!["teacher-1"]]);
    assert_eq!(s.lms.stats().nrps_requests, 3);
}

#[tokio::test]
async fn memberships_need_the_scope_the_media_type_and_sane_paging() {
    let s = Setup::keys_only().await;
    let http = reqwest::Client::new();
    let get = |token: &str, accept: &str, query: &str| {
        let mut url = s.lms.memberships_url();
        url.set_query(Some(query).filter(|q| !q.is_empty()));
        http.get(url)
            .bearer_auth(token)
            .header("accept", accept)
            .send()
    };
    let scores_only = s.access_token(&[lti::ags::SCOPE_SCORE]).await;
    assert_eq!(
        get(&scores_only, MEDIA_TYPE_MEMBERSHIPS, "")
            .await
            .unwrap()
            .status(),
        403
    );
    let token = s.access_token(&[SCOPE_MEMBERSHIP_READONLY]).await;
    assert_eq!(
        get(&token, "application/json", "").await.unwrap().status(),
        406
    );
    for bad in ["limit=0", "limit=-1", "page=0", "limit=many"] {
        assert_eq!(
            get(&token, MEDIA_TYPE_MEMBERSHIPS, bad)
                .await
                .unwrap()
                .status(),
            400,
            "{bad}"
        );
    }
    // Past the last page: empty, no next link.
    let resp = get(&token, MEDIA_TYPE_MEMBERSHIPS, "page=9").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("link").is_none());
    assert_eq!(resp.json::<Value>().await.unwrap()["members"], json!([]));
    let all = get(
        &token,
        &format!("application/json, {MEDIA_TYPE_MEMBERSHIPS}"),
        "",
    )
    .await
    .unwrap();
    assert_eq!(
        all.json::<Value>().await.unwrap()["members"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let stats = s.lms.stats();
    assert_eq!(stats.rejections(RejectReason::InsufficientScope), 1);
    assert_eq!(stats.rejections(RejectReason::NotAcceptable), 1);
    assert_eq!(stats.rejections(RejectReason::InvalidPaging), 4);
}
