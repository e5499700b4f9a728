//! The HTTP edge: the router, its middleware and the handlers of foreman's own routes.
//!
//! - [`proxy`]: passthrough of Ollama's and OpenAI's routes to the target.
//! - [`health`], [`status`]: foreman's own routes.
//! - [`auth`]: optional inbound bearer tokens; [`error`]: one error type per response shape.

pub mod auth;
pub mod error;
pub mod health;
pub mod jobs;
pub mod metrics;
pub mod openapi;
pub mod proxy;
pub mod server;
pub mod status;

use axum::Router;
use axum::http::{HeaderName, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use error::ApiError;

/// Header carrying the request id, generated when the client sent none.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Paths forwarded to the target: `/`, `/api/*`, `/v1/*`.
pub fn is_proxied(path: &str) -> bool {
    path == "/" || path.starts_with("/api/") || path.starts_with("/v1/")
}

/// Builds the complete router with its middleware.
pub fn router(state: AppState) -> Router {
    let trace = TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
        let id = req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
    });
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/status", get(status::status))
        .route("/status/history", get(status::history))
        .route("/jobs", axum::routing::post(jobs::submit).get(jobs::list))
        .route("/jobs/{id}", get(jobs::get).delete(jobs::delete))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/metrics", get(metrics::metrics))
        .route("/jobs/{id}/cancel", axum::routing::post(jobs::cancel))
        .route("/jobs/{id}/events", get(jobs::events))
        .route("/jobs/{id}/deliveries", get(jobs::deliveries))
        .route("/jobs/{id}/artifact", get(jobs::artifact))
        .route("/", any(proxy::forward))
        .route("/api/{*rest}", any(proxy::forward))
        .route("/v1/{*rest}", any(proxy::forward))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.max_body_bytes,
        ))
        // A client that stops sending its body mid-way is cut (slowloris on bodies).
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.config.request_read_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .with_state(state)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(trace)
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

async fn not_found() -> Response {
    ApiError::NotFound("no such route".into()).into_response()
}
