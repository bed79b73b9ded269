//! `GET /metrics`, Prometheus text format: the passback queue by state, attempts by outcome
//! and platform kind, throttling answers, delivery latency, and this process's limiters.
//! When `LMSBRIDGE_METRICS_TOKEN` is set, scrapers must send it as a bearer token.

use crate::App;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use store::crypto::constant_time_eq;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(token) = &app.settings().metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(presented.as_bytes(), token.as_bytes()) {
            return (StatusCode::UNAUTHORIZED, "metrics need the bearer token\n").into_response();
        }
    }
    let figures = match app.store().passback_figures().await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "metrics could not be read");
            return (StatusCode::SERVICE_UNAVAILABLE, "metrics unavailable\n").into_response();
        }
    };
    let mut out = String::with_capacity(2048);
    let _ = writeln!(
        out,
        "# HELP lmsbridge_scores Scores in the passback queue by state."
    );
    let _ = writeln!(out, "# TYPE lmsbridge_scores gauge");
    for state in [
        "queued",
        "sending",
        "retrying",
        "delivered",
        "dead",
        "superseded",
        "held",
    ] {
        let n = figures
            .scores_by_state
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(out, "lmsbridge_scores{{state=\"{state}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP lmsbridge_score_attempts_total Delivery attempts by outcome and platform kind."
    );
    let _ = writeln!(out, "# TYPE lmsbridge_score_attempts_total counter");
    for (outcome, kind, n) in &figures.attempts {
        let _ = writeln!(
            out,
            "lmsbridge_score_attempts_total{{outcome=\"{}\",platform_kind=\"{}\"}} {n}",
            label(outcome),
            label(kind)
        );
    }
    let _ = writeln!(
        out,
        "# HELP lmsbridge_score_throttled_total Attempts a platform answered with a rate limit."
    );
    let _ = writeln!(out, "# TYPE lmsbridge_score_throttled_total counter");
    let _ = writeln!(out, "lmsbridge_score_throttled_total {}", figures.throttled);
    let _ = writeln!(
        out,
        "# HELP lmsbridge_score_delivery_seconds Latency of delivery attempts."
    );
    let _ = writeln!(out, "# TYPE lmsbridge_score_delivery_seconds histogram");
    for (bound, n) in store::LATENCY_BUCKETS_MS
        .iter()
        .zip(&figures.latency_buckets)
    {
        let _ = writeln!(
            out,
            "lmsbridge_score_delivery_seconds_bucket{{le=\"{}\"}} {n}",
            *bound as f64 / 1000.0
        );
    }
    let _ = writeln!(
        out,
        "lmsbridge_score_delivery_seconds_bucket{{le=\"+Inf\"}} {}",
        figures.latency_count
    );
    let _ = writeln!(
        out,
        "lmsbridge_score_delivery_seconds_sum {}",
        figures.latency_sum_ms as f64 / 1000.0
    );
    let _ = writeln!(
        out,
        "lmsbridge_score_delivery_seconds_count {}",
        figures.latency_count
    );
    let limiters = app.inner().limiters.snapshot();
    let _ = writeln!(
        out,
        "# HELP lmsbridge_platform_concurrency_limit This process's adaptive concurrency limit per platform."
    );
    let _ = writeln!(out, "# TYPE lmsbridge_platform_concurrency_limit gauge");
    for (platform, limit, _, _) in &limiters {
        let _ = writeln!(
            out,
            "lmsbridge_platform_concurrency_limit{{platform=\"{platform}\"}} {limit}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP lmsbridge_platform_in_flight Requests this process has in flight per platform."
    );
    let _ = writeln!(out, "# TYPE lmsbridge_platform_in_flight gauge");
    for (platform, _, in_flight, _) in &limiters {
        let _ = writeln!(
            out,
            "lmsbridge_platform_in_flight{{platform=\"{platform}\"}} {in_flight}"
        );
    }
    let mut resp = (StatusCode::OK, out).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
