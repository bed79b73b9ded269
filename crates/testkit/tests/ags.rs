//! Assignment and Grade Services: scores, line items, results, and fault injection.

mod common;

use common::Setup;
use lti::ags::{
    MEDIA_TYPE_SCORE, SCOPE_LINEITEM, SCOPE_LINEITEM_READONLY, SCOPE_RESULT_READONLY, SCOPE_SCORE,
};
use lti::http_error::ServiceErrorKind;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use testkit::{FaultKind, LmsConfig, RecordedScore, RejectReason};
use url::Url;

const LINE_ITEM: &str = "application/vnd.ims.lis.v2.lineitem+json";

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.unwrap();
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

fn scores_url(s: &Setup, line_item: &str) -> Url {
    let mut url = s.lms.line_item_url(line_item);
    url.path_segments_mut().unwrap().push("scores");
    url
}

async fn post_score(
    s: &Setup,
    token: Option<&str>,
    line_item: &str,
    content_type: &str,
    body: &Value,
) -> Answer {
    let mut req = reqwest::Client::new()
        .post(scores_url(s, line_item))
        .header("content-type", content_type)
        .body(body.to_string());
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    send(req).await
}

fn score(user: &str, given: f64, timestamp: &str) -> Value {
    json!({
        "userId": user,
        "scoreGiven": given,
        "scoreMaximum": 10.0,
        "comment": "Well <b>done</b> & more",
        "timestamp": timestamp,
        "activityProgress": "Completed",
        "gradingProgress": "FullyGraded",
    })
}

const T1: &str = "2026-03-01T10:00:00.000001Z";
const T2: &str = "2026-03-01T10:00:00.000002Z";

