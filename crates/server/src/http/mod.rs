//! Routes and the middleware every request passes through.

mod api;
mod audit;
mod catalog;
mod deep_linking;
mod error;
mod google_addons;
mod google_api;
mod google_oauth;
mod google_push;
mod html;
mod line_items;
mod login_state;
mod lti;
mod members;
mod metrics;
mod moodle_events;
mod ops;
mod register;
mod replay;
mod scores_batch;
mod storage;
mod webhooks;

use crate::App;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Largest request body accepted (launch forms with big id_tokens fit easily).
const BODY_LIMIT: usize = 256 * 1024;

/// Pages are shown inside LMS iframes, so framing is allowed; nothing else is.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:; form-action *; frame-ancestors *; base-uri 'none'";

/// lmsbridge's routes with its middleware, ready to serve or to nest more routes into.
pub fn router(app: App) -> Router {
    let routes = Router::new()
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(metrics::metrics))
        .route("/.well-known/jwks.json", get(ops::jwks))
        .route("/lti/login", get(lti::login).post(lti::login))
        .route(
            "/lti/login/{registration}",
            get(lti::login_for).post(lti::login_for),
        )
        .route("/lti/launch", post(lti::launch))
        .route("/lti/launch/{registration}", post(lti::launch_for))
        .route("/lti/register", get(register::register))
        .route(
            "/lti/deep_linking",
            get(deep_linking::picker).post(deep_linking::submit),
        )
        .route("/api/v1/launches/redeem", post(api::redeem))
        .route("/api/v1/scores", post(api::submit_score))
        .route("/api/v1/scores/{id}", get(api::get_score))
        .route("/api/v1/scores/{id}/replay", post(replay::replay_one))
        .route("/api/v1/scores:replay-dead", post(replay::replay_all))
        .route("/api/v1/audit", get(audit::list))
        .route(
            "/api/v1/webhook",
            get(webhooks::get)
                .put(webhooks::set)
                .delete(webhooks::remove),
        )
        .route("/api/v1/contexts/{id}/sync", post(members::start_sync))
        .route("/api/v1/contexts/{id}/members", get(members::list_members))
        .route("/api/v1/roster-syncs/{id}", get(members::get_sync))
        .route("/api/v1/catalog", get(catalog::list).post(catalog::create))
        .route(
            "/api/v1/catalog/{id}",
            get(catalog::get_item)
                .patch(catalog::update)
                .delete(catalog::archive),
        )
        .merge(line_items::routes(&app))
        .merge(google_addons::routes())
        .route("/google/push", post(google_push::receive))
        .route("/google/oauth/start", get(google_oauth::start))
        .route("/google/oauth/callback", get(google_oauth::callback))
        .route("/api/v1/google", get(google_api::status))
        .route(
            "/api/v1/google/grants/{id}",
            axum::routing::delete(google_api::disconnect),
        )
        .route(
            "/api/v1/google/connect-links",
            post(google_api::connect_link),
        )
        .route(
            "/api/v1/google/courses",
            get(google_api::courses).post(google_api::link_course),
        )
        .route(
            "/api/v1/contexts/{id}/google/course-work",
            post(google_api::create_course_work),
        )
        // Every body but a score batch's is small; the batch route, added after this layer,
        // gets the larger limit below.
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .route("/api/v1/scores:batch", post(scores_batch::submit_batch))
        // The Moodle plugin's batches (at most 1 MiB) are read and bounded by the handler.
        .route(
            "/moodle/events",
            moodle_events::route(moodle_events::MAX_CONCURRENT_BATCHES),
        )
        .with_state(app);
    with_middleware(routes)
}

/// The layers every response gets: request ids, logging, limits, security headers, and a
/// panic turned into a plain 500.
pub fn with_middleware(routes: Router) -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
    routes
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| panic_response()))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT.max(scores_batch::BODY_LIMIT)))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                // The path only: query strings can carry handoff codes and hints.
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
}

fn panic_response() -> Response {
    tracing::error!("a request handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(serde_json::json!({"error": "internal", "message": "something went wrong"})),
    )
        .into_response()
}
