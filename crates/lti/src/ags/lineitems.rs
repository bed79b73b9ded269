//! AGS line items (§3.2): the line item container of a context, and each line item.
//!
//! Line item URLs are used exactly as the platform gives them; Moodle's carry
//! `?type_id=N`, which must stay in place when filters or segments are added.

use super::{
    AgsClient, AgsError, MAX_PAGES, MEDIA_TYPE_LINE_ITEM, MEDIA_TYPE_LINE_ITEMS, SCOPE_LINEITEM,
    ServiceAuth, next_link, read_body,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use time::OffsetDateTime;
use url::Url;

/// A line item's URL, which is also its `id` on the wire (§3.2.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LineItemUrl(Url);

impl LineItemUrl {
    pub fn new(url: Url) -> Self {
        Self(url)
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }

    pub fn into_url(self) -> Url {
        self.0
    }
}

impl fmt::Display for LineItemUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_str().fmt(f)
    }
}

/// A line item's fields (§3.2.2-3.2.3), as sent to create or replace one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineItem {
    /// Greater than 0.
    pub score_maximum: f64,
    pub label: String,
    /// The tool's own id for the activity this column grades.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// The platform's resource link this column is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_link_id: Option<String>,
    /// A tool-chosen qualifier, e.g. `final` or `originality`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub start_date_time: Option<OffsetDateTime>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub end_date_time: Option<OffsetDateTime>,
    /// Whether learners may see the grades (AGS 2.0 errata; Canvas and Moodle may ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grades_released: Option<bool>,
    /// Fields this crate does not model (Canvas's `submission_type`, `launch_url`, ...),
    /// kept so that a replace (PUT) sends them back unchanged.
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

impl LineItem {
    /// A line item with a label and a maximum, nothing else set.
    pub fn new(label: impl Into<String>, score_maximum: f64) -> Self {
        Self {
            score_maximum,
            label: label.into(),
            resource_id: None,
            resource_link_id: None,
            tag: None,
            start_date_time: None,
            end_date_time: None,
            grades_released: None,
            extensions: Map::new(),
        }
    }
}

/// A line item as the platform holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlatformLineItem {
    pub id: LineItemUrl,
    #[serde(flatten)]
    pub item: LineItem,
}

/// Filters of a line item listing (§3.2.5); unset ones are not sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineItemQuery {
    pub resource_link_id: Option<String>,
    pub resource_id: Option<String>,
    pub tag: Option<String>,
    /// Page size the tool asks for; the platform may send fewer.
    pub limit: Option<u32>,
}

impl LineItemQuery {
    /// The container URL with the filters added after any query it already has.
    pub fn url(&self, container: &Url) -> Url {
        let mut url = container.clone();
        let filters = [
            ("resource_link_id", self.resource_link_id.clone()),
            ("resource_id", self.resource_id.clone()),
            ("tag", self.tag.clone()),
            ("limit", self.limit.map(|l| l.to_string())),
        ];
        if filters.iter().any(|(_, v)| v.is_some()) {
            let mut q = url.query_pairs_mut();
            for (name, value) in filters {
                if let Some(value) = value {
                    q.append_pair(name, &value);
                }
            }
        }
        url
    }
}

/// One page of a line item listing and the link to the next.
#[derive(Clone, Debug, PartialEq)]
pub struct LineItemPage {
    pub items: Vec<PlatformLineItem>,
    pub next: Option<Url>,
}

