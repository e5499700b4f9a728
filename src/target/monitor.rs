//! The target monitor: polls `/api/version`, `/api/ps` and `/api/tags`, keeps the current
//! [`TargetStatus`] in a `watch` channel (the worker waits on it for the target to come up),
//! and persists every change of state or of the loaded-model set to `target_snapshots`.
//!
//! While the target is up it polls every `poll_interval`; while down it backs off from 500 ms
//! to 5 s. [`Monitor::recheck`] wakes it at once (the worker calls it after a failure).

use std::sync::Arc;
use std::time::Duration;

use foreman_api::health::{LoadedModel, TargetState, TargetStatus};
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::Target;
use crate::clock::now_rfc3339;
use crate::store::Store;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
// Kept short: the worker waits on the monitor to see the target back, so this bounds how long
// jobs sit idle after a sleeping target wakes; three small GETs per 5 s cost a dead host nothing.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest a single poll may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer the monitor reads from one poll (a target with thousands of models stays
/// far below; a misbehaving one must not make foreman buffer gigabytes).
const MAX_POLL_BODY: usize = 8 * 1024 * 1024;

pub struct Monitor {
    target: Target,
    store: Store,
    view: watch::Sender<TargetStatus>,
    recheck: Notify,
    poll_interval: Duration,
    history_limit: u32,
}

/// What one poll saw.
struct Observation {
    version: Option<String>,
    loaded: Vec<LoadedModel>,
    available: Vec<String>,
}

impl Monitor {
    pub fn new(target: Target, store: Store, poll_interval: Duration, history_limit: u32) -> Self {
        let initial = TargetStatus {
            url: target.url().to_string(),
            state: TargetState::Unknown,
            since: now_rfc3339(),
            last_seen: None,
            last_error: None,
            version: None,
            loaded_models: Vec::new(),
            available_models: Vec::new(),
            vram_used_bytes: 0,
        };
        Self {
            target,
            store,
            view: watch::channel(initial).0,
            recheck: Notify::new(),
            poll_interval,
            history_limit,
        }
    }

    /// The current view.
    pub fn status(&self) -> TargetStatus {
        self.view.borrow().clone()
    }

    /// Follows changes of the view.
    pub fn subscribe(&self) -> watch::Receiver<TargetStatus> {
        self.view.subscribe()
    }

    /// Asks for a poll now instead of at the next interval.
    pub fn recheck(&self) {
        self.recheck.notify_one();
    }

