//! `GET /status`: foreman's own view of its target (and, later, its queue).

use axum::Json;
use axum::extract::State;
use foreman_api::health::Status;

use crate::app::AppState;

pub async fn status(State(state): State<AppState>) -> Json<Status> {
    Json(Status {
        target: state.monitor.status(),
    })
}
