//! Host figures and the availability gate, with injected readings: a stub system probe, a
//! stub NVML, and scripts standing in for `nvidia-smi` (answering, failing, hanging).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foreman::host::Probes;
use foreman::host::gpu::{GpuProbe, GpuQuery, GpuReading};
use foreman::host::probe::{SystemProbe, SystemReading};
use foreman_api::health::LoadAverage;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_sim, spawn_with_probes};

const GIB: u64 = 1 << 30;

/// A system probe whose reading the test sets.
#[derive(Clone, Default)]
struct Stub(Arc<Mutex<SystemReading>>);

impl Stub {
    fn new(memory_percent: u64, temperature: Option<f64>) -> Self {
        let stub = Self::default();
        stub.set(memory_percent, temperature);
        stub
    }

    fn set(&self, memory_percent: u64, temperature: Option<f64>) {
        *self.0.lock().unwrap() = SystemReading {
            load_average: LoadAverage {
                one: 1.5,
                five: 1.0,
                fifteen: 0.5,
            },
            physical_cores: 8,
            memory_used_bytes: 16 * GIB * memory_percent / 100,
            memory_total_bytes: 16 * GIB,
            cpu_temperature_c: temperature,
        };
    }
}

impl SystemProbe for Stub {
    fn read(&self) -> SystemReading {
        self.0.lock().unwrap().clone()
    }
}

/// NVML as on a host without the library.
struct NoNvml;

impl GpuProbe for NoNvml {
    fn read(&self) -> Result<GpuReading, String> {
        Err("libnvidia-ml.so: cannot open shared object file".into())
    }
}

/// An executable script standing in for `nvidia-smi`.
fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_string()
}

fn probes(system: &Stub, nvidia_smi: String, timeout: Duration) -> Probes {
    Probes {
        system: Arc::new(system.clone()),
        gpu: GpuQuery {
            nvml: Arc::new(NoNvml),
            nvidia_smi,
            timeout,
        },
    }
}

fn fast_host(c: &mut foreman::config::Config) {
    c.host_metrics.enabled = true;
    c.host_metrics.interval = Duration::from_millis(10);
}

async fn status(app: &TestApp) -> Value {
    app.get("/status").await.json().await.unwrap()
}

/// Polls `/status` until `cond` holds (host collections run every 10 ms).
async fn status_until(app: &TestApp, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..1000 {
        let s = status(app).await;
        if cond(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what}: not reached; last /status: {}", status(app).await);
}

#[tokio::test]
async fn host_figures_reach_status_metrics_and_history() {
    let bin = tempfile::tempdir().unwrap();
    let smi = script(
        bin.path(),
        "nvidia-smi",
        "echo 'NVIDIA GeForce RTX 4090, 24564, 20480'",
    );
    let system = Stub::new(25, Some(55.0));
    let started = foreman::clock::now_rfc3339();
    let app = spawn_with_probes(probes(&system, smi, Duration::from_secs(5)), |c| {
        fast_host(c);
        c.target.url = "http://127.0.0.1:9".parse().unwrap();
    })
    .await;

    let s = status_until(&app, "a host reading", |s| s["host"].is_object()).await;
    let host = &s["host"];
    assert_eq!(host["physical_cores"], 8);
    assert_eq!(host["available_cores"], 6.5, "8 cores minus load 1.5");
    assert_eq!(host["memory_total_bytes"], 16 * GIB);
    assert_eq!(host["memory_percent"], 25.0);
    assert_eq!(host["cpu_temperature_c"], 55.0);
    assert_eq!(
        host["gpu"],
        json!({"gpu_type": "nvidia", "source": "nvidia-smi", "name": "NVIDIA GeForce RTX 4090",
               "vram_total_bytes": 24564u64 << 20, "vram_free_bytes": 20480u64 << 20})
    );
    assert_eq!(s["availability"]["paused"], false);

    let cli = tokio::process::Command::new(crate::helpers::foreman_bin())
        .args(["status", "--url", &app.base])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&cli.stdout);
    assert!(
        text.contains("6.5 of 8 cores free, memory 4.00 GiB of 16.00 GiB (25%), CPU 55 °C"),
        "{text}"
    );
    assert!(
        text.contains("gpu      NVIDIA GeForce RTX 4090, 20.00 GiB free of 23.99 GiB"),
        "{text}"
    );

    let scrape = app.get("/metrics").await.text().await.unwrap();
    let value = |name: &str| {
        scrape
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(
        value("foreman_host_memory_total_bytes"),
        Some((16 * GIB) as f64)
    );
    assert_eq!(value("foreman_host_available_cores"), Some(6.5));
    assert_eq!(
        value("foreman_host_gpu_vram_free_bytes"),
        Some((20480u64 << 20) as f64)
    );
    assert!(
        scrape.contains("foreman_host_load_average{window=\"5m\"} 1"),
        "{scrape}"
    );

    let history: Value = app
        .get(&format!("/status/history?since={started}"))
        .await
        .json()
        .await
        .unwrap();
    let readings = history["host"].as_array().unwrap();
    assert!(!readings.is_empty());
    assert!(readings.iter().all(|r| r["memory_percent"] == 25.0));
    assert_eq!(
        history["target"][0]["state"], "down",
        "the target snapshot is there too"
    );
    let future: Value = app
        .get("/status/history?since=2999-01-01T00:00:00Z")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(future, json!({"target": [], "host": []}));
    let bad = app.get("/status/history?since=yesterday").await;
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["field"], "since");
}

