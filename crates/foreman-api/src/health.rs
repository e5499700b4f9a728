//! Bodies of the health routes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `true` when the database answered a write.
    pub ready: bool,
    /// Why foreman is not ready; absent when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Body of `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub target: TargetStatus,
    pub queue: crate::jobs::QueueStatus,
}

/// Whether the target answered its last poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetState {
    /// Not polled yet.
    Unknown,
    Up,
    Down,
}

/// The monitor's view of the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TargetStatus {
    pub url: String,
    pub state: TargetState,
    /// When the current state began (RFC 3339).
    pub since: String,
    /// When the target last answered (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// Why the last poll failed, while down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Models resident in memory (`/api/ps`).
    pub loaded_models: Vec<LoadedModel>,
    /// Models installed on the target (`/api/tags`).
    pub available_models: Vec<String>,
    /// Sum of `size_vram` over loaded models, in bytes.
    pub vram_used_bytes: u64,
}

/// One resident model, as `/api/ps` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoadedModel {
    pub name: String,
    pub size: u64,
    pub size_vram: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
}
