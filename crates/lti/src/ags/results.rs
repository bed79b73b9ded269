//! AGS results (§3.5): the current grade of each learner in a line item, as the platform
//! holds it (which may differ from the last score sent: an instructor may have overridden it).

use super::lineitems::LineItemUrl;
use super::{
    AgsClient, AgsError, MAX_PAGES, MEDIA_TYPE_RESULTS, SCOPE_RESULT_READONLY, ServiceAuth,
    next_link, read_body,
};
use crate::service_url::append_segment;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

/// One learner's result in a line item (§3.5.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItemResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Url>,
    /// The line item this result belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_of: Option<LineItemUrl>,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_maximum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Fields this crate does not model, kept as sent.
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

/// Filters of a results request (§3.5.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultsQuery {
    /// Only this learner's result (the LTI `sub`).
    pub user_id: Option<String>,
    pub limit: Option<u32>,
}

impl ResultsQuery {
    /// The results URL of a line item: `/results` before any query the line item URL has
    /// (Moodle's `?type_id=`), then the filters.
    pub fn url(&self, line_item: &LineItemUrl) -> Url {
        let mut url = append_segment(line_item.as_url(), "results");
        if self.user_id.is_some() || self.limit.is_some() {
            let mut q = url.query_pairs_mut();
            if let Some(user) = &self.user_id {
                q.append_pair("user_id", user);
            }
            if let Some(limit) = self.limit {
                q.append_pair("limit", &limit.to_string());
            }
        }
        url
    }
}

/// One page of results and the link to the next.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultsPage {
    pub results: Vec<LineItemResult>,
    pub next: Option<Url>,
}

impl AgsClient {
    /// The first page of a line item's results.
    pub async fn results(
        &self,
        auth: &ServiceAuth,
        line_item: &LineItemUrl,
        query: &ResultsQuery,
    ) -> Result<ResultsPage, AgsError> {
        self.results_page(auth, &query.url(line_item)).await
    }

    /// A page of results at `url`: a results URL, or the `next` link of an earlier page.
    /// The caller must make sure `url` is on the platform's origin.
    pub async fn results_page(
        &self,
        auth: &ServiceAuth,
        url: &Url,
    ) -> Result<ResultsPage, AgsError> {
        let resp = self
            .execute(auth, SCOPE_RESULT_READONLY, || {
                self.http
                    .get(url.clone())
                    .header(http::header::ACCEPT, MEDIA_TYPE_RESULTS)
            })
            .await?;
        let next = next_link(resp.headers(), url)?;
        let body = read_body(resp).await?;
        let results = serde_json::from_slice(&body).map_err(|_| {
            AgsError::InvalidResponse("the result container is not a list of results")
        })?;
        Ok(ResultsPage { results, next })
    }

    /// Every result of a line item, following `rel="next"` links.
    pub async fn all_results(
        &self,
        auth: &ServiceAuth,
        line_item: &LineItemUrl,
        query: &ResultsQuery,
    ) -> Result<Vec<LineItemResult>, AgsError> {
        let mut out = Vec::new();
        let mut url = query.url(line_item);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            seen.insert(url.clone());
            let page = self.results_page(auth, &url).await?;
            out.extend(page.results);
            match page.next {
                Some(next) if seen.contains(&next) => {
                    return Err(AgsError::InvalidResponse(
                        "the next page link points back to a page already read",
                    ));
                }
                Some(next) => url = next,
                None => return Ok(out),
            }
        }
        Err(AgsError::InvalidResponse(
            "the result listing has more pages than the limit",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_url_keeps_moodles_query_after_the_segment() {
        let li = LineItemUrl::new(
            Url::parse(
                "https://moodle.example/mod/lti/services.php/2/lineitems/7/lineitem?type_id=3",
            )
            .unwrap(),
        );
        let q = ResultsQuery {
            user_id: Some("42".into()),
            limit: Some(5),
        };
        assert_eq!(
            q.url(&li).as_str(),
            "https://moodle.example/mod/lti/services.php/2/lineitems/7/lineitem/results?type_id=3&user_id=42&limit=5"
        );
    }

    #[test]
    fn results_parse_with_and_without_optional_fields() {
        let page: Vec<LineItemResult> = serde_json::from_str(
            r#"[{"id": "https://l.example/li/1/results/u1", "scoreOf": "https://l.example/li/1",
                 "userId": "u1", "resultScore": 8.5, "resultMaximum": 10, "comment": "ok",
                 "https://canvas.instructure.com/lti/submission": {"submitted_at": "x"}},
                {"userId": "u2"}]"#,
        )
        .unwrap();
        assert_eq!(page[0].result_score, Some(8.5));
        assert_eq!(page[0].result_maximum, Some(10.0));
        assert_eq!(
            page[0].score_of.as_ref().unwrap().as_url().as_str(),
            "https://l.example/li/1"
        );
        assert_eq!(page[0].extensions.len(), 1);
        assert_eq!(page[1].user_id, "u2");
        assert_eq!(page[1].result_score, None);
        assert!(serde_json::from_str::<Vec<LineItemResult>>(r#"[{"resultScore": 1}]"#).is_err());
    }
}
