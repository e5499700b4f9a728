//! Load: rounds of 1,000 concurrent passthrough streams through the real binary while a steady
//! stream of jobs is submitted. Every stream completes, every job finishes, and the daemon's
//! memory stays flat from round to round. CI runs 4 rounds; `FOREMAN_SOAK=1` runs 30 (`FOREMAN_LOAD_ROUNDS=N` sets any number).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::health::start_daemon_env;
use crate::helpers::spawn_sim;

const STREAMS: usize = 1000;

/// Resident memory of a process, from the kernel's accounting.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn one_stream(base: String, i: usize) -> Result<(), String> {
    // One connection per stream, like independent clients.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let body = json!({"model": "llama3.2", "prompt": format!("load {i}"), "options": {"num_predict": 100}});
    let r = client
        .post(format!("{base}/api/generate"))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("stream {i}: {e}"))?;
    if r.status() != 200 {
        return Err(format!("stream {i}: status {}", r.status()));
    }
    let text = r.text().await.map_err(|e| format!("stream {i}: {e}"))?;
    match text.lines().last() {
        Some(last) if last.contains("\"done\":true") => Ok(()),
        _ => Err(format!("stream {i}: incomplete")),
    }
}

/// Submits a job every 20 ms until `stop`; returns their ids.
async fn steady_jobs(base: String, stop: Arc<AtomicBool>) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let body = json!({"request": {"model": "llama3.2", "prompt": "steady", "options": {"num_predict": 4}}});
        let r = client
            .post(format!("{base}/jobs"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        ids.push(
            r.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_streams_and_a_steady_job_stream_stay_flat() {
    let rounds: usize = match std::env::var("FOREMAN_LOAD_ROUNDS") {
        Ok(n) => n.parse().unwrap(),
        Err(_) if std::env::var_os("FOREMAN_SOAK").is_some() => 30,
        Err(_) => 4,
    };
    // 100 tokens at 40 tok/s = 2.5 simulated s = 200 ms per stream: the streams overlap.
    let sim = spawn_sim(|c| {
        c.time_scale = 0.08;
        c.num_parallel = 4096;
        c.max_queue = 8192;
        c.memory_capacity = u64::MAX / 4;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let target = sim.url();
    let env = [("FOREMAN_WORKER_INTERACTIVE_GRACE", "50ms")];
    let (daemon, base) = start_daemon_env(
        dir.path(),
        &["--target", target.as_str(), "--data-dir", "data"],
        &env,
    );
    let mut daemon = crate::helpers::KillOnDrop(daemon);
    let stop = Arc::new(AtomicBool::new(false));
    let jobs = tokio::spawn(steady_jobs(base.clone(), stop.clone()));
    let mut rss = Vec::new();
    for round in 0..rounds {
        let streams = (0..STREAMS).map(|i| tokio::spawn(one_stream(base.clone(), i)));
        let results = futures::future::join_all(streams).await;
        let errors: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.unwrap().err())
            .collect();
        assert!(
            errors.is_empty(),
            "round {round}: {} errors, e.g. {:?}",
            errors.len(),
            &errors[..errors.len().min(3)]
        );
        rss.push(rss_kib(daemon.0.id()));
        eprintln!("load: round {round}: RSS {} KiB", rss[round]);
    }
    stop.store(true, Ordering::SeqCst);
    let ids = jobs.await.unwrap();
    let client = reqwest::Client::new();
    for id in &ids {
        let v: Value = client
            .get(format!("{base}/jobs/{id}?wait=30"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["state"], "done", "{v}");
    }
    let peak = sim.stats().max_in_flight;
    eprintln!(
        "load: {rounds} rounds x {STREAMS} streams, {} jobs, sim peak in flight {peak}, RSS per round {rss:?} KiB",
        ids.len()
    );
    assert!(
        peak >= (STREAMS / 2) as u64,
        "the streams really ran concurrently: peak {peak}"
    );
    // Flat: the first rounds warm up the allocator, the connection pool to the target and
    // SQLite's page cache; over the second half of the run memory must stay level (within 5 %
    // plus 2 MiB of slack).
    let (middle, last) = (rss[rounds / 2], *rss.last().unwrap());
    assert!(
        last <= middle + last / 20 + 2048,
        "memory kept growing: {middle} KiB at round {} to {last} KiB at the end: {rss:?}",
        rounds / 2
    );
    crate::helpers::signal(&daemon.0, "-TERM");
    assert_eq!(daemon.0.wait().unwrap().code(), Some(0));
    sim.shutdown().await;
}
