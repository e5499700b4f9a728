//! The scheduler model of ollama-wire.md §6: per-model runners with reference counts and
//! keep-alive timers, a fast path for loaded models, and a single FIFO loader that evicts
//! (idle first, then shortest keep-alive), waits for the victim to drain, pays the swap
//! penalty, and loads.
//!
//! Locking: one `std::sync::Mutex<State>`, never held across an `.await`. Runner lifecycle is
//! published through a `watch` channel per runner (`Loading → Ready → Gone`), so waiters never
//! miss a transition.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use crate::clock::Clock;
use crate::config::{ModelSpec, SimConfig};
use crate::control::Control;
use crate::gojson::KeepAlive;

/// Options that force a reload when they differ from the loaded runner's (§6.2 item 9).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunnerOpts {
    pub num_ctx: u64,
    pub num_batch: u64,
    pub num_gpu: i64,
    pub main_gpu: i64,
    pub use_mmap: Option<bool>,
    pub num_thread: u64,
}

impl RunnerOpts {
    /// Effective runner options of a request's `options` object.
    pub fn from_options(options: Option<&serde_json::Value>, default_ctx: u64) -> Self {
        let get = |k: &str| options.and_then(|o| o.get(k));
        let uint = |k: &str, d: u64| get(k).and_then(serde_json::Value::as_u64).unwrap_or(d);
        let int = |k: &str, d: i64| get(k).and_then(serde_json::Value::as_i64).unwrap_or(d);
        Self {
            num_ctx: uint("num_ctx", default_ctx),
            num_batch: uint("num_batch", 512),
            num_gpu: int("num_gpu", -1),
            main_gpu: int("main_gpu", 0),
            use_mmap: get("use_mmap").and_then(serde_json::Value::as_bool),
            num_thread: uint("num_thread", 0),
        }
    }
}

/// Why the scheduler could not give a runner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    #[error("server busy, please try again.  maximum pending requests exceeded")]
    QueueFull,
    #[error("{0}")]
    LoadFailed(String),
    #[error("request canceled")]
    Canceled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Loading,
    Ready,
    Gone,
}

struct Runner {
    id: u64,
    spec: ModelSpec,
    opts: RunnerOpts,
    refs: usize,
    keep_alive: KeepAlive,
    /// When the runner went idle (`None` while it has never been idle since load).
    expires_at: Option<SystemTime>,
    /// Bumped whenever a keep-alive timer must be disregarded.
    idle_generation: u64,
    /// Forced to unload (victim of an eviction or `keep_alive: 0`): unload when refs reach 0.
    expiring: bool,
    phase: watch::Sender<Phase>,
    slots: Arc<Semaphore>,
}

#[derive(Default)]
struct State {
    runners: HashMap<String, Runner>,
}

struct Pending {
    spec: ModelSpec,
    opts: RunnerOpts,
    keep_alive: Option<KeepAlive>,
    reply: oneshot::Sender<Result<Lease, SchedError>>,
}

struct Inner {
    config: Arc<SimConfig>,
    clock: Clock,
    control: Arc<Control>,
    state: Mutex<State>,
    pending: mpsc::UnboundedSender<Pending>,
    pending_len: AtomicUsize,
    next_id: AtomicU64,
}

/// Handle to the scheduler; cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

/// A reference on a loaded runner. Dropping it releases the reference (and may start the
/// keep-alive timer or unload the runner).
pub struct Lease {
    inner: Arc<Inner>,
    model: String,
    runner_id: u64,
    slots: Arc<Semaphore>,
    phase: watch::Receiver<Phase>,
}

/// One entry of `/api/ps`.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: ModelSpec,
    pub size: u64,
    pub expires_at: SystemTime,
    pub context_length: u64,
}

/// Roughly 292 years: what Ollama reports for a negative keep-alive.
const FOREVER: Duration = Duration::from_secs(292 * 365 * 24 * 3600);

