//! The one job worker: picks the next job by drain key ([`crate::queue::select`]), makes sure its
//! model is resident (`loading`), runs it on the target (`working`), stores the assembled result.
//!
//! # Threading and stepping
//! The worker is a single task. [`Worker::try_run_once`] does at most one job and says what
//! happened ([`Outcome`]); [`Worker::run`] loops over it and sleeps on the right signal (a new
//! job, the target coming up, interactive traffic ending, a retry coming due). Tests call
//! `try_run_once` directly.
//!
//! # Failures
//! - Target unreachable (connect refused, reset before any byte): the job goes back to `queued`
//!   with its attempt refunded; the worker waits for the monitor to see the target up.
//! - 5xx, 429, an in-band error line, a cut stream, a stream silent for `target.idle_timeout`,
//!   no headers within `target.header_timeout` (when set): retried with exponential backoff up
//!   to `worker.max_attempts`, then `failed`.
//! - Other 4xx (unknown model, bad request): `failed` at once with the target's message.
//! - `worker.run_timeout`: the upstream request is dropped (aborted) and the job fails.

pub mod assemble;
pub mod running;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foreman_api::health::TargetState;
use foreman_api::jobs::{JobKind, JobState};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::clock::now_ms;
use crate::queue::{self, Change, Job, select};
use crate::store::StoreError;

/// Throttle of live token-progress notices.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A job reached this state (terminal, or back to `queued` for a retry).
    Ran { id: String, state: JobState },
    /// Nothing is queued.
    Idle,
    /// Jobs are queued but the worker must wait.
    Waiting(Wait),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// Passthrough generations are in flight (within `interactive_grace`).
    Interactive,
    /// The target is down.
    TargetDown,
    /// Every queued job is in retry backoff until this time (ms).
    Backoff(i64),
    /// The host is over its limits (availability gate).
    HostBusy,
}

/// What `/status` shows of the worker.
#[derive(Debug, Clone, Default)]
pub struct WorkerStatus {
    pub current_key: Option<String>,
    pub waiting: Option<String>,
}

/// How a call to the target failed.
#[derive(Debug)]
enum Failure {
    /// Not the job's fault: requeue without consuming an attempt.
    Unreachable(String),
    /// Retry with backoff.
    Retryable(String),
    /// Fail now.
    Fatal(String),
    /// A cancel request aborted the attempt.
    Canceled,
}

pub struct Worker {
    state: AppState,
    current: Option<(String, String)>,
    interactive_since: Option<Instant>,
    interactive_epoch: u64,
}

