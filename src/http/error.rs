//! Errors at the HTTP edge, one type per response shape.
//!
//! - [`ApiError`]: foreman's own routes; structured body `{"error":{"code","message","field"?}}`.
//! - [`OllamaError`]: proxied Ollama routes; Ollama's own shape `{"error":"..."}`, so clients
//!   that parse Ollama errors keep working.
//!
//! Internal details (SQL errors) are logged here and never sent to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use foreman_api::ErrorBody;

use crate::store::StoreError;

/// An error answered on one of foreman's own routes.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("{message}")]
    BadRequest {
        message: String,
        field: Option<String>,
    },
    /// 401: a bearer token is required.
    #[error("{0}")]
    Unauthorized(String),
    /// 404: no such resource.
    #[error("{0}")]
    NotFound(String),
    /// 408: the client stopped sending its request (`request_read_timeout`).
    #[error("{0}")]
    Timeout(String),
    /// 409: the resource is in a state that forbids the action.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body exceeds `max_body_bytes`.
    #[error("{0}")]
    TooLarge(String),
    /// 422: well-formed but semantically invalid.
    #[error("{message}")]
    Unprocessable {
        message: String,
        field: Option<String>,
    },
    /// 429: admission refused; retry after the given seconds.
    #[error("{message}")]
    TooMany { message: String, retry_after: u64 },
    /// 503: foreman cannot serve this now (database full or closed).
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            field: None,
        }
    }

    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, Option<&str>) {
        match self {
            Self::BadRequest { field, .. } => {
                (StatusCode::BAD_REQUEST, "invalid_request", field.as_deref())
            }
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            Self::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout", None),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", None),
            Self::Unprocessable { field, .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unprocessable",
                field.as_deref(),
            ),
            Self::TooMany { .. } => (StatusCode::TOO_MANY_REQUESTS, "queue_full", None),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        }
    }
}

/// True when `e` (or an error it wraps) is the request-body timeout: the client went silent.
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        next = err.source();
    }
    false
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_full() {
            tracing::error!(error = %e, "database or disk full");
            return Self::Unavailable("storage is full; try again later".into());
        }
        match e {
            StoreError::Closed => Self::Unavailable("foreman is shutting down".into()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = self.parts();
        if let Self::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error");
        }
        let mut body = ErrorBody::new(code, self.to_string());
        if let Some(field) = field {
            body = body.with_field(field);
        }
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::TooMany { retry_after, .. } = &self
            && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

/// An error answered on a proxied Ollama route, in Ollama's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OllamaError {
    pub status: StatusCode,
    pub message: String,
}

impl OllamaError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}