impl Scheduler {
    /// Starts the scheduler and its loader task.
    pub fn start(config: Arc<SimConfig>, clock: Clock, control: Arc<Control>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            config,
            clock,
            control,
            state: Mutex::new(State::default()),
            pending: tx,
            pending_len: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn(loader(inner.clone(), rx));
        Self { inner }
    }

    /// Gets a runner for the model, loading it (and evicting others) if needed.
    pub async fn acquire(
        &self,
        spec: &ModelSpec,
        opts: RunnerOpts,
        keep_alive: Option<KeepAlive>,
    ) -> Result<Lease, SchedError> {
        if let Some(lease) = self.inner.fast_path(spec, &opts, keep_alive) {
            return lease.ready().await;
        }
        let max = self.inner.config.max_queue;
        if self.inner.pending_len.fetch_add(1, Ordering::SeqCst) >= max {
            self.inner.pending_len.fetch_sub(1, Ordering::SeqCst);
            self.inner.control.with_stats(|s| s.rejected_busy += 1);
            return Err(SchedError::QueueFull);
        }
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            spec: spec.clone(),
            opts,
            keep_alive,
            reply,
        };
        if self.inner.pending.send(pending).is_err() {
            return Err(SchedError::Canceled);
        }
        match answer.await {
            Ok(result) => result?.ready().await,
            Err(_) => Err(SchedError::Canceled),
        }
    }

    /// `keep_alive: 0` with an empty prompt: expire the runner now, do not wait.
    pub fn unload(&self, model: &str) {
        let mut st = self.inner.lock();
        if let Some(r) = st.runners.get_mut(model) {
            r.keep_alive = KeepAlive::For(Duration::ZERO);
            r.expires_at = Some(SystemTime::now());
            r.expiring = true;
            if r.refs == 0 {
                self.inner.remove(&mut st, model);
            }
        }
    }

    /// Loaded runners, sorted by `expires_at` descending (as `/api/ps`).
    pub fn loaded(&self) -> Vec<Loaded> {
        let st = self.inner.lock();
        let now = SystemTime::now();
        let mut out: Vec<Loaded> = st
            .runners
            .values()
            .map(|r| Loaded {
                spec: r.spec.clone(),
                size: r.spec.runner_size(),
                expires_at: r.expires_at.unwrap_or(now) + keep_alive_span(r.keep_alive, r),
                context_length: r.opts.num_ctx,
            })
            .collect();
        out.sort_by_key(|l| std::cmp::Reverse(l.expires_at));
        out
    }

    /// Requests waiting for a load.
    pub fn pending(&self) -> usize {
        self.inner.pending_len.load(Ordering::SeqCst)
    }
}

