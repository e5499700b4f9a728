//! The structured error body of foreman's own routes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `{"error": {...}}`, the body of every non-2xx answer on foreman's own routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, in a stable machine-readable `code` and a human `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case identifier (`not_found`, `invalid_request`, `unavailable`, ...).
    pub code: String,
    /// Human-readable explanation; may change between versions.
    pub message: String,
    /// The offending request field, as a dotted path, when one is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                field: None,
            },
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.error.field = Some(field.into());
        self
    }
}
