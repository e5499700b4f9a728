//! The simulator's own surface, outside Ollama's namespace: statistics and fault injection.
//!
//! `GET /_sim/stats`, `POST /_sim/reset`, `POST /_sim/faults` (add one rule), `DELETE /_sim/faults`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Counters and the ordered log of served requests.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Completed model loads per model.
    pub loads: BTreeMap<String, u64>,
    /// Unloads per model (evictions, expiries, explicit unloads).
    pub unloads: BTreeMap<String, u64>,
    /// Generation/embedding requests that reached a runner, per model.
    pub requests: BTreeMap<String, u64>,
    /// Which model served each request, in the order they started.
    pub served: Vec<String>,
    /// Requests whose client went away before they finished (queued, loading or streaming).
    pub cancelled: u64,
    /// Loads aborted because the requester disconnected.
    pub loads_aborted: u64,
    /// Requests refused with 503 because the pending queue was full.
    pub rejected_busy: u64,
    /// Requests currently being handled by a runner.
    pub in_flight: u64,
    /// Highest `in_flight` seen.
    pub max_in_flight: u64,
    /// Faults that fired.
    pub faults_fired: u64,
}

impl Stats {
    pub fn total_loads(&self) -> u64 {
        self.loads.values().sum()
    }
}

/// What a fault does to a matching request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this status and `{"error": message}` before streaming.
    Status { status: u16, message: String },
    /// 503 with Ollama's queue-full text.
    Busy,
    /// Never send headers (until the client gives up).
    HangBeforeHeaders,
    /// Delay the first token by this many (simulated) milliseconds.
    SlowFirstToken { delay_ms: u64 },
    /// After `after_lines` lines, send Ollama's in-band runner-crash error line and end.
    ErrorMidStream { after_lines: usize },
    /// After `after_lines` lines, cut the connection (no terminating chunk).
    DropAfterLines { after_lines: usize },
    /// After `after_lines` lines, go silent for this many real milliseconds, then go on
    /// (a stalled runner: headers sent, the stream stops moving).
    StallAfterLines { after_lines: usize, stall_ms: u64 },
    /// Refuse TCP connections for this many real milliseconds ("asleep").
    Asleep { for_ms: u64 },
}

/// One fault rule: what, which requests, how many times.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultRule {
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Only requests for this model (any when absent).
    #[serde(default)]
    pub model: Option<String>,
    /// Only requests to this path (any generation route when absent).
    #[serde(default)]
    pub path: Option<String>,
    /// How many requests it applies to; absent = every matching request until cleared.
    #[serde(default)]
    pub count: Option<u64>,
}

/// Shared mutable control state.
#[derive(Default)]
pub struct Control {
    pub stats: Mutex<Stats>,
    faults: Mutex<Vec<FaultRule>>,
    asleep_until: Mutex<Option<Instant>>,
}

impl Control {
    pub fn with_stats<R>(&self, f: impl FnOnce(&mut Stats) -> R) -> R {
        match self.stats.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn snapshot(&self) -> Stats {
        self.with_stats(|s| s.clone())
    }

    pub fn reset(&self) {
        self.with_stats(|s| {
            let in_flight = s.in_flight;
            *s = Stats {
                in_flight,
                ..Stats::default()
            };
        });
        self.clear_faults();
    }

    pub fn add_fault(&self, rule: FaultRule) {
        if let FaultKind::Asleep { for_ms } = rule.kind {
            self.sleep_for(Duration::from_millis(for_ms));
            return;
        }
        if let Ok(mut f) = self.faults.lock() {
            f.push(rule);
        }
    }

    pub fn clear_faults(&self) {
        if let Ok(mut f) = self.faults.lock() {
            f.clear();
        }
    }

    /// Takes the first rule matching this request, consuming one use of it.
    pub fn take_fault(&self, path: &str, model: &str) -> Option<FaultKind> {
        let mut faults = self.faults.lock().ok()?;
        let wanted = crate::config::canonical_name(model);
        let index = faults.iter().position(|r| {
            r.path.as_deref().is_none_or(|p| p == path)
                && r.model
                    .as_deref()
                    .is_none_or(|m| crate::config::canonical_name(m) == wanted)
        })?;
        let kind = faults[index].kind.clone();
        match &mut faults[index].count {
            Some(1) => {
                faults.remove(index);
            }
            Some(n) => *n -= 1,
            None => {}
        }
        drop(faults);
        self.with_stats(|s| s.faults_fired += 1);
        Some(kind)
    }

    pub fn sleep_for(&self, d: Duration) {
        if let Ok(mut a) = self.asleep_until.lock() {
            *a = Some(Instant::now() + d);
        }
    }

    /// When the simulator should be refusing connections, until when.
    pub fn asleep_until(&self) -> Option<Instant> {
        let until = (*self.asleep_until.lock().ok()?)?;
        (until > Instant::now()).then_some(until)
    }

    pub fn request_started(&self, model: &str) {
        self.with_stats(|s| {
            *s.requests.entry(model.to_string()).or_default() += 1;
            s.served.push(model.to_string());
            s.in_flight += 1;
            s.max_in_flight = s.max_in_flight.max(s.in_flight);
        });
    }

    pub fn request_finished(&self, completed: bool) {
        self.with_stats(|s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            if !completed {
                s.cancelled += 1;
            }
        });
    }
}
