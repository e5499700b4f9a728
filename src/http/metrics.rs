//! `GET /metrics`: Prometheus text format. Gauges of stored state are refreshed from the
//! database on each scrape.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::app::AppState;
use crate::clock::now_ms;
use crate::metrics as m;
use crate::queue;

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (states, keys, pending) = state
        .store
        .read(|c| {
            let pending: i64 = c.query_row(
                "SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )?;
            Ok((queue::counts_by_state(c)?, queue::keys(c)?, pending))
        })
        .await?;
    for s in foreman_api::jobs::JobState::ALL {
        let n = states
            .iter()
            .find(|(name, _)| name == s.as_str())
            .map_or(0, |(_, n)| *n);
        metrics::gauge!(m::JOBS, "state" => s.as_str()).set(n as f64);
    }
    for k in &keys {
        metrics::gauge!(m::JOBS_QUEUED, "drain_key" => k.key.clone()).set(k.queued as f64);
    }
    let oldest = keys.iter().map(|k| k.oldest_at_ms).min();
    metrics::gauge!(m::QUEUE_OLDEST_AGE)
        .set(oldest.map_or(0.0, |at| (now_ms() - at).max(0) as f64 / 1000.0));
    metrics::gauge!(m::WEBHOOK_PENDING).set(pending as f64);
    let mut r = state.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(r)
}
