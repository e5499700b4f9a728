//! The composition root: [`App::build`] opens everything and binds the listener (so tests know
//! the port before serving), [`App::run`] serves until the shutdown future resolves, then stops
//! in phases (see [`crate::shutdown`]).

use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;

use crate::config::{self, Config, ConfigProblem};
use crate::shutdown::Tasks;
use crate::store::{Store, StoreError};
use crate::target::Target;
use crate::target::monitor::Monitor;

/// Shared state of every handler and background task: one `Arc`, so the clone axum makes per
/// extractor and middleware is one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub store: Store,
    pub tasks: Tasks,
    /// The pooled client for the target, shared by passthrough and the worker.
    pub target: Target,
    pub monitor: Arc<Monitor>,
    /// Host figures and the availability gate (`host_metrics`).
    pub host: Arc<crate::host::HostMonitor>,
    /// Passthrough generations in flight (the worker defers to them).
    pub interactive: Arc<crate::interactive::Interactive>,
    /// Wakes the worker when a job is queued.
    pub queue_wakeup: crate::worker::Wakeup,
    pub worker_status: crate::worker::SharedStatus,
    /// Committed job state changes, for long-poll and event followers.
    pub bus: crate::queue::bus::JobBus,
    /// The job the worker runs now (cancel aborts it).
    pub running: Arc<crate::worker::running::Running>,
    pub signing_key: crate::webhooks::SigningKey,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