#[tokio::test]
async fn a_gpu_query_never_hangs_and_says_why_there_is_none() {
    let bin = tempfile::tempdir().unwrap();
    let timeout = Duration::from_millis(200);
    let query = |smi: String| GpuQuery {
        nvml: Arc::new(NoNvml),
        nvidia_smi: smi,
        timeout,
    };

    let hanging = query(script(bin.path(), "hang", "sleep 30"));
    let started = Instant::now();
    let gpu = hanging.status().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the timeout"
    );
    assert_eq!(gpu.gpu_type, "none");
    let note = gpu.note.unwrap();
    assert!(note.contains("cannot open shared object"), "{note}");
    assert!(
        note.contains("nvidia-smi: no answer within 200ms"),
        "{note}"
    );

    let failing = query(script(
        bin.path(),
        "fail",
        "echo 'NVIDIA-SMI has failed' >&2; exit 9",
    ));
    let note = failing.status().await.note.unwrap();
    assert!(note.contains("NVIDIA-SMI has failed"), "{note}");

    let missing = query("/nonexistent/nvidia-smi".into()).status().await;
    assert_eq!(missing.gpu_type, "none");
    assert!(missing.note.unwrap().contains("nvidia-smi:"));

    let skipped = query(String::new()).status().await;
    assert_eq!(skipped.gpu_type, "none");
    assert!(
        !skipped.note.unwrap().contains("nvidia-smi"),
        "not tried when empty"
    );
}

#[tokio::test]
async fn a_missing_sensor_is_absent_not_zero() {
    let system = Stub::new(30, None);
    let app = spawn_with_probes(
        probes(&system, String::new(), Duration::from_secs(1)),
        |c| {
            fast_host(c);
            c.target.url = "http://127.0.0.1:9".parse().unwrap();
        },
    )
    .await;
    let s = status_until(&app, "a host reading", |s| s["host"].is_object()).await;
    assert!(
        s["host"].get("cpu_temperature_c").is_none(),
        "{}",
        s["host"]
    );
    assert_eq!(s["host"]["gpu"]["gpu_type"], "none");
    assert_eq!(s["availability"]["paused"], false);
}

#[tokio::test]
async fn the_gate_pauses_the_worker_until_the_host_recovers() {
    let sim = spawn_sim(|_| {}).await;
    let system = Stub::new(95, Some(50.0));
    let app = spawn_with_probes(
        probes(&system, String::new(), Duration::from_secs(1)),
        |c| {
            fast_host(c);
            c.target.url = sim.url().parse().unwrap();
        },
    )
    .await;
    let s = status_until(&app, "the gate closes", |s| {
        s["availability"]["paused"] == true
    })
    .await;
    assert_eq!(s["availability"]["reason"], "memory 95.0% > 90.0%");

    let body =
        json!({"request": {"model": "llama3.2", "prompt": "x", "options": {"num_predict": 2}}});
    let id = &app.submit_ok(&body).await;
    let s = status_until(&app, "the worker reports the pause", |s| {
        s["queue"]["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("memory 95.0%"))
    })
    .await;
    assert_eq!(s["queue"]["by_state"]["queued"], 1);

    // Passthrough is not gated.
    let direct = app
        .client
        .post(app.url("/api/generate"))
        .json(&json!({"model": "llama3.2", "prompt": "y", "stream": false, "options": {"num_predict": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);

    // Under the limit but inside the margin: still paused (hysteresis).
    system.set(88, Some(50.0));
    let s = status_until(&app, "cooling down", |s| {
        s["availability"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("cooling down"))
    })
    .await;
    assert_eq!(s["availability"]["paused"], true);
    let view: Value = app.get(&format!("/jobs/{id}")).await.json().await.unwrap();
    assert_eq!(view["state"], "queued", "no job starts while paused");

    system.set(50, Some(50.0));
    let done = app.wait_for_state(id, &["done"]).await;
    assert_eq!(done["state"], "done");
    let s = status(&app).await;
    assert_eq!(s["availability"]["paused"], false);
    assert!(s["availability"].get("reason").is_none());
    sim.shutdown().await;
}
