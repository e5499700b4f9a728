//! `GET /status`: foreman's own view of its target and its queue.

use axum::Json;
use axum::extract::State;
use foreman_api::health::Status;
use foreman_api::jobs::QueueStatus;

use super::error::ApiError;
use crate::app::AppState;
use crate::clock::now_ms;
use crate::queue;

#[utoipa::path(get, path = "/status", tag = "health",
    responses((status = 200, body = Status), (status = 401, body = foreman_api::ErrorBody)))]
pub async fn status(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    let mut queue_status = state
        .store
        .read(|c| {
            let mut q = QueueStatus::default();
            for (s, n) in queue::counts_by_state(c)? {
                q.by_state.insert(s, n);
            }
            let keys = queue::keys(c)?;
            let oldest = keys.iter().map(|k| k.oldest_at_ms).min();
            q.oldest_queued_age_s = oldest.map(|at| (now_ms() - at).max(0) as f64 / 1000.0);
            for k in keys {
                q.queued_by_key
                    .insert(k.key, u64::try_from(k.queued).unwrap_or(0));
            }
            Ok(q)
        })
        .await?;
    if let Ok(w) = state.worker_status.lock() {
        queue_status.current_key = w.current_key.clone();
        queue_status.waiting = w.waiting.clone();
    }
    Ok(Json(Status {
        target: state.monitor.status(),
        queue: queue_status,
    }))
}
