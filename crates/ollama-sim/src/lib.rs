//! ollama-sim: a faithful stand-in for an Ollama server, for foreman's tests, demos and
//! benchmarks. Ground truth is `shared/reference/ollama-wire.md`.
//!
//! # Layout
//! - [`config`]: models and scheduler knobs ([`SimConfig`], [`ModelSpec`]).
//! - [`sched`]: the scheduler model (§6): runners, keep-alive, eviction, FIFO loader, max queue.
//! - [`engine`]: turns an admitted request into timed events (tokens, tool calls, metrics).
//! - [`api`]: the routes: native NDJSON (§2–§4), OpenAI SSE (§7), and `/_sim/*` control.
//! - [`gojson`]: byte-level Go compatibility (JSON escaping, timestamps, durations, errors).
//! - [`control`]: statistics and fault injection; [`server`]: the accept loop (sleep support).
//! - [`clock`]: scaled time; [`text`]: deterministic tokens and embeddings.
//!
//! # Use from tests
//! ```no_run
//! # async fn demo() {
//! let sim = ollama_sim::spawn(ollama_sim::SimConfig {
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     time_scale: 0.001,
//!     ..Default::default()
//! })
//! .await
//! .unwrap();
//! println!("simulated Ollama at {}", sim.url());
//! sim.shutdown().await;
//! # }
//! ```

pub mod api;
pub mod clock;
pub mod config;
pub mod control;
pub mod engine;
pub mod gojson;
pub mod sched;
pub mod server;
pub mod text;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

pub use config::{ModelSpec, SimConfig};
pub use control::{FaultKind, FaultRule, Stats};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Shared state of the simulator's handlers.
#[derive(Clone)]
pub struct Sim {
    pub config: Arc<SimConfig>,
    pub clock: clock::Clock,
    pub control: Arc<control::Control>,
    pub sched: sched::Scheduler,
    models: Arc<Mutex<Vec<ModelSpec>>>,
    counter: Arc<AtomicU64>,
}

impl Sim {
    fn new(config: SimConfig) -> Self {
        let config = Arc::new(config.effective());
        let clock = clock::Clock::new(config.time_scale);
        let control = Arc::new(control::Control::default());
        let sched = sched::Scheduler::start(config.clone(), clock, control.clone());
        Self {
            models: Arc::new(Mutex::new(config.models.clone())),
            config,
            clock,
            control,
            sched,
            counter: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Installed models (changes with pull/delete/copy).
    pub fn installed(&self) -> Vec<ModelSpec> {
        self.models.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// An installed model by request name.
    pub fn find(&self, name: &str) -> Option<ModelSpec> {
        let wanted = config::canonical_name(name);
        self.installed().into_iter().find(|m| m.name == wanted)
    }

    fn install(&self, spec: ModelSpec) {
        if let Ok(mut models) = self.models.lock()
            && !models.iter().any(|m| m.name == spec.name)
        {
            models.push(spec);
        }
    }

    fn uninstall(&self, name: &str) -> bool {
        let wanted = config::canonical_name(name);
        self.models.lock().is_ok_and(|mut models| {
            let before = models.len();
            models.retain(|m| m.name != wanted);
            models.len() != before
        })
    }
}

/// A running simulator.
pub struct SimServer {
    addr: SocketAddr,
    sim: Sim,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// Binds `config.listen` (port 0 allowed) and serves in the background.
pub async fn spawn(config: SimConfig) -> std::io::Result<SimServer> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let sim = Sim::new(config);
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let router = api::router(sim.clone());
    tasks.spawn(server::serve(
        listener,
        addr,
        router,
        sim.control.clone(),
        stop.clone(),
        tasks.clone(),
    ));
    Ok(SimServer {
        addr,
        sim,
        stop,
        tasks,
    })
}

impl SimServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Statistics so far.
    pub fn stats(&self) -> Stats {
        self.sim.control.snapshot()
    }

    /// Adds a fault rule.
    pub fn fault(&self, rule: FaultRule) {
        self.sim.control.add_fault(rule);
    }

    /// Resets statistics and faults.
    pub fn reset(&self) {
        self.sim.control.reset();
    }

    /// The shared state (scheduler, clock) for white-box assertions.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// Stops accepting, ends every connection, and waits for the tasks.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Resolves when the server is stopped by `shutdown` from elsewhere (binary use).
    pub async fn wait(&self) {
        self.stop.cancelled().await;
    }
}

impl FaultRule {
    /// A rule that applies once to any request.
    pub fn once(kind: FaultKind) -> Self {
        Self {
            kind,
            model: None,
            path: None,
            count: Some(1),
        }
    }
}
