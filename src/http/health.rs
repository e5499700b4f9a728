//! `/healthz` (the process serves) and `/readyz` (the database accepts writes).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use foreman_api::health::Readiness;

use crate::app::AppState;

/// How long `/readyz` waits for the database before calling foreman unready.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process serves", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Readiness), (status = 503, description = "The database does not take writes", body = Readiness)))]
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