impl Worker {
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            current: None,
            interactive_since: None,
            interactive_epoch: 0,
        }
    }

    /// Loops until `stop`, sleeping on the signal that matters for each outcome.
    pub async fn run(mut self, stop: CancellationToken) {
        let wakeup = self.state.queue_wakeup.clone();
        let mut target = self.state.monitor.subscribe();
        let mut gate = self.state.host.subscribe_gate();
        loop {
            let outcome = tokio::select! {
                o = self.try_run_once() => o,
                () = stop.cancelled() => return,
            };
            let nap = match outcome {
                Ok(Outcome::Ran { .. }) => continue,
                Ok(Outcome::Idle) => Duration::from_secs(60),
                Ok(Outcome::Waiting(Wait::Interactive)) => Duration::from_millis(250),
                Ok(Outcome::Waiting(Wait::Backoff(at))) => {
                    Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0).max(10))
                }
                Ok(Outcome::Waiting(Wait::HostBusy)) => {
                    tokio::select! {
                        _ = gate.wait_for(|g| !g.paused) => {}
                        () = stop.cancelled() => return,
                    }
                    continue;
                }
                Ok(Outcome::Waiting(Wait::TargetDown)) => {
                    self.state.monitor.recheck();
                    tokio::select! {
                        _ = target.wait_for(|t| t.state == TargetState::Up) => {}
                        () = stop.cancelled() => return,
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "worker step failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = wakeup.notified() => {}
                () = self.state.interactive.changed() => {}
                () = tokio::time::sleep(nap) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    fn set_status(&self, waiting: Option<&str>) {
        if let Ok(mut s) = self.state.worker_status.lock() {
            s.current_key = self.current.as_ref().map(|(k, _)| k.clone());
            s.waiting = waiting.map(str::to_string);
        }
    }

    /// Does at most one job.
    pub async fn try_run_once(&mut self) -> Result<Outcome, StoreError> {
        if self.interactive_gate() {
            self.set_status(Some("interactive traffic in flight"));
            return Ok(Outcome::Waiting(Wait::Interactive));
        }
        if self.state.monitor.status().state == TargetState::Down {
            self.set_status(Some("target is down"));
            return Ok(Outcome::Waiting(Wait::TargetDown));
        }
        // Checked before claiming: a paused host delays jobs, it never fails them.
        if let Some(why) = self.state.host.paused_reason() {
            self.set_status(Some(&why));
            return Ok(Outcome::Waiting(Wait::HostBusy));
        }
        let Some(job) = self.claim().await? else {
            let next = self.state.store.read(queue::next_eligible_at).await?;
            self.set_status(None);
            return Ok(match next {
                Some(at) => Outcome::Waiting(Wait::Backoff(at)),
                None => Outcome::Idle,
            });
        };
        self.state.bus.publish(&job.id, JobState::Loading);
        let span =
            tracing::info_span!("job", id = %job.id, model = %job.model, attempt = job.attempts);
        let outcome = tracing::Instrument::instrument(self.execute(job), span).await?;
        Ok(outcome)
    }

    /// True while interactive traffic should hold the worker back.
    fn interactive_gate(&mut self) -> bool {
        if self.state.interactive.in_flight() == 0 {
            self.interactive_since = None;
            return false;
        }
        let since = *self.interactive_since.get_or_insert_with(Instant::now);
        since.elapsed() < self.state.config.worker.interactive_grace
    }

    /// Chooses a key and claims its next job, in one write transaction.
    async fn claim(&mut self) -> Result<Option<Job>, StoreError> {
        let config = &self.state.config.worker;
        let scheduler = config.scheduler;
        let max_wait_ms = i64::try_from(config.max_wait.as_millis()).unwrap_or(i64::MAX);
        let loaded: Vec<String> = self
            .state
            .monitor
            .status()
            .loaded_models
            .into_iter()
            .map(|m| m.name)
            .collect();
        let (interactive, epoch) = self.state.interactive.since(self.interactive_epoch);
        self.interactive_epoch = epoch;
        let current = self.current.as_ref().map(|(k, _)| k.clone());
        self.state
            .store
            .write(move |c| {
                let now = now_ms();
                let keys = queue::keys(c)?;
                let cx = select::Context {
                    current: current.as_deref(),
                    interactive_model: interactive.as_deref(),
                    loaded_models: &loaded,
                    now_ms: now,
                    max_wait_ms,
                };
                let first = select::choose(&keys, scheduler, &cx).map(|k| k.key.clone());
                // If the chosen key's jobs are all in retry backoff, fall back to the others.
                let mut order: Vec<&select::KeyInfo> = keys.iter().collect();
                order.sort_by_key(|k| (Some(&k.key) != first.as_ref(), k.oldest_seq));
                for k in order {
                    if let Some(job) = queue::claim(c, &k.key, now)? {
                        return Ok(Some(job));
                    }
                }
                Ok(None)
            })
            .await
    }

    async fn execute(&mut self, job: Job) -> Result<Outcome, StoreError> {
        self.switch_to(&job).await;
        self.set_status(None);
        let started = Instant::now();
        let run_timeout = self.state.config.worker.run_timeout;
        let attempt = async {
            self.ensure_loaded(&job).await?;
            // The `working` commit overlaps the request: the writer keeps order, and the
            // outcome is recorded only after it (see `settle`).
            let working = self
                .to_working(&job)
                .await
                .map_err(|e| Failure::Fatal(e.to_string()))?;
            let generated = self.generate(&job).await;
            working.await.map_err(|e| Failure::Fatal(e.to_string()))?;
            self.state.bus.publish(&job.id, JobState::Working);
            generated
        };
        let cancel = self.state.running.start(&job.id);
        // Dropping the attempt future aborts the upstream request (the target sees it).
        let result = tokio::select! {
            r = tokio::time::timeout(run_timeout, attempt) => match r {
                Ok(r) => r,
                Err(_) => Err(Failure::Fatal(format!(
                    "run_timeout exceeded ({})",
                    humantime::format_duration(run_timeout)
                ))),
            },
            () = cancel.cancelled() => Err(Failure::Canceled),
        };
        self.state.running.finish();
        let state = self.settle(&job, result).await?;
        tracing::info!(state = state.as_str(), took = ?started.elapsed(), "job settled");
        if state == JobState::Queued {
            self.state.queue_wakeup.notify_one();
        }
        Ok(Outcome::Ran { id: job.id, state })
    }

    /// Moving to another key: optionally unload the previous model first (ADR 0006).
    async fn switch_to(&mut self, job: &Job) {
        let same = self
            .current
            .as_ref()
            .is_some_and(|(k, _)| *k == job.drain_key);
        if same {
            return;
        }
        let previous = self
            .current
            .replace((job.drain_key.clone(), job.model.clone()));
        if let Some((_, model)) = previous
            && self.state.config.worker.unload_on_switch
        {
            let body = json!({"model": model, "keep_alive": 0});
            let sent = self
                .state
                .target
                .request(Method::POST, "/api/generate")
                .json(&body)
                .send()
                .await;
            if let Err(e) = sent {
                tracing::warn!(error = %e, %model, "unload before switch failed");
            }
        }
    }

    /// The `loading` phase: the load idiom of the job's kind, with the drained keep_alive and the
    /// reload-forcing options, so the runner matches what the job needs. ~ms when resident.
    async fn ensure_loaded(&self, job: &Job) -> Result<(), Failure> {
        let started = Instant::now();
        let model = queue::canonical_model(&job.model);
        let resident = self
            .state
            .monitor
            .status()
            .loaded_models
            .iter()
            .any(|m| m.name == model);
        self.load_step(job).await?;
        if !resident {
            metrics::histogram!(crate::metrics::MODEL_LOAD_SECONDS, "model" => model)
                .record(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    async fn load_step(&self, job: &Job) -> Result<(), Failure> {
        let keep_alive = format!("{}s", self.state.config.worker.keep_alive.as_secs());
        let mut body = json!({"model": job.model, "keep_alive": keep_alive});
        if let Some(options) = job.request.get("options").and_then(Value::as_object) {
            let reload: serde_json::Map<String, Value> = options
                .iter()
                .filter(|(k, _)| queue::RELOAD_OPTIONS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            body["options"] = Value::Object(reload);
        }
        match job.kind {
            JobKind::Chat => body["messages"] = json!([]),
            JobKind::Embed => body["input"] = json!([]),
            JobKind::Generate => {}
        }
        let response = self
            .send(job.kind.path(), body.to_string().into_bytes())
            .await?;
        response
            .bytes()
            .await
            .map_err(|e| Failure::Retryable(format!("load: {e}")))?;
        Ok(())
    }

    /// Queues the `working` transition; the returned future resolves after its commit.
    async fn to_working(
        &self,
        job: &Job,
    ) -> Result<impl std::future::Future<Output = Result<(), StoreError>> + use<>, StoreError> {
        let id = job.id.clone();
        self.state
            .store
            .enqueue(move |c| {
                queue::transition(c, &id, JobState::Working, now_ms(), &Change::default())?;
                Ok(())
            })
            .await
    }

    async fn send(&self, path: &str, body: Vec<u8>) -> Result<reqwest::Response, Failure> {
        let target = &self.state.target;
        let request = target.request(Method::POST, path).body(body);
        let response = target.send(request).await.map_err(|e| match e {
            crate::target::Failure::Unreachable(why) => Failure::Unreachable(why),
            // No headers within `target.header_timeout`: retried.
            crate::target::Failure::Timeout => Failure::Retryable(match target.header_timeout {
                Some(limit) => format!(
                    "no response headers within {}",
                    humantime::format_duration(limit)
                ),
                None => "target timed out".into(),
            }),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or(text);
        let message = format!("target answered {}: {message}", status.as_u16());
        Err(if status.is_server_error() || status.as_u16() == 429 {
            Failure::Retryable(message)
        } else {
            Failure::Fatal(message)
        })
    }

    /// The `working` phase: sends the stored body verbatim and assembles the answer.
    async fn generate(&self, job: &Job) -> Result<Value, Failure> {
        let body = job.request.to_string().into_bytes();
        let response = self.send(job.kind.path(), body).await?;
        if job.kind == JobKind::Embed {
            // Embeddings come as one JSON object (no stream, no `done`).
            let bytes = response.bytes().await.map_err(|e| {
                Failure::Retryable(format!("body cut: {}", crate::target::root_cause(&e)))
            })?;
            return serde_json::from_slice(&bytes)
                .map_err(|e| Failure::Retryable(format!("invalid answer: {e}")));
        }
        let mut assembler = assemble::Assembler::new(job.kind);
        let mut stream = response.bytes_stream();
        let mut last_progress = Instant::now();
        let idle = self.state.target.idle_timeout;
        loop {
            // A target that stops talking mid-stream is cut after the idle timeout and retried.
            let next = tokio::time::timeout(idle, stream.next())
                .await
                .map_err(|_| {
                    Failure::Retryable(format!(
                        "stream silent for {}",
                        humantime::format_duration(idle)
                    ))
                })?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| {
                Failure::Retryable(format!("stream cut: {}", crate::target::root_cause(&e)))
            })?;
            assembler.push(&chunk).map_err(assemble_failure)?;
            // Live progress for event followers, at most every 500 ms.
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                self.state.bus.progress(&job.id, assembler.tokens);
            }
        }
        assembler.finish().map_err(assemble_failure)
    }

    /// Records the outcome of an attempt.
    async fn settle(
        &self,
        job: &Job,
        result: Result<Value, Failure>,
    ) -> Result<JobState, StoreError> {
        let config = &self.state.config.worker;
        let result = match result {
            Ok(value) => self.store_artifact(job, value).await,
            Err(e) => Err(e),
        };
        let (to, change) = match result {
            Ok((value, artifact)) => (
                JobState::Done,
                Change {
                    usage: Some(assemble::usage(&value)),
                    result: Some(value),
                    artifact: Some(artifact),
                    ..Change::default()
                },
            ),
            Err(Failure::Unreachable(why)) => {
                self.state.monitor.recheck();
                (
                    JobState::Queued,
                    Change {
                        detail: Some(format!("target unreachable: {why}; waiting for it")),
                        last_error: Some(format!("target unreachable: {why}")),
                        refund_attempt: true,
                        ..Change::default()
                    },
                )
            }
            Err(Failure::Retryable(why)) if job.attempts < config.max_attempts => {
                let backoff = config
                    .retry_base
                    .saturating_mul(1 << (job.attempts.saturating_sub(1)).min(16));
                let backoff = backoff.min(Duration::from_secs(300));
                (
                    JobState::Queued,
                    Change {
                        detail: Some(format!(
                            "retry in {}: {why}",
                            humantime::format_duration(backoff)
                        )),
                        last_error: Some(why),
                        not_before: Some(
                            now_ms() + i64::try_from(backoff.as_millis()).unwrap_or(0),
                        ),
                        ..Change::default()
                    },
                )
            }
            Err(Failure::Canceled) => (
                JobState::Canceled,
                Change {
                    detail: Some("canceled by request; upstream request aborted".into()),
                    ..Change::default()
                },
            ),
            Err(Failure::Retryable(why) | Failure::Fatal(why)) => (
                JobState::Failed,
                Change {
                    detail: Some(why.clone()),
                    last_error: Some(why),
                    ..Change::default()
                },
            ),
        };
        let id = job.id.clone();
        let usage = change.usage.clone();
        self.state
            .store
            .write(move |c| queue::transition(c, &id, to, now_ms(), &change))
            .await
            .inspect(|state| {
                self.state.bus.publish(&job.id, *state);
                record_settled(job, *state, usage.as_ref());
            })
    }
}

impl Worker {
    /// Writes the artifact file (result plus foreman's phase timings) before `done` commits.
    async fn store_artifact(
        &self,
        job: &Job,
        value: Value,
    ) -> Result<(Value, crate::artifacts::Stored), Failure> {
        let id = job.id.clone();
        let times = self
            .state
            .store
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT created_at, loading_at, working_at FROM jobs WHERE id = ?1",
                    [&id],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, Option<i64>>(1)?,
                            r.get::<_, Option<i64>>(2)?,
                        ))
                    },
                )?)
            })
            .await
            .map_err(|e| Failure::Retryable(e.to_string()))?;
        let (created, loading, working) = (
            times.0,
            times.1.unwrap_or(times.0),
            times.2.unwrap_or(times.0),
        );
        let model = job.model.clone();
        for (phase, ms) in [
            ("queue", loading - created),
            ("load", working - loading),
            ("work", now_ms() - working),
        ] {
            metrics::histogram!(crate::metrics::JOB_PHASE, "phase" => phase, "model" => model.clone())
                .record(ms.max(0) as f64 / 1000.0);
        }
        let contents = json!({
            "job_id": job.id, "kind": job.kind, "model": job.model, "result": value,
            "timings_ms": {"queued": loading - created, "loading": working - loading, "working": now_ms() - working}
        })
        .to_string()
        .into_bytes();
        let max = self.state.config.artifact_max_bytes;
        if contents.len() as u64 > max {
            return Err(Failure::Fatal(format!(
                "result of {} bytes exceeds artifact_max_bytes ({max})",
                contents.len()
            )));
        }
        let dir = self.state.config.artifacts_dir();
        let id = job.id.clone();
        let stored =
            tokio::task::spawn_blocking(move || crate::artifacts::write(&dir, &id, &contents))
                .await
                .map_err(|e| Failure::Retryable(e.to_string()))?
                .map_err(|e| Failure::Retryable(format!("cannot write artifact: {e}")))?;
        Ok((value, stored))
    }
}

