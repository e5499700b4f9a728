//! Scheduling quality (issue 5, benchmark 1): room for one model, four models with realistic
//! load times, jobs interleaved across models. Compares foreman drain-by-model, foreman fifo,
//! drain with explicit unload on switch, and the same requests sent straight to the simulator by
//! concurrent clients — all in one run, against the same simulator configuration.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use crate::procs::Child;

/// Real seconds per simulated second.
const SCALE: f64 = 0.02;
const TOKENS: u64 = 100;
const TPS: f64 = 40.0;
const GB: u64 = 1_000_000_000;
const LOADS_S: [u64; 4] = [8, 12, 16, 20];
const MODELS: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];

fn sim_config(dir: &Path) -> Result<std::path::PathBuf> {
    let models: Vec<Value> = MODELS
        .iter()
        .zip(LOADS_S)
        .map(|(m, load)| {
            json!({"name": format!("{m}:latest"), "size": 8 * GB, "load_time": format!("{load}s"),
                   "tokens_per_sec": TPS, "capabilities": ["completion"]})
        })
        .collect();
    let config = json!({
        "time_scale": SCALE, "memory_capacity": 12 * GB, "num_parallel": 1,
        "max_queue": 4096, "models": models
    });
    let text = toml::to_string(&config)?;
    let path = dir.join("sim.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

fn job_body(i: usize) -> Value {
    json!({"model": MODELS[i % MODELS.len()], "messages": [{"role": "user", "content": format!("job {i}")}],
           "options": {"num_predict": TOKENS}, "stream": false})
}

/// Simulated seconds of pure work per job (prompt evaluation + generation).
fn work_s(i: usize) -> f64 {
    let prompt = ollama_sim::text::prompt_tokens(&format!("job {i}")) as f64;
    prompt / (TPS * 10.0) + TOKENS as f64 / TPS
}

pub struct Run {
    pub mode: &'static str,
    pub loads: u64,
    pub makespan_s: f64,
}

async fn sim_loads(sim: &Child) -> Result<u64> {
    let v: Value = reqwest::get(format!("{}/_sim/stats", sim.url))
        .await?
        .json()
        .await?;
    Ok(v["loads"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum()))
}

async fn wait_done(foreman: &str, n: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let v: Value = reqwest::get(format!("{foreman}/status"))
            .await?
            .json()
            .await?;
        let done = v["queue"]["by_state"]["done"].as_u64().unwrap_or(0);
        let failed = v["queue"]["by_state"]["failed"].as_u64().unwrap_or(0);
        ensure!(failed == 0, "{failed} jobs failed");
        if done >= n {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "jobs did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Jobs through foreman; `gap` between arrivals (zero = a batch).
async fn via_foreman(
    bin: &Path,
    mode: &'static str,
    env: &[(&str, &str)],
    n: usize,
    gap: Duration,
) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let sim = Child::sim(
        bin,
        &["--config", &sim_config(dir.path())?.display().to_string()],
    )
    .await?;
    let foreman = Child::foreman_with(bin, &sim.url, env, None).await?;
    let http = reqwest::Client::new();
    let start = Instant::now();
    for i in 0..n {
        let r = http
            .post(format!("{}/jobs", foreman.url))
            .json(&json!({"request": job_body(i)}))
            .send()
            .await?;
        ensure!(r.status() == 202, "submit: {}", r.status());
        if !gap.is_zero() {
            tokio::time::sleep_until((start + gap * (i as u32 + 1)).into()).await;
        }
    }
    wait_done(&foreman.url, n as u64).await?;
    let makespan_s = start.elapsed().as_secs_f64() / SCALE;
    Ok(Run {
        mode,
        loads: sim_loads(&sim).await?,
        makespan_s,
    })
}

/// The same requests straight to the simulator, each from its own concurrent client.
async fn direct(bin: &Path, n: usize, gap: Duration) -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let sim = Child::sim(
        bin,
        &["--config", &sim_config(dir.path())?.display().to_string()],
    )
    .await?;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let url = format!("{}/api/chat", sim.url);
        tasks.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(url)
                .json(&job_body(i))
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "direct: {}", r.status());
            r.bytes().await?;
            Ok::<_, anyhow::Error>(())
        }));
        if gap.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep_until((start + gap * (i as u32 + 1)).into()).await;
        }
    }
    for t in tasks {
        t.await??;
    }
    let makespan_s = start.elapsed().as_secs_f64() / SCALE;
    Ok(Run {
        mode: "direct to simulator (concurrent clients)",
        loads: sim_loads(&sim).await?,
        makespan_s,
    })
}

pub async fn run(bin: &Path, jobs: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let lower_loads = MODELS.len() as u64;
    let lower_s: f64 = (0..jobs).map(work_s).sum::<f64>() + LOADS_S.iter().sum::<u64>() as f64;
    out.push(format!(
        "batch of {jobs} jobs interleaved over {} models (room for one; loads {:?} s; {TOKENS} tokens at {TPS} tok/s; time scale {SCALE}): lower bound {lower_loads} loads, makespan {lower_s:.0} s (simulated)",
        MODELS.len(), LOADS_S
    ));
    let batch = [
        via_foreman(bin, "foreman drain-by-model", &[], jobs, Duration::ZERO).await?,
        via_foreman(
            bin,
            "foreman drain + unload_on_switch",
            &[("FOREMAN_WORKER_UNLOAD_ON_SWITCH", "true")],
            jobs,
            Duration::ZERO,
        )
        .await?,
        via_foreman(
            bin,
            "foreman fifo",
            &[("FOREMAN_WORKER_SCHEDULER", "fifo")],
            jobs,
            Duration::ZERO,
        )
        .await?,
        direct(bin, jobs, Duration::ZERO).await?,
    ];
    let fifo_loads = batch[2].loads as f64;
    for r in &batch {
        out.push(format!(
            "  {:<44} loads {:>4} ({:.2}x lower bound, {:.1}x fewer than fifo) | makespan {:>7.0} s ({:.2}x lower bound)",
            r.mode, r.loads, r.loads as f64 / lower_loads as f64, fifo_loads / r.loads.max(1) as f64,
            r.makespan_s, r.makespan_s / lower_s
        ));
    }
    // Steady arrivals, a little faster than one job's work: a queue builds up slowly.
    let steady = jobs / 2;
    let gap = Duration::from_secs_f64(0.8 * TOKENS as f64 / TPS * SCALE);
    out.push(format!(
        "steady arrivals: {steady} jobs, one every {:.1} s (simulated), models round-robin",
        gap.as_secs_f64() / SCALE
    ));
    let runs = [
        via_foreman(bin, "foreman drain-by-model", &[], steady, gap).await?,
        via_foreman(
            bin,
            "foreman fifo",
            &[("FOREMAN_WORKER_SCHEDULER", "fifo")],
            steady,
            gap,
        )
        .await?,
        direct(bin, steady, gap).await?,
    ];
    for r in &runs {
        out.push(format!(
            "  {:<44} loads {:>4} | makespan {:>7.0} s",
            r.mode, r.loads, r.makespan_s
        ));
    }
    Ok(out)
}