#[tokio::test]
async fn scores_are_checked_like_a_real_platform_and_the_good_one_lands_in_the_gradebook() {
    let s = Setup::keys_only().await;
    let token = s.access_token(&[SCOPE_SCORE]).await;
    let t = Some(token.as_str());
    let good = score("student-1", 8.0, T1);

    let a = post_score(&s, t, "1", "application/json", &good).await;
    assert_eq!(a.status, 415);
    let a = post_score(
        &s,
        t,
        "1",
        "application/vnd.ims.lis.v1.score+json; charset=utf-8",
        &good,
    )
    .await;
    assert_eq!(a.status, 415, "the media type must be exact");
    let a = post_score(&s, None, "1", MEDIA_TYPE_SCORE, &good).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.headers["www-authenticate"], "Bearer");
    let a = post_score(&s, Some("forged"), "1", MEDIA_TYPE_SCORE, &good).await;
    assert_eq!(a.status, 401);
    let readonly = s.access_token(&[SCOPE_LINEITEM_READONLY]).await;
    let a = post_score(&s, Some(&readonly), "1", MEDIA_TYPE_SCORE, &good).await;
    assert_eq!(a.status, 403);
    assert!(
        a.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );

    for user in ["teacher-1", "stranger"] {
        let a = post_score(&s, t, "1", MEDIA_TYPE_SCORE, &score(user, 8.0, T1)).await;
        assert_eq!(a.status, 422, "{user}");
        assert_eq!(
            a.json()["errors"]["message"],
            "User not found in course or is not a student"
        );
    }
    let mut bad = Vec::new();
    let mut no_user = good.clone();
    no_user.as_object_mut().unwrap().remove("userId");
    bad.push((no_user, RejectReason::UserIdMissing));
    bad.push((
        score("student-1", 8.0, "1 March 2026"),
        RejectReason::InvalidTimestamp,
    ));
    bad.push((
        score("student-1", 8.0, "2026-03-01T10:00:00"),
        RejectReason::InvalidTimestamp,
    ));
    let mut progress = good.clone();
    progress["gradingProgress"] = json!("Done");
    bad.push((progress, RejectReason::InvalidProgress));
    let mut no_max = good.clone();
    no_max.as_object_mut().unwrap().remove("scoreMaximum");
    bad.push((no_max, RejectReason::InvalidScoreValues));
    bad.push((
        score("student-1", -1.0, T1),
        RejectReason::InvalidScoreValues,
    ));
    bad.push((json!(["not", "an", "object"]), RejectReason::MalformedBody));
    for (body, reason) in bad {
        let a = post_score(&s, t, "1", MEDIA_TYPE_SCORE, &body).await;
        assert_eq!(a.status, 400, "{body}");
        assert!(s.lms.stats().rejections(reason) > 0, "{reason:?}");
    }
    assert_eq!(
        post_score(&s, t, "99", MEDIA_TYPE_SCORE, &good)
            .await
            .status,
        404
    );
    assert_eq!(
        post_score(&s, t, "x", MEDIA_TYPE_SCORE, &good).await.status,
        404
    );
    assert!(s.lms.scores().is_empty());

    let a = post_score(&s, t, "1", MEDIA_TYPE_SCORE, &good).await;
    assert_eq!((a.status, a.json()), (200, json!({})));
    // Same timestamp, then an earlier one: both stale.
    assert_eq!(
        post_score(&s, t, "1", MEDIA_TYPE_SCORE, &score("student-1", 9.0, T1))
            .await
            .status,
        409
    );
    let earlier = "2026-03-01T11:00:00+02:00";
    assert_eq!(
        post_score(
            &s,
            t,
            "1",
            MEDIA_TYPE_SCORE,
            &score("student-1", 9.0, earlier)
        )
        .await
        .status,
        409
    );
    assert_eq!(s.lms.stats().rejections(RejectReason::StaleTimestamp), 2);
    // A later one wins; other learners and line items are independent.
    assert_eq!(
        post_score(&s, t, "1", MEDIA_TYPE_SCORE, &score("student-1", 9.5, T2))
            .await
            .status,
        200
    );
    assert_eq!(
        post_score(&s, t, "2", MEDIA_TYPE_SCORE, &score("student-1", 3.0, T1))
            .await
            .status,
        200
    );
    assert_eq!(
        post_score(&s, t, "1", MEDIA_TYPE_SCORE, &score("student-2", 7.0, T1))
            .await
            .status,
        200
    );

    let scores = s.lms.scores();
    let seen: Vec<(&str, &str, Option<f64>)> = scores
        .iter()
        .map(|r| (r.line_item_id.as_str(), r.user_id.as_str(), r.score_given))
        .collect();
    assert_eq!(
        seen,
        [
            ("1", "student-1", Some(8.0)),
            ("1", "student-1", Some(9.5)),
            ("2", "student-1", Some(3.0)),
            ("1", "student-2", Some(7.0))
        ]
    );
    assert_eq!(scores[1].timestamp, T2);
    assert_eq!(
        scores[1].comment.as_deref(),
        Some("Well <b>done</b> & more")
    );
    let gradebook = s.lms.gradebook();
    let current: Vec<(&str, &str, Option<f64>, Option<f64>)> = gradebook
        .iter()
        .map(|g| {
            (
                g.line_item_id.as_str(),
                g.user_id.as_str(),
                g.score_given,
                g.result_score,
            )
        })
        .collect();
    assert_eq!(
        current,
        [
            ("1", "student-1", Some(9.5), Some(95.0)),
            ("1", "student-2", Some(7.0), Some(70.0)),
            ("2", "student-1", Some(3.0), Some(30.0)),
        ]
    );

    let over_http: Vec<RecordedScore> = reqwest::get(s.lms.issuer() + "/_inspect/scores")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(over_http, scores);
    let page = reqwest::get(s.lms.gradebook_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"data-user="student-1" data-line-item="1" title="Completed · FullyGraded">9.5 / 10</td>"#), "{page}");
    assert!(page.contains(r#"data-user="student-2" data-line-item="2" title="">—</td>"#));
    assert!(!page.contains("teacher-1"), "only learners are graded");
    let stats = s.lms.stats();
    assert_eq!((stats.score_posts, stats.scores_accepted), (22, 4));
}

#[tokio::test]
async fn revoked_and_expired_tokens_are_refused_with_401() {
    let s = Setup::keys_only().await;
    let token = s.access_token(&[SCOPE_SCORE]).await;
    let body = score("student-1", 1.0, T1);
    s.lms.faults().expire_tokens_now();
    let a = post_score(&s, Some(&token), "1", MEDIA_TYPE_SCORE, &body).await;
    assert_eq!(a.status, 401);
    assert!(
        a.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(s.lms.stats().rejections(RejectReason::TokenExpired), 1);
    let fresh = s.access_token(&[SCOPE_SCORE]).await;
    assert_eq!(
        post_score(&s, Some(&fresh), "1", MEDIA_TYPE_SCORE, &body)
            .await
            .status,
        200
    );

    let short = Setup::keys_only_with(|c| LmsConfig {
        token_ttl: Duration::ZERO,
        ..c
    })
    .await;
    let token = short.access_token(&[SCOPE_SCORE]).await;
    assert_eq!(
        post_score(&short, Some(&token), "1", MEDIA_TYPE_SCORE, &body)
            .await
            .status,
        401
    );
    assert_eq!(short.lms.stats().rejections(RejectReason::TokenExpired), 1);
}

#[tokio::test]
async fn injected_faults_answer_before_anything_else_and_the_lti_client_reads_them() {
    let s = Setup::keys_only().await;
    let token = s.access_token(&[SCOPE_SCORE]).await;
    s.lms.faults().fail_next_scores(
        2,
        FaultKind::TooManyRequests {
            retry_after_secs: 7,
        },
    );
    // Even a request that would be refused gets the fault: the platform is too busy to look.
    let a = post_score(&s, None, "1", "text/plain", &json!({})).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.headers["retry-after"], "7");

    let http = reqwest::Client::new();
    let client = lti::token::TokenClient::new(http.clone());
    let lti_token = client
        .token(&s.token_endpoint(), &[SCOPE_SCORE], &s.tool_key)
        .await
        .unwrap();
    let line_item = s.lms.line_item_url("1");
    let wire = lti::ags::Score {
        user_id: "student-2".into(),
        score_given: Some(4.0),
        score_maximum: Some(5.0),
        comment: None,
        timestamp: T1.into(),
        activity_progress: "Completed".into(),
        grading_progress: "FullyGraded".into(),
    };
    let err = lti::ags::post_score(&http, &lti_token, &line_item, &wire)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ServiceErrorKind::RateLimited);
    assert_eq!(err.retry_after, Some(Duration::from_secs(7)));

    s.lms.faults().fail_next_scores(1, FaultKind::RateLimit403);
    let err = lti::ags::post_score(&http, &lti_token, &line_item, &wire)
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.status),
        (ServiceErrorKind::RateLimited, Some(403))
    );
    s.lms.faults().fail_next_scores(1, FaultKind::ServerError);
    let err = lti::ags::post_score(&http, &lti_token, &line_item, &wire)
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.status),
        (ServiceErrorKind::Transient, Some(500))
    );

    assert_eq!(
        lti::ags::post_score(&http, &lti_token, &line_item, &wire)
            .await
            .unwrap(),
        200
    );
    s.lms
        .faults()
        .set_score_failure_rate(1.0, FaultKind::ServerError);
    assert_eq!(
        post_score(
            &s,
            Some(&token),
            "1",
            MEDIA_TYPE_SCORE,
            &score("student-1", 1.0, T2)
        )
        .await
        .status,
        500
    );
    s.lms
        .faults()
        .set_score_failure_rate(0.0, FaultKind::ServerError);
    assert_eq!(
        post_score(
            &s,
            Some(&token),
            "1",
            MEDIA_TYPE_SCORE,
            &score("student-1", 1.0, T2)
        )
        .await
        .status,
        200
    );

    let stats = s.lms.stats();
    assert_eq!(stats.faults_injected, 5);
    assert_eq!((stats.score_posts, stats.scores_accepted), (7, 2));
    assert_eq!(stats.total_rejections(), 0);
}