/// How far past `expires_at`'s base the expiry lies: after going idle it is `idle + keep_alive`;
/// before, `now + keep_alive` (moves on each poll); an expiring runner reports its base.
fn keep_alive_span(k: KeepAlive, r: &Runner) -> Duration {
    if r.expiring {
        return Duration::ZERO;
    }
    match k {
        KeepAlive::For(d) => d,
        KeepAlive::Forever => FOREVER,
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fast_path(
        self: &Arc<Self>,
        spec: &ModelSpec,
        opts: &RunnerOpts,
        keep_alive: Option<KeepAlive>,
    ) -> Option<Lease> {
        let mut st = self.lock();
        let r = st.runners.get_mut(&spec.name)?;
        if r.opts != *opts || *r.phase.borrow() == Phase::Gone {
            return None;
        }
        Some(self.attach(r, keep_alive))
    }

    /// Takes a reference on a runner (caller holds the lock).
    fn attach(self: &Arc<Self>, r: &mut Runner, keep_alive: Option<KeepAlive>) -> Lease {
        r.refs += 1;
        r.idle_generation += 1; // stops a pending keep-alive timer
        if let Some(k) = keep_alive
            && !r.expiring
        {
            r.keep_alive = k;
        }
        Lease {
            inner: self.clone(),
            model: r.spec.name.clone(),
            runner_id: r.id,
            slots: r.slots.clone(),
            phase: r.phase.subscribe(),
        }
    }

    /// Removes a runner and records the unload (caller holds the lock).
    fn remove(&self, st: &mut State, model: &str) {
        if let Some(r) = st.runners.remove(model) {
            let was_ready = *r.phase.borrow() == Phase::Ready;
            let _ = r.phase.send_replace(Phase::Gone);
            if was_ready {
                self.control
                    .with_stats(|s| *s.unloads.entry(model.to_string()).or_default() += 1);
            }
        }
    }

    fn release(self: &Arc<Self>, model: &str, runner_id: u64) {
        let mut st = self.lock();
        let Some(r) = st.runners.get_mut(model).filter(|r| r.id == runner_id) else {
            return;
        };
        r.refs = r.refs.saturating_sub(1);
        if r.refs > 0 {
            return;
        }
        if r.expiring || r.keep_alive.is_zero() {
            self.remove(&mut st, model);
            return;
        }
        r.expires_at = Some(SystemTime::now());
        r.idle_generation += 1;
        if let KeepAlive::For(d) = r.keep_alive {
            let generation = r.idle_generation;
            let inner = self.clone();
            let model = model.to_string();
            tokio::spawn(async move {
                inner.clock.sleep(d).await;
                let mut st = inner.lock();
                let expired = st.runners.get(&model).is_some_and(|r| {
                    r.id == runner_id && r.refs == 0 && r.idle_generation == generation
                });
                if expired {
                    inner.remove(&mut st, &model);
                }
            });
        }
    }

    fn used_memory(st: &State) -> u64 {
        st.runners.values().map(|r| r.spec.runner_size()).sum()
    }

    /// Victim: idle runners first, then the shortest keep-alive (ties by name).
    fn pick_victim(st: &State, except: &str) -> Option<String> {
        let mut candidates: Vec<&Runner> = st
            .runners
            .values()
            .filter(|r| r.spec.name != except)
            .collect();
        let span = |r: &Runner| match r.keep_alive {
            KeepAlive::For(d) => d,
            KeepAlive::Forever => Duration::MAX,
        };
        candidates.sort_by(|a, b| {
            (a.refs > 0, span(a), &a.spec.name).cmp(&(b.refs > 0, span(b), &b.spec.name))
        });
        candidates.first().map(|r| r.spec.name.clone())
    }
}

impl Lease {
    async fn ready(mut self) -> Result<Lease, SchedError> {
        match self.phase.wait_for(|p| *p != Phase::Loading).await {
            Ok(p) if *p == Phase::Ready => {}
            _ => return Err(SchedError::LoadFailed("model load was aborted".into())),
        }
        Ok(self)
    }

    /// Waits for a parallel slot on the runner (`OLLAMA_NUM_PARALLEL`).
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
    }

    pub fn model(&self) -> &str {
        &self.model
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.inner.release(&self.model, self.runner_id);
    }
}

/// What the loader decided under the lock.
enum Step {
    Attach(Lease),
    Evict(String),
    Load(u64),
    TooBig,
}

/// The single FIFO loader (`processPending`).
async fn loader(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    while let Some(p) = rx.recv().await {
        inner.pending_len.fetch_sub(1, Ordering::SeqCst);
        if p.reply.is_closed() {
            inner.control.with_stats(|s| s.cancelled += 1);
            continue;
        }
        serve_pending(&inner, p).await;
    }
}

async fn serve_pending(inner: &Arc<Inner>, mut p: Pending) {
    loop {
        let step = plan(inner, &p);
        match step {
            Step::Attach(lease) => {
                // The requester may be gone; dropping the lease then releases the reference.
                let _ = p.reply.send(Ok(lease));
                return;
            }
            Step::TooBig => {
                let need = p.spec.runner_size();
                let _ = p.reply.send(Err(SchedError::LoadFailed(format!(
                    "model requires more system memory ({need} B) than is available ({} B)",
                    inner.config.memory_capacity
                ))));
                return;
            }
            Step::Evict(victim) => {
                if !evict(inner, &victim, &mut p).await {
                    return;
                }
            }
            Step::Load(id) => {
                load(inner, id, p).await;
                return;
            }
        }
    }
}

