//! `/healthz` (the process serves) and `/readyz` (the database accepts writes).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use foreman_api::health::Readiness;

use crate::app::AppState;

/// How long `/readyz` waits for the database before calling foreman unready.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let reason = match tokio::time::timeout(READY_TIMEOUT, state.store.ping_write()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("database write failed: {e}")),
        Err(_) => Some(format!(
            "database did not answer a write within {}s",
            READY_TIMEOUT.as_secs()
        )),
    };
    let status = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            ready: reason.is_none(),
            reason,
        }),
    )
}