impl AgsClient {
    /// Every line item of a container matching `query`, following `rel="next"` links.
    pub async fn list_line_items(
        &self,
        auth: &ServiceAuth,
        container: &Url,
        query: &LineItemQuery,
    ) -> Result<Vec<PlatformLineItem>, AgsError> {
        let mut items = Vec::new();
        let mut url = query.url(container);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            seen.insert(url.clone());
            let page = self.line_items_page(auth, &url).await?;
            items.extend(page.items);
            match page.next {
                Some(next) if seen.contains(&next) => {
                    return Err(AgsError::InvalidResponse(
                        "the next page link points back to a page already read",
                    ));
                }
                Some(next) => url = next,
                None => return Ok(items),
            }
        }
        Err(AgsError::InvalidResponse(
            "the line item listing has more pages than the limit",
        ))
    }

    /// One page of a line item container, at `url` (a container URL with filters, or a
    /// `next` link of an earlier page).
    pub async fn line_items_page(
        &self,
        auth: &ServiceAuth,
        url: &Url,
    ) -> Result<LineItemPage, AgsError> {
        let resp = self
            .execute_read(auth, || {
                self.http
                    .get(url.clone())
                    .header(http::header::ACCEPT, MEDIA_TYPE_LINE_ITEMS)
            })
            .await?;
        let next = next_link(resp.headers(), url)?;
        let body = read_body(resp).await?;
        let items: Vec<PlatformLineItem> = serde_json::from_slice(&body).map_err(|_| {
            AgsError::InvalidResponse("the line item container is not a list of line items")
        })?;
        if items.iter().any(|i| !same_host(&i.id, url)) {
            return Err(OTHER_HOST);
        }
        Ok(LineItemPage { items, next })
    }

    /// One line item (§3.2.4).
    pub async fn get_line_item(
        &self,
        auth: &ServiceAuth,
        url: &LineItemUrl,
    ) -> Result<PlatformLineItem, AgsError> {
        let resp = self
            .execute_read(auth, || {
                self.http
                    .get(url.as_url().clone())
                    .header(http::header::ACCEPT, MEDIA_TYPE_LINE_ITEM)
            })
            .await?;
        on_host_of(parse_line_item(&read_body(resp).await?)?, url.as_url())
    }

    /// Creates a line item in a container (§3.2.7): POST to the container URL.
    pub async fn create_line_item(
        &self,
        auth: &ServiceAuth,
        container: &Url,
        item: &LineItem,
    ) -> Result<PlatformLineItem, AgsError> {
        let body = encode(item)?;
        let resp = self
            .execute(auth, SCOPE_LINEITEM, || {
                self.http
                    .post(container.clone())
                    .header(http::header::CONTENT_TYPE, MEDIA_TYPE_LINE_ITEM)
                    .header(http::header::ACCEPT, MEDIA_TYPE_LINE_ITEM)
                    .body(body.clone())
            })
            .await?;
        let location = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| container.join(v).ok());
        let body = read_body(resp).await?;
        let created = match parse_line_item(&body) {
            Ok(created) => created,
            // The body must at least name the new item; a Location header will do when the
            // body holds the fields without the id.
            Err(e) => match (location, serde_json::from_slice::<LineItem>(&body)) {
                (Some(url), Ok(item)) => PlatformLineItem {
                    id: LineItemUrl(url),
                    item,
                },
                _ => return Err(e),
            },
        };
        on_host_of(created, container)
    }

    /// Replaces a line item's fields (§3.2.8): PUT to the line item URL. Send every field,
    /// extensions included: what is left out may be cleared.
    pub async fn update_line_item(
        &self,
        auth: &ServiceAuth,
        item: &PlatformLineItem,
    ) -> Result<PlatformLineItem, AgsError> {
        let body = encode(item)?;
        let resp = self
            .execute(auth, SCOPE_LINEITEM, || {
                self.http
                    .put(item.id.as_url().clone())
                    .header(http::header::CONTENT_TYPE, MEDIA_TYPE_LINE_ITEM)
                    .header(http::header::ACCEPT, MEDIA_TYPE_LINE_ITEM)
                    .body(body.clone())
            })
            .await?;
        let body = read_body(resp).await?;
        // Some platforms answer 204 or an empty 200; then what was sent is what holds.
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(item.clone());
        }
        on_host_of(parse_line_item(&body)?, item.id.as_url())
    }

    /// Deletes a line item (§3.2.9) and, with it, its results on the platform.
    pub async fn delete_line_item(
        &self,
        auth: &ServiceAuth,
        url: &LineItemUrl,
    ) -> Result<(), AgsError> {
        self.execute(auth, SCOPE_LINEITEM, || {
            self.http.delete(url.as_url().clone())
        })
        .await?;
        Ok(())
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, AgsError> {
    serde_json::to_vec(value)
        .map_err(|_| AgsError::InvalidRequest("the line item could not be encoded"))
}

/// Line item URLs are where scores are later posted with a bearer token, so one that
/// names another host than the platform answered from is refused, never stored or used.
const OTHER_HOST: AgsError = AgsError::InvalidResponse("a line item URL points to another host");

fn same_host(id: &LineItemUrl, of: &Url) -> bool {
    id.0.origin() == of.origin()
}

fn on_host_of(item: PlatformLineItem, of: &Url) -> Result<PlatformLineItem, AgsError> {
    if same_host(&item.id, of) {
        Ok(item)
    } else {
        Err(OTHER_HOST)
    }
}

fn parse_line_item(body: &[u8]) -> Result<PlatformLineItem, AgsError> {
    serde_json::from_slice(body)
        .map_err(|_| AgsError::InvalidResponse("the answer is not a line item with an id"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_go_after_an_existing_query() {
        let moodle =
            Url::parse("https://moodle.example/mod/lti/services.php/2/lineitems?type_id=3")
                .unwrap();
        let q = LineItemQuery {
            resource_link_id: Some("rl 1".into()),
            tag: Some("final".into()),
            limit: Some(10),
            ..Default::default()
        };
        assert_eq!(
            q.url(&moodle).as_str(),
            "https://moodle.example/mod/lti/services.php/2/lineitems?type_id=3&resource_link_id=rl+1&tag=final&limit=10"
        );
        let plain = Url::parse("https://canvas.example/api/lti/courses/1/line_items").unwrap();
        assert_eq!(LineItemQuery::default().url(&plain), plain);
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let wire = json!({
            "id": "https://canvas.example/api/lti/courses/1/line_items/7",
            "scoreMaximum": 10,
            "label": "Essay",
            "resourceLinkId": "rl-1",
            "startDateTime": "2026-03-01T08:00:00+01:00",
            "gradesReleased": false,
            "https://canvas.instructure.com/lti/submission_type": {"type": "external_tool"},
        });
        let item: PlatformLineItem = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(item.item.score_maximum, 10.0);
        assert_eq!(item.item.resource_link_id.as_deref(), Some("rl-1"));
        assert_eq!(item.item.grades_released, Some(false));
        assert_eq!(
            item.item.start_date_time.unwrap().unix_timestamp(),
            1_772_348_400
        );
        assert_eq!(item.item.extensions.len(), 1);
        assert!(!item.item.extensions.contains_key("id"));
        let back = serde_json::to_value(&item).unwrap();
        assert_eq!(
            back["https://canvas.instructure.com/lti/submission_type"]["type"],
            "external_tool"
        );
        assert_eq!(back["id"], wire["id"]);
        assert_eq!(back["startDateTime"], "2026-03-01T08:00:00+01:00");
        assert!(back.get("tag").is_none());
    }

    #[test]
    fn a_line_item_without_id_or_maximum_is_refused() {
        assert!(parse_line_item(br#"{"label": "x", "scoreMaximum": 1}"#).is_err());
        assert!(parse_line_item(br#"{"id": "https://l.example/1", "label": "x"}"#).is_err());
        assert!(parse_line_item(b"<html>").is_err());
    }
}