/// Decides the next step for a pending request; attaches or inserts a loading runner.
fn plan(inner: &Arc<Inner>, p: &Pending) -> Step {
    let mut guard = inner.lock();
    let st = &mut *guard;
    let name = &p.spec.name;
    if let Some(r) = st.runners.get_mut(name) {
        if r.opts == p.opts && *r.phase.borrow() != Phase::Gone {
            return Step::Attach(inner.attach(r, p.keep_alive));
        }
        return Step::Evict(name.clone()); // reload with different runner options
    }
    let cfg = &inner.config;
    let need = p.spec.runner_size();
    if need > cfg.memory_capacity {
        return Step::TooBig;
    }
    let free = cfg.memory_capacity.saturating_sub(Inner::used_memory(st));
    let fits = (need as f64) <= cfg.fit_ratio * free as f64 || st.runners.is_empty();
    if st.runners.len() >= cfg.max_loaded_models || !fits {
        return match Inner::pick_victim(st, "") {
            Some(v) => Step::Evict(v),
            None => Step::TooBig,
        };
    }
    let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
    let (phase, _) = watch::channel(Phase::Loading);
    let slots = cfg.num_parallel.max(1);
    st.runners.insert(
        name.clone(),
        Runner {
            id,
            spec: p.spec.clone(),
            opts: p.opts.clone(),
            refs: 0,
            keep_alive: p
                .keep_alive
                .unwrap_or(KeepAlive::For(cfg.default_keep_alive)),
            expires_at: None,
            idle_generation: 0,
            expiring: false,
            phase,
            slots: Arc::new(Semaphore::new(slots)),
        },
    );
    Step::Load(id)
}

/// Forces `victim` to unload, waits for its requests to drain, then pays the swap penalty.
/// Returns false when the requester went away meanwhile.
async fn evict(inner: &Arc<Inner>, victim: &str, p: &mut Pending) -> bool {
    let mut phase = {
        let mut st = inner.lock();
        let Some(r) = st.runners.get_mut(victim) else {
            return true;
        };
        r.expiring = true;
        r.keep_alive = KeepAlive::For(Duration::ZERO);
        r.expires_at = Some(SystemTime::now());
        let rx = r.phase.subscribe();
        if r.refs == 0 {
            inner.remove(&mut st, victim);
        }
        rx
    };
    tokio::select! {
        _ = phase.wait_for(|p| *p == Phase::Gone) => {}
        () = p.reply.closed() => {
            inner.control.with_stats(|s| s.cancelled += 1);
            return false;
        }
    }
    inner.clock.sleep(inner.config.swap_penalty).await;
    true
}

/// Loads the runner inserted by `plan`, unless the requester disconnects first.
async fn load(inner: &Arc<Inner>, id: u64, mut p: Pending) {
    let name = p.spec.name.clone();
    let started = Instant::now();
    let aborted = tokio::select! {
        () = inner.clock.sleep(p.spec.load_time) => false,
        () = p.reply.closed() => true,
    };
    let mut st = inner.lock();
    let Some(r) = st.runners.get_mut(&name).filter(|r| r.id == id) else {
        return;
    };
    if aborted && r.refs == 0 {
        inner.remove(&mut st, &name);
        drop(st);
        inner.control.with_stats(|s| {
            s.loads_aborted += 1;
            s.cancelled += 1;
        });
        tracing::debug!(model = %name, after = ?started.elapsed(), "load aborted: client gone");
        return;
    }
    let _ = r.phase.send_replace(Phase::Ready);
    let lease = inner.attach(r, p.keep_alive);
    drop(st);
    inner
        .control
        .with_stats(|s| *s.loads.entry(name.clone()).or_default() += 1);
    let _ = p.reply.send(Ok(lease));
}
