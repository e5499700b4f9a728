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
    /// The machine foreman runs on; present when `host_metrics.enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostStatus>,
    /// Whether the availability gate lets the worker start jobs; present when
    /// `host_metrics.enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
}

/// One reading of the host's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostStatus {
    /// When it was taken (RFC 3339).
    pub at: String,
    pub load_average: LoadAverage,
    pub physical_cores: u32,
    /// `max(1, physical_cores - load_1m)`.
    pub available_cores: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub memory_percent: f64,
    /// Hottest CPU sensor, in °C; absent when the host exposes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_temperature_c: Option<f64>,
    pub gpu: GpuStatus,
}

/// CPU load averages over 1, 5 and 15 minutes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LoadAverage {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

/// What is known about the GPU(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GpuStatus {
    /// `nvidia`, or `none` when no GPU could be queried.
    pub gpu_type: String,
    /// `nvml` or `nvidia-smi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Summed over devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram_free_bytes: Option<u64>,
    /// Why there is no GPU reading (NVML absent, nvidia-smi timed out, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The availability gate: the worker starts no job while the host is over its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Availability {
    pub paused: bool,
    /// Which limit is exceeded, while paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the gate last opened or closed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// Body of `GET /status/history`: snapshots since the given time, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusHistory {
    /// One per change of the target's state or loaded models.
    pub target: Vec<TargetSnapshot>,
    /// One per collection (when `host_metrics.enabled`).
    pub host: Vec<HostStatus>,
}

/// The target as one change left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TargetSnapshot {
    pub at: String,
    pub state: TargetState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub loaded_models: Vec<LoadedModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