    /// Polls until `stop` is cancelled.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            self.poll_once().await;
            let delay = if self.view.borrow().state == TargetState::Up {
                backoff = FIRST_BACKOFF;
                self.poll_interval
            } else {
                let d = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                d
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.recheck.notified() => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// One poll: updates the view and persists a snapshot when something changed.
    pub async fn poll_once(&self) {
        let observed = tokio::time::timeout(POLL_TIMEOUT, self.observe()).await;
        let observed = observed.unwrap_or_else(|_| Err("poll timed out".to_string()));
        let mut changed = false;
        self.view.send_modify(|v| changed = apply(v, observed));
        if changed {
            self.persist().await;
        }
    }

    async fn observe(&self) -> Result<Observation, String> {
        let (version, ps, tags) = tokio::join!(
            self.get_json("/api/version"),
            self.get_json("/api/ps"),
            self.get_json("/api/tags"),
        );
        let version = version?;
        let ps = ps?;
        let tags = tags?;
        Ok(Observation {
            version: version
                .get("version")
                .and_then(Value::as_str)
                .map(str::to_string),
            loaded: loaded_models(&ps),
            available: tags
                .get("models")
                .and_then(Value::as_array)
                .map(|ms| {
                    ms.iter()
                        .filter_map(|m| m.get("name").and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    async fn get_json(&self, path: &str) -> Result<Value, String> {
        let response = self
            .target
            .request(Method::GET, path)
            .send()
            .await
            .map_err(|e| super::root_cause(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{path} answered {status}"));
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| format!("{path}: {}", super::root_cause(&e)))?;
            if body.len() + chunk.len() > MAX_POLL_BODY {
                return Err(format!("{path}: answer larger than {MAX_POLL_BODY} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("{path}: invalid JSON: {e}"))
    }

    async fn persist(&self) {
        let v = self.status();
        let limit = i64::from(self.history_limit);
        let loaded = serde_json::to_string(&v.loaded_models).unwrap_or_else(|_| "[]".into());
        let state = match v.state {
            TargetState::Unknown => "unknown",
            TargetState::Up => "up",
            TargetState::Down => "down",
        };
        let result = self
            .store
            .write(move |c| {
                c.execute(
                    "INSERT INTO target_snapshots (at, at_ms, state, version, loaded_models, error)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    rusqlite::params![
                        now_rfc3339(),
                        crate::clock::now_ms(),
                        state,
                        v.version,
                        loaded,
                        v.last_error
                    ],
                )?;
                c.execute(
                    "DELETE FROM target_snapshots WHERE id <= (SELECT max(id) FROM target_snapshots) - ?1",
                    [limit],
                )?;
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot record target snapshot");
        }
    }
}

/// Folds an observation into the view; true when the state or the loaded set changed.
fn apply(v: &mut TargetStatus, observed: Result<Observation, String>) -> bool {
    let before_state = v.state;
    let before_loaded: Vec<String> = v.loaded_models.iter().map(|m| m.name.clone()).collect();
    let was_up = before_state == TargetState::Up;
    match observed {
        Ok(o) => {
            v.state = TargetState::Up;
            v.last_seen = Some(now_rfc3339());
            v.last_error = None;
            v.version = o.version;
            v.vram_used_bytes = o.loaded.iter().map(|m| m.size_vram).sum();
            v.loaded_models = o.loaded;
            v.available_models = o.available;
        }
        Err(e) => {
            v.state = TargetState::Down;
            v.last_error = Some(e);
            v.loaded_models.clear();
            v.vram_used_bytes = 0;
        }
    }
    if v.state != before_state {
        v.since = now_rfc3339();
        match v.state {
            TargetState::Up => tracing::info!(url = %v.url, version = ?v.version, "target is up"),
            _ => tracing::warn!(url = %v.url, error = ?v.last_error, "target is down"),
        }
    }
    let after_loaded: Vec<String> = v.loaded_models.iter().map(|m| m.name.clone()).collect();
    record(v, was_up, &before_loaded, &after_loaded);
    v.state != before_state || before_loaded != after_loaded
}

/// Target metrics; loads and unloads are seen as changes of the loaded set between two polls
/// while the target is up (a load and unload between two polls goes unseen).
fn record(v: &TargetStatus, was_up: bool, before: &[String], after: &[String]) {
    use crate::metrics as m;
    let up = v.state == TargetState::Up;
    metrics::gauge!(m::TARGET_UP).set(if up { 1.0 } else { 0.0 });
    metrics::gauge!(m::TARGET_VRAM).set(v.vram_used_bytes as f64);
    // Per model: resident ones with their size, the ones that just left at 0.
    for model in &v.loaded_models {
        metrics::gauge!(m::TARGET_MODEL_VRAM, "model" => model.name.clone())
            .set(model.size_vram as f64);
    }
    for gone in before.iter().filter(|n| !after.contains(n)) {
        metrics::gauge!(m::TARGET_MODEL_VRAM, "model" => gone.clone()).set(0.0);
    }
    if up != was_up {
        metrics::counter!(m::TARGET_STATE_CHANGES, "to" => if up { "up" } else { "down" })
            .increment(1);
    }
    if !(up && was_up) {
        return;
    }
    for model in after.iter().filter(|n| !before.contains(n)) {
        metrics::counter!(m::MODEL_LOADS, "model" => model.clone()).increment(1);
    }
    for model in before.iter().filter(|n| !after.contains(n)) {
        metrics::counter!(m::MODEL_UNLOADS, "model" => model.clone()).increment(1);
    }
}

fn loaded_models(ps: &Value) -> Vec<LoadedModel> {
    ps.get("models")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .filter_map(|m| {
                    Some(LoadedModel {
                        name: m.get("name")?.as_str()?.to_string(),
                        size: m.get("size").and_then(Value::as_u64).unwrap_or(0),
                        size_vram: m.get("size_vram").and_then(Value::as_u64).unwrap_or(0),
                        expires_at: m
                            .get("expires_at")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        context_length: m.get("context_length").and_then(Value::as_u64),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}