/// Counters of a settled attempt.
fn record_settled(job: &Job, state: JobState, usage: Option<&foreman_api::jobs::Usage>) {
    if !state.is_terminal() {
        return;
    }
    let model = job.model.clone();
    metrics::counter!(crate::metrics::JOBS_FINISHED, "state" => state.as_str(), "model" => model.clone()).increment(1);
    let Some(u) = usage else { return };
    if let Some(n) = u.completion_tokens {
        metrics::counter!(crate::metrics::TOKENS_GENERATED, "model" => model.clone()).increment(n);
    }
    if let Some(n) = u.prompt_tokens {
        metrics::counter!(crate::metrics::PROMPT_TOKENS, "model" => model.clone()).increment(n);
    }
    if let (Some(n), Some(total)) = (u.completion_tokens, u.total_ms.filter(|t| *t > 0)) {
        metrics::gauge!(crate::metrics::TOKENS_PER_SECOND, "model" => model)
            .set(n as f64 * 1000.0 / total as f64);
    }
}

fn assemble_failure(e: assemble::AssembleError) -> Failure {
    Failure::Retryable(e.to_string())
}

/// Shared handle the HTTP edge uses to wake the worker.
pub type Wakeup = Arc<tokio::sync::Notify>;

/// Shared worker status for `/status`.
pub type SharedStatus = Arc<Mutex<WorkerStatus>>;
