//! Building service URLs from the ones platforms hand out.
//!
//! Moodle's line item URLs carry `?type_id=N`; the scores endpoint is
//! `…/lineitem/scores?type_id=N`, so segments go before the query, never after it.

use url::Url;

/// Appends one path segment, keeping any query string in place.
pub fn append_segment(base: &Url, segment: &str) -> Url {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push(segment);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_query_after_the_new_segment() {
        let moodle = Url::parse(
            "https://moodle.example/mod/lti/services.php/2/lineitems/7/lineitem?type_id=3",
        )
        .unwrap();
        assert_eq!(
            append_segment(&moodle, "scores").as_str(),
            "https://moodle.example/mod/lti/services.php/2/lineitems/7/lineitem/scores?type_id=3"
        );
        let canvas = Url::parse("https://canvas.example/api/lti/courses/1/line_items/5/").unwrap();
        assert_eq!(
            append_segment(&canvas, "results").as_str(),
            "https://canvas.example/api/lti/courses/1/line_items/5/results"
        );
    }
}
