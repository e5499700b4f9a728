//! `GET /status`: foreman's own view of its target and its queue.

use axum::Json;
use std::collections::HashMap;

use axum::extract::{Query, State};
use foreman_api::health::{Status, StatusHistory, TargetSnapshot, TargetState};
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
        host: state.host.status(),
        availability: state.host.availability(),
    }))
}

/// Most snapshots of each kind one history answer holds.
const MAX_HISTORY: u32 = 5000;

/// `GET /status/history?since=&limit=`: target and host snapshots since a time, oldest first.
#[utoipa::path(get, path = "/status/history", tag = "health",
    params(("since" = Option<String>, Query, description = "RFC 3339; default: one hour ago"),
           ("limit" = Option<u32>, Query, description = "most snapshots of each kind, 1 to 5000 (default 500); page by moving `since`")),
    responses((status = 200, body = StatusHistory), (status = 400, body = foreman_api::ErrorBody), (status = 401, body = foreman_api::ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<StatusHistory>, ApiError> {
    let since_ms = match query.get("since") {
        None => now_ms() - 3_600_000,
        Some(s) => crate::clock::parse_rfc3339_ms(s).ok_or_else(|| {
            ApiError::bad_field(
                "since",
                format!("since must be an RFC 3339 time, got {s:?}"),
            )
        })?,
    };
    let limit = match query.get("limit") {
        None => 500,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_HISTORY).contains(n))
            .ok_or_else(|| ApiError::bad_field("limit", "limit must be 1 to 5000"))?,
    };
    let history = state
        .store
        .read(move |c| read_history(c, since_ms, limit))
        .await?;
    Ok(Json(history))
}

fn read_history(
    c: &rusqlite::Connection,
    since_ms: i64,
    limit: u32,
) -> crate::store::Result<StatusHistory> {
    let mut target = c.prepare(
        "SELECT at, state, version, loaded_models, error FROM target_snapshots
         WHERE at_ms >= ?1 ORDER BY id LIMIT ?2",
    )?;
    let target = target
        .query_map(rusqlite::params![since_ms, limit], |r| {
            let state: String = r.get(1)?;
            let loaded: String = r.get(3)?;
            Ok(TargetSnapshot {
                at: r.get(0)?,
                state: match state.as_str() {
                    "up" => TargetState::Up,
                    "down" => TargetState::Down,
                    _ => TargetState::Unknown,
                },
                version: r.get(2)?,
                loaded_models: serde_json::from_str(&loaded).unwrap_or_default(),
                error: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut host =
        c.prepare("SELECT snapshot FROM host_snapshots WHERE at_ms >= ?1 ORDER BY id LIMIT ?2")?;
    let host = host
        .query_map(rusqlite::params![since_ms, limit], |r| {
            r.get::<_, String>(0)
        })?
        .filter_map(|row| row.ok().and_then(|json| serde_json::from_str(&json).ok()))
        .collect();
    Ok(StatusHistory { target, host })
}
