//! Bodies of the health routes.

use serde::{Deserialize, Serialize};

/// Body of `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// `true` when the database answered a write.
    pub ready: bool,
    /// Why foreman is not ready; absent when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
