//! Assignment and Grade Services 2.0: scores (AGS §3.4).

use crate::http_error::{ServiceError, ServiceErrorKind};
use crate::service_url::append_segment;
use crate::token::AccessToken;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use url::Url;

pub const SCOPE_LINEITEM: &str = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem";
pub const SCOPE_LINEITEM_READONLY: &str =
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly";
pub const SCOPE_RESULT_READONLY: &str =
    "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly";
pub const SCOPE_SCORE: &str = "https://purl.imsglobal.org/spec/lti-ags/scope/score";
pub const MEDIA_TYPE_SCORE: &str = "application/vnd.ims.lis.v1.score+json";

/// A score as sent on the wire (AGS §3.4.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Score {
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_given: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_maximum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// ISO 8601 with sub-second precision; platforms order scores by it.
    pub timestamp: String,
    pub activity_progress: String,
    pub grading_progress: String,
}

/// Formats a timestamp as AGS wants it: UTC, microsecond precision.
pub fn format_timestamp(unix_micros: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_micros) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.format(&fmt).unwrap_or_default()
}

/// Posts a score to a line item's scores endpoint. Returns the HTTP status on success.
pub async fn post_score(
    http: &reqwest::Client,
    token: &AccessToken,
    line_item: &Url,
    score: &Score,
) -> Result<u16, ServiceError> {
    let url = append_segment(line_item, "scores");
    let body = serde_json::to_vec(score).map_err(|_| ServiceError {
        kind: ServiceErrorKind::Rejected,
        status: None,
        retry_after: None,
        detail: "score could not be encoded".into(),
    })?;
    let resp = http
        .post(url)
        .bearer_auth(token.secret())
        .header(http::header::CONTENT_TYPE, MEDIA_TYPE_SCORE)
        .body(body)
        .send()
        .await
        .map_err(|e| ServiceError::transport(&e))?;
    if resp.status().is_success() {
        Ok(resp.status().as_u16())
    } else {
        Err(ServiceError::from_response(resp).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_carry_microseconds() {
        assert_eq!(
            format_timestamp(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn score_wire_names() {
        let s = Score {
            user_id: "u1".into(),
            score_given: Some(8.0),
            score_maximum: Some(10.0),
            comment: None,
            timestamp: format_timestamp(0),
            activity_progress: "Completed".into(),
            grading_progress: "FullyGraded".into(),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["userId"], "u1");
        assert_eq!(v["scoreGiven"], 8.0);
        assert_eq!(v["gradingProgress"], "FullyGraded");
        assert!(v.get("comment").is_none());
    }
}
