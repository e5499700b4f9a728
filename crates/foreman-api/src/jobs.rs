//! Jobs: the submit body, the job view, states and usage.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Lifecycle of a job. Every job passes `loading` (where foreman makes sure its model is
/// resident), so consumers always see the same sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Loading,
    Working,
    Done,
    Failed,
    Canceled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Loading,
        JobState::Working,
        JobState::Done,
        JobState::Failed,
        JobState::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Loading => "loading",
            JobState::Working => "working",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Done | JobState::Failed | JobState::Canceled)
    }
}

/// Which Ollama endpoint a job targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    Chat,
    Generate,
    Embed,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Chat => "chat",
            JobKind::Generate => "generate",
            JobKind::Embed => "embed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "chat" => Some(JobKind::Chat),
            "generate" => Some(JobKind::Generate),
            "embed" => Some(JobKind::Embed),
            _ => None,
        }
    }

    /// The Ollama path the request body is sent to.
    pub fn path(self) -> &'static str {
        match self {
            JobKind::Chat => "/api/chat",
            JobKind::Generate => "/api/generate",
            JobKind::Embed => "/api/embed",
        }
    }
}

/// Body of `POST /jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    /// An Ollama `/api/chat`, `/api/generate` or `/api/embed` body, sent to the target as given.
    #[schema(value_type = Object)]
    pub request: Value,
    /// Optional when obvious from the body (`messages` → chat, `prompt` → generate, `input` → embed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<JobKind>,
    /// Where state changes are delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSubscription>,
    /// Opaque to foreman; returned in the job view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// A job's webhook subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSubscription {
    /// An http(s) URL of a receiver the operator trusts.
    pub url: String,
    /// States to be told about; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<JobState>>,
}

/// Body of every webhook delivery (Standard Webhooks envelope).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookPayload {
    /// `job.queued`, `job.loading`, `job.working`, `job.done`, `job.failed`, `job.canceled`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the state changed (RFC 3339).
    pub timestamp: String,
    pub data: JobView,
}

/// When the job entered each state (RFC 3339), absent until it did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Timestamps {
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loading_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// Token counts and durations reported by the target for the job's final attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    /// Model load time as the target reported it (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_ms: Option<u64>,
    /// Target's total request time (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<u64>,
}

/// The job as `GET /jobs/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub kind: JobKind,
    pub model: String,
    /// Model plus the runner options that force a reload; jobs are drained by this key.
    pub drain_key: String,
    pub state: JobState,
    pub timestamps: Timestamps,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// The assembled Ollama response, once `done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
}

/// Queue figures for `/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueStatus {
    /// Jobs per state.
    pub by_state: std::collections::BTreeMap<String, u64>,
    /// Queued jobs per drain key.
    pub queued_by_key: std::collections::BTreeMap<String, u64>,
    /// Age of the oldest queued job, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_queued_age_s: Option<f64>,
    /// The drain key the worker is serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_key: Option<String>,
    /// Why the worker is not starting jobs, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
}

/// Body of `GET /jobs`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One recorded state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobEvent {
    /// Increasing id of the event (across all jobs).
    pub id: i64,
    pub state: JobState,
    /// When it happened (RFC 3339).
    pub at: String,
    /// The attempt number at that moment.
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Body of `GET /jobs/{id}/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobEvents {
    pub events: Vec<JobEvent>,
}
