//! `/_sim/*`: statistics, reset and fault injection (outside Ollama's namespace).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::Sim;
use crate::control::FaultRule;

pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/_sim/stats", get(stats))
        .route("/_sim/reset", post(reset))
        .route("/_sim/faults", post(add_fault).delete(clear_faults))
}

async fn stats(State(sim): State<Sim>) -> Response {
    let mut v = serde_json::to_value(sim.control.snapshot()).unwrap_or_default();
    v["loaded"] = sim
        .sched
        .loaded()
        .iter()
        .map(|l| l.spec.name.clone())
        .collect();
    v["pending"] = sim.sched.pending().into();
    Json(v).into_response()
}

async fn reset(State(sim): State<Sim>) -> StatusCode {
    sim.control.reset();
    StatusCode::NO_CONTENT
}

async fn add_fault(State(sim): State<Sim>, Json(rule): Json<FaultRule>) -> StatusCode {
    sim.control.add_fault(rule);
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(sim): State<Sim>) -> StatusCode {
    sim.control.clear_faults();
    StatusCode::NO_CONTENT
}
