//! The generation engine shared by the native and OpenAI routes: it turns an admitted request
//! (a runner lease plus a slot) into a timed sequence of [`Event`]s. Framing (NDJSON or SSE) is
//! the routes' business.
//!
//! Timing follows ollama-wire.md §2.3: `load_duration` = parse + queue wait + load, measured
//! before the slot wait; `prompt_eval_duration` covers the prompt; tokens are paced at the
//! model's rate; `total_duration` is measured at the end.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::OwnedSemaphorePermit;

use crate::Sim;
use crate::config::ModelSpec;
use crate::control::FaultKind;
use crate::sched::Lease;
use crate::text::{self, Tokens};

/// Ollama's text for a runner that died mid-request.
pub const RUNNER_CRASH: &str = "model runner has unexpectedly stopped, this may be due to resource limitations or an internal error, check ollama server logs for details";

/// What a generation needs to know about its request.
#[derive(Debug, Clone)]
pub struct GenSpec {
    pub spec: ModelSpec,
    /// Text that seeds the output (prompt, or the concatenated messages).
    pub prompt: String,
    pub seed: i64,
    pub num_predict: Option<usize>,
    pub think: bool,
    /// Tools offered by a chat request (the model calls the first one).
    pub tools: Vec<serde_json::Value>,
}

/// Final metrics, in nanoseconds; zero values are omitted like Go's `omitempty`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Metrics {
    #[serde(skip_serializing_if = "is_zero")]
    pub total_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub load_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub prompt_eval_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub prompt_eval_duration: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub eval_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub eval_duration: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One step of a generation.
#[derive(Debug, Clone)]
pub enum Event {
    Thinking(String),
    Content(String),
    /// Ollama-shaped tool calls (`[{"id","function":{"index","name","arguments"}}]`).
    ToolCalls(serde_json::Value),
    Done {
        reason: &'static str,
        metrics: Metrics,
        prompt_tokens: u64,
    },
    /// An in-band error line, then the end (status stays 200).
    Error(String),
    /// The connection is cut (no terminating chunk).
    Cut,
}

/// A running generation. Dropping it (client gone) releases the slot and the runner.
pub struct Generation {
    sim: Sim,
    _lease: Lease,
    _slot: Option<OwnedSemaphorePermit>,
    started: Instant,
    load: Duration,
    /// Tokens per second; 0 = unlimited.
    rate: f64,
    tokens: Tokens,
    think_left: usize,
    content_left: usize,
    length_limited: bool,
    tool_calls: Option<serde_json::Value>,
    prompt_tokens: u64,
    prompt_eval: Duration,
    eval_started: Option<Instant>,
    /// Real time at which the next token is due. Pacing against an absolute schedule keeps the
    /// rate true when a token's real duration is below the timer's 1 ms resolution.
    next_due: Option<Instant>,
    eval_count: u64,
    fault: Option<FaultKind>,
    events_sent: usize,
    /// Whether a `StallAfterLines` fault already paused this stream.
    stalled: bool,
    finished: bool,
    completed: bool,
}

impl Generation {
    /// Admits a generation on a leased runner: waits for a slot, applies pre-stream faults
    /// (the caller handles `Status`/`Busy`/`HangBeforeHeaders` before calling this).
    pub async fn start(
        sim: &Sim,
        lease: Lease,
        started: Instant,
        spec: &GenSpec,
        fault: Option<FaultKind>,
    ) -> Self {
        let load = sim.clock.since(started) + Duration::from_millis(1);
        let slot = lease.slot().await;
        sim.control.request_started(&spec.spec.name);
        let total = spec.num_predict.unwrap_or(sim.config.default_tokens);
        let think_left = if spec.think { (total / 3).max(1) } else { 0 };
        let tool_calls = spec
            .tools
            .first()
            .filter(|_| spec.spec.has("tools"))
            .map(|tool| tool_calls_for(tool, &spec.prompt));
        let prompt_tokens = text::prompt_tokens(&spec.prompt);
        Self {
            sim: sim.clone(),
            _lease: lease,
            _slot: slot,
            started,
            load,
            rate: spec.spec.tokens_per_sec,
            tokens: Tokens::new(&spec.spec.name, &spec.prompt, spec.seed),
            think_left,
            content_left: if tool_calls.is_some() { 0 } else { total },
            length_limited: spec.num_predict.is_some(),
            tool_calls,
            prompt_tokens,
            prompt_eval: prompt_time(&spec.spec, prompt_tokens),
            eval_started: None,
            next_due: None,
            eval_count: 0,
            fault,
            events_sent: 0,
            stalled: false,
            finished: false,
            completed: false,
        }
    }

