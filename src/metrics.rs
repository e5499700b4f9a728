//! Prometheus metrics (`metrics` facade + `metrics-exporter-prometheus`), served at `/metrics`.
//!
//! Counters and histograms are recorded where things happen (worker, passthrough, monitor,
//! webhook sender, SQLite writer). Gauges that describe stored state (jobs per state, queue per
//! drain key, oldest queued age, pending webhooks) are computed from the database at scrape time,
//! so they are right after a restart. Labels are bounded: model names and drain keys (operator
//! vocabulary), passthrough routes from a fixed list, never job ids.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const JOBS: &str = "foreman_jobs";
pub const JOBS_QUEUED: &str = "foreman_jobs_queued";
pub const QUEUE_OLDEST_AGE: &str = "foreman_queue_oldest_age_seconds";
pub const JOBS_FINISHED: &str = "foreman_jobs_finished_total";
pub const JOB_PHASE: &str = "foreman_job_phase_seconds";
pub const TOKENS_GENERATED: &str = "foreman_tokens_generated_total";
pub const PROMPT_TOKENS: &str = "foreman_prompt_tokens_total";
pub const TOKENS_PER_SECOND: &str = "foreman_tokens_per_second";
pub const MODEL_LOADS: &str = "foreman_model_loads_total";
pub const MODEL_UNLOADS: &str = "foreman_model_unloads_total";
pub const MODEL_LOAD_SECONDS: &str = "foreman_model_load_seconds";
pub const TARGET_UP: &str = "foreman_target_up";
pub const TARGET_STATE_CHANGES: &str = "foreman_target_state_changes_total";
pub const TARGET_VRAM: &str = "foreman_target_vram_used_bytes";
pub const TARGET_MODEL_VRAM: &str = "foreman_target_model_vram_bytes";
pub const PASSTHROUGH_REQUESTS: &str = "foreman_passthrough_requests_total";
pub const PASSTHROUGH_TTFB: &str = "foreman_passthrough_time_to_first_byte_seconds";
pub const PASSTHROUGH_DURATION: &str = "foreman_passthrough_duration_seconds";
pub const WEBHOOK_DELIVERIES: &str = "foreman_webhook_deliveries_total";
pub const WEBHOOK_PENDING: &str = "foreman_webhook_pending";
pub const SQLITE_WRITE: &str = "foreman_sqlite_write_seconds";
pub const HOST_LOAD: &str = "foreman_host_load_average";
pub const HOST_CORES: &str = "foreman_host_cpu_cores";
pub const HOST_AVAILABLE_CORES: &str = "foreman_host_available_cores";
pub const HOST_MEMORY_USED: &str = "foreman_host_memory_used_bytes";
pub const HOST_MEMORY_TOTAL: &str = "foreman_host_memory_total_bytes";
pub const HOST_CPU_TEMPERATURE: &str = "foreman_host_cpu_temperature_celsius";
pub const HOST_GPU_VRAM_TOTAL: &str = "foreman_host_gpu_vram_total_bytes";
pub const HOST_GPU_VRAM_FREE: &str = "foreman_host_gpu_vram_free_bytes";
pub const WORKER_PAUSED: &str = "foreman_worker_paused";

/// Every metric name foreman exports (the dashboard test checks against it).
pub const ALL: &[&str] = &[
    JOBS,
    JOBS_QUEUED,
    QUEUE_OLDEST_AGE,
    JOBS_FINISHED,
    JOB_PHASE,
    TOKENS_GENERATED,
    PROMPT_TOKENS,
    TOKENS_PER_SECOND,
    MODEL_LOADS,
    MODEL_UNLOADS,
    MODEL_LOAD_SECONDS,
    TARGET_UP,
    TARGET_STATE_CHANGES,
    TARGET_VRAM,
    TARGET_MODEL_VRAM,
    PASSTHROUGH_REQUESTS,
    PASSTHROUGH_TTFB,
    PASSTHROUGH_DURATION,
    WEBHOOK_DELIVERIES,
    WEBHOOK_PENDING,
    SQLITE_WRITE,
    HOST_LOAD,
    HOST_CORES,
    HOST_AVAILABLE_CORES,
    HOST_MEMORY_USED,
    HOST_MEMORY_TOTAL,
    HOST_CPU_TEMPERATURE,
    HOST_GPU_VRAM_TOTAL,
    HOST_GPU_VRAM_FREE,
    WORKER_PAUSED,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder once per process and returns the render handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
                1800.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}

/// The passthrough route label: known Ollama/OpenAI paths, else `other` (bounded cardinality).
pub fn route_label(path: &str) -> &'static str {
    const ROUTES: &[&str] = &[
        "/",
        "/api/version",
        "/api/tags",
        "/api/ps",
        "/api/show",
        "/api/chat",
        "/api/generate",
        "/api/embed",
        "/api/embeddings",
        "/api/pull",
        "/api/push",
        "/api/create",
        "/api/copy",
        "/api/delete",
        "/v1/models",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
    ];
    ROUTES
        .iter()
        .find(|r| **r == path)
        .copied()
        .unwrap_or("other")
}
