//! Optional inbound bearer-token auth (`api_tokens`). Health probes stay open so orchestrators
//! need no secret. Comparison is constant-time per token.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::{ApiError, OllamaError};
use crate::app::AppState;

/// Paths that never require a token.
pub const OPEN_PATHS: &[&str] = &["/healthz", "/readyz"];

pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let tokens = &state.config.api_tokens;
    let path = request.uri().path();
    let public_metrics = path == "/metrics" && state.config.metrics.public;
    if tokens.is_empty() || OPEN_PATHS.contains(&path) || public_metrics {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .as_bytes();
    let accepted = tokens.iter().fold(false, |ok, t| {
        ok | bool::from(t.expose().as_bytes().ct_eq(presented))
    });
    if accepted {
        return next.run(request).await;
    }
    let message = "foreman: missing or invalid bearer token";
    let mut response = if super::is_proxied(path) {
        OllamaError::new(StatusCode::UNAUTHORIZED, message).into_response()
    } else {
        ApiError::Unauthorized(message.into()).into_response()
    };
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}