    /// The next event, paced in simulated time; `None` after the last.
    pub async fn next(&mut self) -> Option<Event> {
        if self.finished {
            return None;
        }
        if let Some(event) = self.mid_stream_fault() {
            self.finished = true;
            if matches!(event, Event::Cut) {
                // Let the lines before the cut reach the client: hyper discards unflushed
                // output when a body fails, and a real drop happens after delivered lines.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            return Some(event);
        }
        if self.eval_started.is_none() {
            let extra = match self.fault {
                Some(FaultKind::SlowFirstToken { delay_ms }) => Duration::from_millis(delay_ms),
                _ => Duration::ZERO,
            };
            self.sim.clock.sleep(self.prompt_eval + extra).await;
            self.eval_started = Some(Instant::now());
        }
        if let Some(FaultKind::StallAfterLines {
            after_lines,
            stall_ms,
        }) = self.fault
            && self.events_sent == after_lines
            && !self.stalled
        {
            self.stalled = true;
            tokio::time::sleep(Duration::from_millis(stall_ms)).await;
        }
        let event = self.step().await;
        self.events_sent += 1;
        Some(event)
    }

    fn mid_stream_fault(&self) -> Option<Event> {
        match self.fault {
            Some(FaultKind::ErrorMidStream { after_lines }) if self.events_sent >= after_lines => {
                Some(Event::Error(RUNNER_CRASH.into()))
            }
            Some(FaultKind::DropAfterLines { after_lines }) if self.events_sent >= after_lines => {
                Some(Event::Cut)
            }
            _ => None,
        }
    }

    async fn step(&mut self) -> Event {
        if self.think_left > 0 {
            self.think_left -= 1;
            return Event::Thinking(self.token().await);
        }
        if let Some(calls) = self.tool_calls.take() {
            self.pace().await;
            self.eval_count += 8;
            return Event::ToolCalls(calls);
        }
        if self.content_left > 0 {
            self.content_left -= 1;
            return Event::Content(self.token().await);
        }
        self.finished = true;
        self.completed = true;
        Event::Done {
            reason: if self.length_limited {
                "length"
            } else {
                "stop"
            },
            metrics: self.metrics(),
            prompt_tokens: self.prompt_tokens,
        }
    }

    async fn token(&mut self) -> String {
        self.pace().await;
        self.eval_count += 1;
        self.tokens.next().unwrap_or_default()
    }

    async fn pace(&mut self) {
        let tps = self.rate;
        if tps > 0.0 {
            let step = self.sim.clock.real(Duration::from_secs_f64(1.0 / tps));
            let due = self.next_due.unwrap_or_else(Instant::now) + step;
            self.next_due = Some(due);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        } else if self.eval_count % 64 == 63 {
            // Unlimited rate: let other streams run.
            tokio::task::yield_now().await;
        }
    }

    fn metrics(&self) -> Metrics {
        let eval = self
            .eval_started
            .map_or(Duration::ZERO, |s| self.sim.clock.since(s));
        let eval = if self.sim.clock.since(self.started).is_zero() {
            Duration::from_nanos(self.eval_count * 1_000)
        } else {
            eval
        };
        let total = self.sim.clock.since(self.started) + Duration::from_millis(1);
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Metrics {
            total_duration: ns(total.max(self.load + self.prompt_eval + eval)),
            load_duration: ns(self.load),
            prompt_eval_count: self.prompt_tokens,
            prompt_eval_duration: ns(self.prompt_eval).max(1_000),
            eval_count: self.eval_count,
            eval_duration: ns(eval).max(1_000),
        }
    }

    /// Token ids for `/api/generate`'s `context` field.
    pub fn context(&self) -> Vec<u32> {
        let n = self.prompt_tokens + self.eval_count;
        let mut s = text::fnv1a(self._lease.model().as_bytes());
        (0..n)
            .map(|_| {
                s = text::splitmix(s);
                (s % 32_000) as u32
            })
            .collect()
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.sim.control.request_finished(self.completed);
    }
}

/// Prompt evaluation runs ~10× faster than generation.
fn prompt_time(spec: &ModelSpec, prompt_tokens: u64) -> Duration {
    if spec.tokens_per_sec > 0.0 {
        Duration::from_secs_f64(prompt_tokens as f64 / (spec.tokens_per_sec * 10.0))
    } else {
        Duration::ZERO
    }
}

/// A deterministic call of `tool` with a string value for each required parameter.
fn tool_calls_for(tool: &serde_json::Value, prompt: &str) -> serde_json::Value {
    let function = tool.get("function").unwrap_or(tool);
    let name = function
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or("tool");
    let mut args = serde_json::Map::new();
    let params = function.get("parameters");
    let required = params
        .and_then(|p| p.get("required"))
        .and_then(|r| r.as_array())
        .cloned()
        .unwrap_or_default();
    for key in required.iter().filter_map(|k| k.as_str()) {
        args.insert(key.to_string(), serde_json::Value::String("Tokyo".into()));
    }
    serde_json::json!([{
        "id": text::tool_call_id(text::fnv1a(prompt.as_bytes())),
        "function": {"index": 0, "name": name, "arguments": args}
    }])
}
