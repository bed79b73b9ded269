//! The simulated LMS in Moodle mode (AGS 2.0 §3.4 as Moodle 4.2 applies it) against the same
//! LMS in its standard mode, over HTTP; and its request rate limit.

mod common;

use common::Setup;
use lti::ags::{MEDIA_TYPE_SCORE, SCOPE_RESULT_READONLY, SCOPE_SCORE};
use serde_json::{Value, json};
use std::time::Duration;
use testkit::{LmsBehaviour, LmsConfig, RateLimit, RejectReason};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

async fn setup(behaviour: LmsBehaviour) -> Setup {
    Setup::keys_only_with(|c| LmsConfig { behaviour, ..c }).await
}

/// Posts a score for `student-1` on line item 1 (maximum 100); returns the status.
async fn post(s: &Setup, token: &str, given: f64, progress: &str, at: OffsetDateTime) -> u16 {
    let mut url = s.lms.line_item_url("1");
    url.path_segments_mut().unwrap().push("scores");
    let body = json!({
        "userId": "student-1", "scoreGiven": given, "scoreMaximum": 10.0,
        "timestamp": at.format(&Rfc3339).unwrap(),
        "activityProgress": "Completed", "gradingProgress": progress,
    });
    reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("content-type", MEDIA_TYPE_SCORE)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The grade the LMS shows for `student-1` on line item 1, and what its results service says.
async fn grade(s: &Setup) -> (Option<f64>, Value) {
    let entry = s
        .lms
        .gradebook()
        .into_iter()
        .find(|g| g.line_item_id == "1" && g.user_id == "student-1")
        .expect("student-1 has a gradebook entry");
    let mut url = s.lms.line_item_url("1");
    url.path_segments_mut().unwrap().push("results");
    let token = s.access_token(&[SCOPE_RESULT_READONLY]).await;
    let results: Value = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (entry.result_score, results[0].clone())
}

#[tokio::test]
async fn moodle_orders_scores_by_its_own_save_time_in_whole_seconds() {
    let earlier = OffsetDateTime::now_utc() - Duration::from_secs(30);
    for behaviour in [LmsBehaviour::Moodle, LmsBehaviour::Standard] {
        let s = setup(behaviour).await;
        let token = s.access_token(&[SCOPE_SCORE]).await;
        assert_eq!(post(&s, &token, 5.0, "FullyGraded", earlier).await, 200);
        let saved = s.lms.scores()[0].received_at;
        // Newer than the first score's timestamp, and no earlier than its save, but in the
        // second Moodle saved it.
        let same_second = saved;
        let status = post(&s, &token, 6.0, "FullyGraded", same_second).await;
        let refused = s.lms.stats().rejections(RejectReason::StaleTimestamp);
        match behaviour {
            LmsBehaviour::Moodle => {
                assert_eq!(status, 409, "the newer score is refused");
                assert_eq!(
                    post(&s, &token, 6.0, "FullyGraded", same_second).await,
                    409,
                    "and so is every resend with the same timestamp"
                );
                assert_eq!(refused, 1);
                assert_eq!(grade(&s).await.0, Some(50.0), "the older grade stays");
                let next_second = saved + Duration::from_secs(1);
                assert_eq!(
                    post(&s, &token, 6.0, "FullyGraded", next_second).await,
                    200,
                    "a timestamp in a later second is taken"
                );
                assert_eq!(grade(&s).await.0, Some(60.0));
            }
            _ => {
                assert_eq!(status, 200, "ordered by the tool's timestamps");
                assert_eq!(refused, 0);
                assert_eq!(grade(&s).await.0, Some(60.0));
                assert_eq!(
                    post(&s, &token, 7.0, "FullyGraded", same_second).await,
                    409,
                    "the same timestamp again is stale in every mode"
                );
            }
        }
    }
}

#[tokio::test]
async fn moodle_erases_the_grade_on_a_score_that_is_not_fully_graded() {
    for behaviour in [LmsBehaviour::Moodle, LmsBehaviour::Standard] {
        let s = setup(behaviour).await;
        let token = s.access_token(&[SCOPE_SCORE]).await;
        let now = OffsetDateTime::now_utc();
        assert_eq!(post(&s, &token, 8.0, "FullyGraded", now).await, 200);
        assert_eq!(grade(&s).await.0, Some(80.0));
        let later = now + Duration::from_secs(2);
        assert_eq!(post(&s, &token, 8.0, "Pending", later).await, 200);
        let (shown, result) = grade(&s).await;
        match behaviour {
            LmsBehaviour::Moodle => {
                assert_eq!(shown, None, "the final grade is gone");
                assert!(result.get("resultScore").is_none(), "{result}");
            }
            _ => {
                assert_eq!(shown, Some(80.0));
                assert_eq!(result["resultScore"], 80.0);
            }
        }
    }
}

#[tokio::test]
async fn moodle_caps_a_score_above_the_maximum() {
    for (behaviour, expected) in [
        (LmsBehaviour::Moodle, 100.0),
        (LmsBehaviour::Standard, 120.0),
    ] {
        let s = setup(behaviour).await;
        let token = s.access_token(&[SCOPE_SCORE]).await;
        assert_eq!(
            post(&s, &token, 12.0, "FullyGraded", OffsetDateTime::now_utc()).await,
            200
        );
        let (shown, result) = grade(&s).await;
        assert_eq!(shown, Some(expected), "{behaviour:?}");
        assert_eq!(result["resultScore"], expected);
        assert_eq!(
            s.lms.scores()[0].score_given,
            Some(12.0),
            "recorded as sent"
        );
    }
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after_beyond_its_bucket() {
    let s = setup(LmsBehaviour::Standard).await;
    let token = s.access_token(&[SCOPE_SCORE]).await;
    s.lms.set_rate_limit(Some(RateLimit {
        per_sec: 0.5,
        burst: 3.0,
    }));
    let start = OffsetDateTime::now_utc();
    let mut statuses = Vec::new();
    for i in 0..5 {
        let at = start + Duration::from_millis(i);
        statuses.push(post(&s, &token, 5.0, "FullyGraded", at).await);
    }
    assert_eq!(statuses[..3], [200, 200, 200], "{statuses:?}");
    assert_eq!(statuses[3..], [429, 429], "{statuses:?}");
    let mut url = s.lms.line_item_url("1");
    url.path_segments_mut().unwrap().push("scores");
    let refused = reqwest::Client::new()
        .post(url)
        .bearer_auth(&token)
        .header("content-type", MEDIA_TYPE_SCORE)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "a token comes every 2 s: {wait}");
    assert_eq!(s.lms.rate_limit_counts(), (3, 3));
    assert_eq!(
        s.lms.stats().score_posts,
        3,
        "throttled requests never reach the endpoint"
    );
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let at = start + Duration::from_secs(1);
    assert_eq!(
        post(&s, &token, 5.0, "FullyGraded", at).await,
        200,
        "refilled"
    );
    s.lms.set_rate_limit(None);
    for i in 0..10 {
        let at = start + Duration::from_secs(2) + Duration::from_millis(i);
        assert_eq!(post(&s, &token, 5.0, "FullyGraded", at).await, 200);
    }
}