#[tokio::test]
async fn injected_latency_slows_service_answers() {
    let s = Setup::keys_only().await;
    s.lms.faults().set_latency(Duration::from_millis(300));
    let started = Instant::now();
    let _ = s.access_token(&[SCOPE_SCORE]).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(reqwest::get(s.lms.jwks_url()).await.unwrap().status(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "pages are not slowed"
    );
}

#[tokio::test]
async fn line_items_can_be_listed_filtered_paged_created_updated_and_deleted() {
    let s = Setup::keys_only().await;
    let rw = s.access_token(&[SCOPE_LINEITEM]).await;
    let ro = s
        .access_token(&[SCOPE_LINEITEM_READONLY, SCOPE_RESULT_READONLY, SCOPE_SCORE])
        .await;
    let http = reqwest::Client::new();

    let a = send(http.get(s.lms.line_items_url()).bearer_auth(&ro)).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.headers["content-type"],
        "application/vnd.ims.lis.v2.lineitemcontainer+json"
    );
    assert_eq!(
        a.json()[0],
        json!({
            "id": s.lms.line_item_url("1").as_str(),
            "label": "Cell structure quiz",
            "scoreMaximum": 100.0,
            "resourceLinkId": "resource-1",
        })
    );
    assert_eq!(a.json().as_array().unwrap().len(), 2);
    assert!(a.headers.get("link").is_none());

    let mut filtered = s.lms.line_items_url();
    filtered
        .query_pairs_mut()
        .append_pair("resource_link_id", "resource-2");
    let a = send(http.get(filtered).bearer_auth(&ro)).await;
    assert_eq!(a.json().as_array().unwrap().len(), 1);
    assert_eq!(a.json()[0]["label"], "Photosynthesis essay");

    let new = json!({"label": "Lab report", "scoreMaximum": 20, "tag": "lab", "resourceId": "r-9"});
    let create = |token: &str, content_type: &str, body: &Value| {
        http.post(s.lms.line_items_url())
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body.to_string())
    };
    assert_eq!(send(create(&ro, LINE_ITEM, &new)).await.status, 403);
    assert_eq!(
        send(create(&rw, "application/json", &new)).await.status,
        415
    );
    assert_eq!(
        send(create(
            &rw,
            LINE_ITEM,
            &json!({"label": "x", "scoreMaximum": 0})
        ))
        .await
        .status,
        400
    );
    assert_eq!(
        send(create(&rw, LINE_ITEM, &json!({"scoreMaximum": 5})))
            .await
            .status,
        400
    );
    assert_eq!(
        send(create(
            &rw,
            LINE_ITEM,
            &json!({"label": "x", "scoreMaximum": 5, "resourceLinkId": "nope"})
        ))
        .await
        .status,
        400
    );
    let a = send(create(&rw, LINE_ITEM, &new)).await;
    assert_eq!(a.status, 201);
    let url = s.lms.line_item_url("3");
    assert_eq!(a.headers["location"], url.as_str());
    assert_eq!(a.json()["id"], url.as_str());
    assert_eq!(a.json()["tag"], "lab");
    assert_eq!(s.lms.line_items().len(), 3);

    // Paging: one per page, following Link rel="next" with the lti crate's parser.
    let mut next = Some({
        let mut u = s.lms.line_items_url();
        u.query_pairs_mut().append_pair("limit", "1");
        u
    });
    let mut labels = Vec::new();
    while let Some(url) = next.take() {
        let a = send(http.get(url.clone()).bearer_auth(&ro)).await;
        assert_eq!(a.status, 200);
        labels.extend(
            a.json()
                .as_array()
                .unwrap()
                .iter()
                .map(|li| li["label"].as_str().unwrap().to_owned()),
        );
        next = a
            .headers
            .get("link")
            .map(|l| lti::nrps::parse_link_header(l.to_str().unwrap(), &url))
            .and_then(|links| {
                links
                    .into_iter()
                    .find(|(_, rel)| rel == "next")
                    .map(|(u, _)| u)
            });
        assert!(labels.len() <= 3);
    }
    assert_eq!(
        labels,
        ["Cell structure quiz", "Photosynthesis essay", "Lab report"]
    );

    let put = send(
        http.put(url.clone())
            .bearer_auth(&rw)
            .header("content-type", LINE_ITEM)
            .body(json!({"label": "Lab report (final)", "scoreMaximum": 25}).to_string()),
    )
    .await;
    assert_eq!(put.status, 200);
    let got = send(http.get(url.clone()).bearer_auth(&ro)).await;
    assert_eq!(got.json()["label"], "Lab report (final)");
    assert_eq!(got.json()["scoreMaximum"], 25.0);

    // Results show the current score rescaled to the line item's maximum.
    let a = post_score(
        &s,
        Some(&ro),
        "3",
        MEDIA_TYPE_SCORE,
        &score("student-2", 4.0, T1),
    )
    .await;
    assert_eq!(a.status, 200);
    let results = send(http.get(format!("{url}/results")).bearer_auth(&ro)).await;
    assert_eq!(results.status, 200);
    assert_eq!(
        results.headers["content-type"],
        "application/vnd.ims.lis.v2.resultcontainer+json"
    );
    assert_eq!(
        results.json(),
        json!([{
            "id": format!("{url}/results/student-2"),
            "scoreOf": url.as_str(),
            "userId": "student-2",
            "resultScore": 10.0,
            "resultMaximum": 25.0,
            "comment": "Well <b>done</b> & more",
        }])
    );
    assert_eq!(
        send(http.get(format!("{url}/results")).bearer_auth(&rw))
            .await
            .status,
        403
    );

    assert_eq!(
        send(http.delete(url.clone()).bearer_auth(&ro)).await.status,
        403
    );
    assert_eq!(
        send(http.delete(url.clone()).bearer_auth(&rw)).await.status,
        204
    );
    assert_eq!(
        send(http.get(url.clone()).bearer_auth(&ro)).await.status,
        404
    );
    assert!(s.lms.gradebook().iter().all(|g| g.line_item_id != "3"));
    let elsewhere = s
        .lms
        .line_items_url()
        .as_str()
        .replace("course-1", "course-2");
    assert_eq!(send(http.get(elsewhere).bearer_auth(&ro)).await.status, 404);
}
