//! Host figures and the availability gate (`host_metrics.enabled`, for a foreman running on
//! the target's machine).
//!
//! - [`probe`]: CPU load, cores, memory and CPU temperature (`sysinfo`; tests inject readings).
//! - [`gpu`]: VRAM via NVML, else `nvidia-smi` under a timeout, else `gpu_type: none`.
//! - [`gate`]: the pure threshold + hysteresis rule that pauses the worker.
//!
//! [`HostMonitor::run`] collects every `interval`, publishes the reading (for `/status`) and the
//! gate (the worker waits on it), sets the gauges, and keeps a bounded history in
//! `host_snapshots` (for `/status/history`). A failing probe never fails the daemon.

pub mod gate;
pub mod gpu;
pub mod probe;

use std::sync::Arc;

use foreman_api::health::{Availability, HostStatus};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::{now_ms, now_rfc3339};
use crate::config::HostMetricsConfig;
use crate::store::Store;
use gate::GateState;
use gpu::GpuQuery;
use probe::SystemProbe;

/// Where readings come from: the real host by default, stubs in tests.
#[derive(Clone)]
pub struct Probes {
    pub system: Arc<dyn SystemProbe>,
    pub gpu: GpuQuery,
}

impl Probes {
    /// `sysinfo` and NVML / `nvidia-smi` as configured.
    pub fn host(config: &HostMetricsConfig) -> Self {
        Self {
            system: Arc::new(probe::Sysinfo::new()),
            gpu: GpuQuery {
                nvml: Arc::new(gpu::Nvml::default()),
                nvidia_smi: config.nvidia_smi.clone(),
                timeout: config.gpu_timeout,
            },
        }
    }
}

pub struct HostMonitor {
    config: HostMetricsConfig,
    probes: Probes,
    store: Store,
    latest: watch::Sender<Option<HostStatus>>,
    gate: watch::Sender<Availability>,
}

impl HostMonitor {
    pub fn new(config: HostMetricsConfig, probes: Probes, store: Store) -> Self {
        let open = Availability {
            paused: false,
            reason: None,
            since: None,
        };
        Self {
            config,
            probes,
            store,
            latest: watch::channel(None).0,
            gate: watch::channel(open).0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The last reading (none before the first collection or when disabled).
    pub fn status(&self) -> Option<HostStatus> {
        self.latest.borrow().clone()
    }

    /// The gate, for `/status` (absent when host metrics are off).
    pub fn availability(&self) -> Option<Availability> {
        self.enabled().then(|| self.gate.borrow().clone())
    }

    /// Why the worker must not start a job now.
    pub fn paused_reason(&self) -> Option<String> {
        let gate = self.gate.borrow();
        gate.paused.then(|| {
            let why = gate.reason.clone().unwrap_or_default();
            format!("host over its limits: {why}")
        })
    }

    /// Follows the gate (the worker waits on it while paused).
    pub fn subscribe_gate(&self) -> watch::Receiver<Availability> {
        self.gate.subscribe()
    }

    /// Collects every `interval` until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            self.collect_once().await;
            tokio::select! {
                () = tokio::time::sleep(self.config.interval) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// One collection: read, publish, gate, gauges, history.
    pub async fn collect_once(&self) -> HostStatus {
        let reading = self.read().await;
        self.update_gate(&reading);
        record(&reading, self.gate.borrow().paused);
        self.latest.send_replace(Some(reading.clone()));
        self.persist(&reading).await;
        reading
    }

    async fn read(&self) -> HostStatus {
        let system = self.probes.system.clone();
        let (figures, gpu) = tokio::join!(
            tokio::task::spawn_blocking(move || system.read()),
            self.probes.gpu.status()
        );
        let figures = figures.unwrap_or_default();
        let memory_percent = if figures.memory_total_bytes == 0 {
            0.0
        } else {
            figures.memory_used_bytes as f64 * 100.0 / figures.memory_total_bytes as f64
        };
        HostStatus {
            at: now_rfc3339(),
            load_average: figures.load_average,
            physical_cores: figures.physical_cores,
            available_cores: (f64::from(figures.physical_cores) - figures.load_average.one)
                .max(1.0),
            memory_used_bytes: figures.memory_used_bytes,
            memory_total_bytes: figures.memory_total_bytes,
            memory_percent,
            cpu_temperature_c: figures.cpu_temperature_c,
            gpu,
        }
    }

    fn update_gate(&self, reading: &HostStatus) {
        let previous = {
            let g = self.gate.borrow();
            GateState {
                paused: g.paused,
                reason: g.reason.clone(),
            }
        };
        let next = gate::evaluate(&previous, reading, &self.config);
        if next == previous {
            return;
        }
        match &next.reason {
            Some(why) if !previous.paused => {
                tracing::warn!(reason = %why, "pausing the worker: host over its limits")
            }
            Some(_) => {}
            None => tracing::info!("host back under its limits; resuming the worker"),
        }
        let since = if next.paused == previous.paused {
            self.gate.borrow().since.clone()
        } else {
            Some(now_rfc3339())
        };
        self.gate.send_replace(Availability {
            paused: next.paused,
            reason: next.reason,
            since,
        });
    }

    async fn persist(&self, reading: &HostStatus) {
        let Ok(json) = serde_json::to_string(reading) else {
            return;
        };
        let limit = i64::from(self.config.history_limit);
        let at = now_ms();
        let result = self
            .store
            .write(move |c| {
                c.execute(
                    "INSERT INTO host_snapshots (at_ms, snapshot) VALUES (?1, ?2)",
                    rusqlite::params![at, json],
                )?;
                c.execute(
                    "DELETE FROM host_snapshots WHERE id <= (SELECT max(id) FROM host_snapshots) - ?1",
                    [limit],
                )?;
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot record host snapshot");
        }
    }
}

/// Host gauges.
fn record(r: &HostStatus, paused: bool) {
    use crate::metrics as m;
    for (window, value) in [
        ("1m", r.load_average.one),
        ("5m", r.load_average.five),
        ("15m", r.load_average.fifteen),
    ] {
        metrics::gauge!(m::HOST_LOAD, "window" => window).set(value);
    }
    metrics::gauge!(m::HOST_CORES).set(f64::from(r.physical_cores));
    metrics::gauge!(m::HOST_AVAILABLE_CORES).set(r.available_cores);
    metrics::gauge!(m::HOST_MEMORY_USED).set(r.memory_used_bytes as f64);
    metrics::gauge!(m::HOST_MEMORY_TOTAL).set(r.memory_total_bytes as f64);
    if let Some(t) = r.cpu_temperature_c {
        metrics::gauge!(m::HOST_CPU_TEMPERATURE).set(t);
    }
    if let (Some(total), Some(free)) = (r.gpu.vram_total_bytes, r.gpu.vram_free_bytes) {
        metrics::gauge!(m::HOST_GPU_VRAM_TOTAL).set(total as f64);
        metrics::gauge!(m::HOST_GPU_VRAM_FREE).set(free as f64);
    }
    metrics::gauge!(m::WORKER_PAUSED).set(if paused { 1.0 } else { 0.0 });
}
