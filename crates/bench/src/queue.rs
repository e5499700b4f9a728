//! Queue throughput (issue 5, benchmark 2), with `synchronous = FULL`:
//! enqueue latency at 200 req/s, saturated enqueue rate, full lifecycle rate against the
//! zero-delay simulator, next-job selection time with 1,000,000 queued jobs, and RSS against
//! queue depth. The baseline, measured in the same run on the same disk, is the raw rate of
//! single-row fsync'd SQLite commits.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use foreman::queue::{self, NewJob, select};
use foreman_api::jobs::JobKind;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::load;
use crate::procs::Child;

const JOB: &str = r#"{"request":{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":4}}}"#;

/// Single-row commits per second with WAL + synchronous=FULL (the disk's fsync rate).
fn raw_commit_rate(dir: &Path, length: Duration) -> Result<f64> {
    let conn = rusqlite::Connection::open(dir.join("raw.db"))?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.pragma_update(None, "synchronous", "full")?;
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < length {
        conn.execute("INSERT INTO t (v) VALUES ('x')", [])?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

async fn count_done(base: &str) -> Result<u64> {
    let v: Value = reqwest::get(format!("{base}/status")).await?.json().await?;
    Ok(v["queue"]["by_state"]["done"].as_u64().unwrap_or(0))
}

/// Builds a data dir whose database holds `n` queued jobs over `keys` drain keys.
fn build_deep_queue(n: usize, keys: usize) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let mut conn = rusqlite::Connection::open(dir.path().join("foreman.db"))?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.pragma_update(None, "synchronous", "off")?;
    foreman::store::migrations::apply(&mut conn)?;
    let request = json!({"model": "m", "prompt": "x"});
    for chunk in 0..n.div_ceil(10_000) {
        let tx = conn.transaction()?;
        for i in chunk * 10_000..((chunk + 1) * 10_000).min(n) {
            queue::insert(
                &tx,
                &NewJob {
                    id: uuid::Uuid::now_v7().to_string(),
                    kind: JobKind::Generate,
                    model: format!("model-{}", i % keys),
                    request: request.clone(),
                    webhook: None,
                    metadata: None,
                    now_ms: 1_700_000_000_000 + i as i64,
                },
            )?;
        }
        tx.commit()?;
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    Ok(dir)
}

/// Time to choose a key and claim its next job (rolled back), with the queue as it is.
fn selection_time(db: &Path, rounds: usize) -> Result<(f64, f64)> {
    let conn = rusqlite::Connection::open(db)?;
    let mut hist = Histogram::<u64>::new(3)?;
    let loaded = vec!["model-3:latest".to_string()];
    for i in 0..rounds {
        let start = Instant::now();
        let tx = conn.unchecked_transaction()?;
        let keys = queue::keys(&tx)?;
        let cx = select::Context {
            current: None,
            interactive_model: None,
            loaded_models: &loaded,
            now_ms: 1_800_000_000_000 + i as i64,
            max_wait_ms: i64::MAX,
        };
        let key = select::choose(&keys, select::Scheduler::Drain, &cx).map(|k| k.key.clone());
        ensure!(key.is_some(), "no key");
        let job = queue::claim(&tx, &key.unwrap_or_default(), cx.now_ms)?;
        ensure!(job.is_some(), "no job");
        tx.rollback()?;
        hist.record(start.elapsed().as_micros() as u64)?;
    }
    Ok((
        hist.value_at_quantile(0.5) as f64,
        hist.value_at_quantile(0.99) as f64,
    ))
}

pub async fn run(bin: &Path, phase: Duration, depth: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let scratch = tempfile::tempdir()?;
    let raw = raw_commit_rate(scratch.path(), Duration::from_secs(2))?;
    out.push(format!(
        "baseline: raw single-row commits (WAL, synchronous=FULL, same disk): {raw:.0}/s"
    ));

    // Enqueue only: worker off, target unreachable (it is never called).
    let env = [
        ("FOREMAN_WORKER_ENABLED", "false"),
        ("FOREMAN_MAX_QUEUED_JOBS", "10000000"),
    ];
    let foreman = Child::foreman_with(bin, "http://127.0.0.1:9", &env, None).await?;
    let lat = load::fixed_rate_post(&foreman.url, "/jobs", JOB, 200.0, phase).await?;
    out.push(format!(
        "POST /jobs at 200 req/s: p50 {:.2} ms, p99 {:.2} ms, errors {} (target p99 < 20 ms)",
        lat.p50_ms, lat.p99_ms, lat.errors
    ));
    let sat = load::saturate_post(&foreman.url, "/jobs", JOB, 32, phase).await?;
    out.push(format!(
        "POST /jobs saturated (32 connections): {:.0} jobs/s = {:.1}x the raw commit rate (group commit)",
        sat.rate,
        sat.rate / raw
    ));
    drop(foreman);

    // Full lifecycle against the zero-delay simulator.
    let sim = Child::sim(bin, &["--zero-delay"]).await?;
    let foreman = Child::foreman_with(
        bin,
        &sim.url,
        &[("FOREMAN_MAX_QUEUED_JOBS", "10000000")],
        None,
    )
    .await?;
    let n = 2000;
    let start = Instant::now();
    load::submit_many(&foreman.url, JOB, n, 32).await?;
    let submitted = start.elapsed();
    while count_done(&foreman.url).await? < n as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = start.elapsed();
    out.push(format!(
        "full lifecycle (submit → loading → working → done, zero-delay simulator): {n} jobs in {:.2} s = {:.0} jobs/s (submission alone took {:.2} s); {:.2}x the raw commit rate (target ≥ 500 jobs/s)",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        submitted.as_secs_f64(),
        n as f64 / total.as_secs_f64() / raw
    ));
    drop(foreman);
    drop(sim);

    // Deep queue: selection time and memory.
    let empty = Child::foreman_with(
        bin,
        "http://127.0.0.1:9",
        &[("FOREMAN_WORKER_ENABLED", "false")],
        None,
    )
    .await?;
    reqwest::get(format!("{}/status", empty.url))
        .await?
        .bytes()
        .await?;
    let empty_rss = empty.rss_kib()?;
    drop(empty);
    let build = Instant::now();
    let data = build_deep_queue(depth, 10)?;
    let built = build.elapsed();
    let (p50, p99) = selection_time(&data.path().join("foreman.db"), 1000)?;
    out.push(format!(
        "next-job selection (choose key + claim, rolled back) with {depth} queued over 10 keys: p50 {p50:.0} µs, p99 {p99:.0} µs (target < 1 ms); queue built in {:.1} s",
        built.as_secs_f64()
    ));
    let deep = Child::foreman_with(
        bin,
        "http://127.0.0.1:9",
        &[("FOREMAN_WORKER_ENABLED", "false")],
        Some(data),
    )
    .await?;
    let status_start = Instant::now();
    reqwest::get(format!("{}/status", deep.url))
        .await?
        .bytes()
        .await?;
    let status_ms = status_start.elapsed().as_secs_f64() * 1000.0;
    out.push(format!(
        "foreman RSS: empty queue {} MiB, {depth} queued {} MiB (after /status, which took {status_ms:.0} ms)",
        empty_rss / 1024,
        deep.rss_kib()? / 1024
    ));
    Ok(out)
}