/// Why the daemon could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Config(#[from] ConfigProblem),
    #[error(
        "data dir {dir} is in use by another foreman process (lock file {lock} is held); refusing to start"
    )]
    Locked { dir: String, lock: String },
    #[error("cannot open database {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client for the target: {0}")]
    Client(#[from] reqwest::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A built, bound, not yet serving daemon.
pub struct App {
    listener: TcpListener,
    state: AppState,
    /// Held for the life of the process: a second foreman on the same data dir is refused.
    _lock: File,
}

impl App {
    /// Prepares the data dir, takes the lock, opens the database and binds the listener.
    pub async fn build(config: Config) -> Result<Self, AppError> {
        let probes = crate::host::Probes::host(&config.host_metrics);
        Self::build_with(config, probes).await
    }

    /// [`App::build`] with the host probes given (tests inject readings).
    pub async fn build_with(config: Config, probes: crate::host::Probes) -> Result<Self, AppError> {
        config::prepare_data_dir(&config)?;
        let lock = take_lock(&config)?;
        let path = config.db_path();
        let store = Store::open(&path, &config.database).map_err(|source| AppError::Store {
            path: path.display().to_string(),
            source,
        })?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| AppError::Bind {
                addr: config.listen,
                source,
            })?;
        let recovered = store
            .write({
                let max = config.worker.max_attempts;
                move |c| crate::queue::recover(c, max, crate::clock::now_ms())
            })
            .await
            .map_err(|source| AppError::Store {
                path: path.display().to_string(),
                source,
            })?;
        if recovered != (0, 0) {
            tracing::warn!(
                requeued = recovered.0,
                failed = recovered.1,
                "recovered jobs interrupted by the last stop"
            );
        }
        let secret = crate::webhooks::load_or_create_secret(&config.webhook, &config.data_dir)
            .map_err(|message| ConfigProblem {
                key: "webhook.secret".into(),
                origin: "configuration or data_dir/webhook_secret".into(),
                message,
            })?;
        let signing_key =
            crate::webhooks::SigningKey::from_secret(&secret).map_err(|message| ConfigProblem {
                key: "webhook.secret".into(),
                origin: "configuration or data_dir/webhook_secret".into(),
                message,
            })?;
        let target = Target::new(&config.target)?;
        let monitor = Arc::new(Monitor::new(
            target.clone(),
            store.clone(),
            config.target.poll_interval,
            config.target.history_limit,
        ));
        let host = Arc::new(crate::host::HostMonitor::new(
            config.host_metrics.clone(),
            probes,
            store.clone(),
        ));
        let state = AppState(Arc::new(Shared {
            config: Arc::new(config),
            host,
            store,
            tasks: Tasks::default(),
            target,
            monitor,
            interactive: Arc::default(),
            queue_wakeup: Arc::default(),
            worker_status: Arc::default(),
            bus: crate::queue::bus::JobBus::default(),
            running: Arc::default(),
            signing_key,
            metrics: crate::metrics::install(),
        }));
        Ok(Self {
            listener,
            state,
            _lock: lock,
        })
    }

    /// The address actually bound (port 0 resolves here).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.config.listen)
    }

    /// Shared state, for tests that drive components directly.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then shuts down in phases within `shutdown_timeout`.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let App {
            listener,
            state,
            _lock,
        } = self;
        // Logged as bound (port 0 in tests resolves here), not as configured.
        let listener_addr = listener.local_addr().unwrap_or(state.config.listen);
        let deadline = state.config.shutdown_timeout;
        let router = crate::http::router(state.clone());
        let stop_accepting = tokio_util::sync::CancellationToken::new();
        let serve = crate::http::server::serve(
            listener,
            router,
            state.config.request_read_timeout,
            stop_accepting.clone(),
        );
        let addr = listener_addr;
        let mut server = tokio::spawn(serve);
        tracing::info!(%addr, target = %state.config.target.url, "foreman serving");
        warn_if_exposed(&state.config);
        let monitor = state.monitor.clone();
        let stop = state.tasks.token.clone();
        state.tasks.spawn("target-monitor", monitor.run(stop));
        let sender = crate::webhooks::Sender::new(
            state.store.clone(),
            state.signing_key.clone(),
            &state.config.webhook,
            state.bus.clone(),
        )?;
        state
            .tasks
            .spawn("webhook-sender", sender.run(state.tasks.token.clone()));
        state.tasks.spawn("retention", retention(state.clone()));
        if state.host.enabled() {
            let host = state.host.clone();
            state
                .tasks
                .spawn("host-metrics", host.run(state.tasks.token.clone()));
        }
        if state.config.worker.enabled {
            let worker = crate::worker::Worker::new(state.clone());
            state
                .tasks
                .spawn("worker", worker.run(state.tasks.token.clone()));
        }

        tokio::select! {
            () = shutdown => {}
            result = &mut server => {
                tracing::error!(?result, "server stopped on its own");
            }
        }
        let started = Instant::now();
        tracing::info!(deadline = ?deadline, "shutdown phase 1: no new connections; waiting for in-flight requests");
        stop_accepting.cancel();
        if tokio::time::timeout(deadline, &mut server).await.is_err() {
            tracing::warn!("shutdown deadline reached; cutting remaining requests");
            server.abort();
        }
        tracing::info!("shutdown phase 2: stopping background tasks");
        state.tasks.token.cancel();
        state.tasks.tracker.close();
        let left = deadline.saturating_sub(started.elapsed());
        if tokio::time::timeout(left, state.tasks.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not stop in time");
        }
        tracing::info!("shutdown phase 3: closing the database");
        if let Err(e) = state.store.close().await {
            tracing::error!(error = %e, "database close failed");
        }
        tracing::info!(elapsed = ?started.elapsed(), "shutdown complete");
        Ok(())
    }
}

/// Prunes finished jobs past `retention` at start and every 10 minutes.
async fn retention(state: AppState) {
    let retention_ms = i64::try_from(state.config.retention.as_millis()).unwrap_or(i64::MAX);
    loop {
        let dir = state.config.artifacts_dir();
        match crate::prune::prune(&state.store, &dir, crate::clock::now_ms(), retention_ms).await {
            Ok(p) if p != crate::prune::Pruned::default() => tracing::info!(?p, "pruned"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(600)) => {}
            () = state.tasks.token.cancelled() => return,
        }
    }
}

/// Listening beyond loopback without tokens exposes the target to the network.
fn warn_if_exposed(config: &Config) {
    if !config.listen.ip().is_loopback() && config.api_tokens.is_empty() {
        tracing::warn!(
            listen = %config.listen,
            "listening on a non-loopback address without api_tokens: anyone who can reach it can use the target"
        );
    }
}

/// The URL a local client uses to reach a daemon listening on `listen` (a wildcard address is
/// reached through loopback).
pub fn local_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

fn take_lock(config: &Config) -> Result<File, AppError> {
    let path = config.data_dir.join("foreman.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AppError::Locked {
            dir: config.data_dir.display().to_string(),
            lock: path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(AppError::Io(e)),
    }
}
