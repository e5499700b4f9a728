//! The load generator.
//!
//! - [`fixed_rate`]: open loop. Requests start on a fixed schedule whatever the answers do, and
//!   latency is measured from the *scheduled* start, so a stall is not hidden (no coordinated
//!   omission).
//! - [`saturate`]: closed loop with N connections, reports throughput.
//! - [`streams`], [`concurrent_streams`], [`big_body`]: streaming scenarios.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use hdrhistogram::Histogram;

use crate::procs::Child;

pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

fn client(conns: usize) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(conns)
        .tcp_nodelay(true)
        .build()?)
}

pub async fn fixed_rate(base: &str, path: &str, rate: f64, length: Duration) -> Result<Latency> {
    fixed_rate_with(base, path, None, rate, length).await
}

/// `fixed_rate` with a POST body.
pub async fn fixed_rate_post(
    base: &str,
    path: &str,
    body: &'static str,
    rate: f64,
    length: Duration,
) -> Result<Latency> {
    fixed_rate_with(base, path, Some(body), rate, length).await
}

async fn fixed_rate_with(
    base: &str,
    path: &str,
    body: Option<&'static str>,
    rate: f64,
    length: Duration,
) -> Result<Latency> {
    let http = client(512)?;
    let url = format!("{base}{path}");
    let total = (rate * length.as_secs_f64()) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let request = match body {
                Some(b) => http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(b),
                None => http.get(&url),
            };
            let ok = match request.send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (ok, scheduled.elapsed())
        }));
    }
    let mut hist = Histogram::<u64>::new(3)?;
    let mut errors = 0;
    for t in tasks {
        let (ok, took) = t.await?;
        if !ok {
            errors += 1;
        }
        hist.record(took.as_micros() as u64)?;
    }
    Ok(Latency {
        p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        errors,
    })
}

pub struct Saturation {
    pub rate: f64,
}

/// Requests per second with `conns` closed-loop workers.
pub async fn saturate(
    base: &str,
    path: &str,
    conns: usize,
    length: Duration,
) -> Result<Saturation> {
    saturate_with(base, path, None, conns, length).await
}

/// `saturate` with a POST body.
pub async fn saturate_post(
    base: &str,
    path: &str,
    body: &'static str,
    conns: usize,
    length: Duration,
) -> Result<Saturation> {
    saturate_with(base, path, Some(body), conns, length).await
}

async fn saturate_with(
    base: &str,
    path: &str,
    body: Option<&'static str>,
    conns: usize,
    length: Duration,
) -> Result<Saturation> {
    let http = client(conns)?;
    let url = format!("{base}{path}");
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + length;
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let (http, url, done) = (http.clone(), url.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let request = match body {
                        Some(b) => http.post(&url).body(b),
                        None => http.get(&url),
                    };
                    if let Ok(r) = request.send().await
                        && r.bytes().await.is_ok()
                    {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let start = Instant::now();
    for w in workers {
        w.await?;
    }
    Ok(Saturation {
        rate: done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(),
    })
}

pub struct StreamStats {
    pub ttfl_p50_ms: f64,
    pub per_line_us: f64,
    pub lines: usize,
}

/// `count` sequential streams: time to first line and mean gap between lines.
pub async fn streams(base: &str, path: &str, body: &str, count: usize) -> Result<StreamStats> {
    let http = client(4)?;
    let mut ttfl = Histogram::<u64>::new(3)?;
    let mut gaps = Vec::with_capacity(count);
    let mut lines = 0;
    for _ in 0..count {
        let start = Instant::now();
        let r = http
            .post(format!("{base}{path}"))
            .body(body.to_string())
            .send()
            .await?;
        let mut s = r.bytes_stream();
        let mut first = None;
        let mut n = 0;
        while let Some(chunk) = s.next().await {
            let chunk = chunk?;
            n += chunk.iter().filter(|b| **b == b'\n').count();
            first.get_or_insert_with(|| start.elapsed());
        }
        let first = first.unwrap_or_default();
        ttfl.record(first.as_micros() as u64)?;
        let rest = start.elapsed().saturating_sub(first);
        gaps.push(rest.as_secs_f64() * 1e6 / (n.max(2) - 1) as f64);
        lines = n;
    }
    gaps.sort_by(f64::total_cmp);
    Ok(StreamStats {
        ttfl_p50_ms: ttfl.value_at_quantile(0.5) as f64 / 1000.0,
        per_line_us: gaps[gaps.len() / 2],
        lines,
    })
}

pub struct Concurrent {
    pub completed: usize,
    pub errors: usize,
    pub max_open: usize,
    pub peak_rss_kib: u64,
}

/// `n` streams at once through `foreman`, sampling its RSS while they run.
pub async fn concurrent_streams(
    base: &str,
    body: &str,
    n: usize,
    foreman: &Child,
) -> Result<Concurrent> {
    let open = Arc::new(AtomicUsize::new(0));
    let max_open = Arc::new(AtomicUsize::new(0));
    let url = format!("{base}/api/chat");
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (url, body, open, max_open) = (
                url.clone(),
                body.to_string(),
                open.clone(),
                max_open.clone(),
            );
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .build()?;
                let r = http.post(url).body(body).send().await?;
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                max_open.fetch_max(now, Ordering::SeqCst);
                let text = r.text().await;
                open.fetch_sub(1, Ordering::SeqCst);
                let text = text?;
                anyhow::ensure!(text.lines().count() == 201, "incomplete stream");
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    let mut peak = foreman.rss_kib()?;
    let all = futures::future::join_all(tasks);
    tokio::pin!(all);
    let results = loop {
        tokio::select! {
            r = &mut all => break r,
            () = tokio::time::sleep(Duration::from_millis(50)) => peak = peak.max(foreman.rss_kib()?),
        }
    };
    let completed = results.iter().filter(|r| matches!(r, Ok(Ok(())))).count();
    Ok(Concurrent {
        completed,
        errors: n - completed,
        max_open: max_open.load(Ordering::SeqCst),
        peak_rss_kib: peak,
    })
}

/// An upstream answering every request with `size` bytes in 64 KiB chunks.
pub async fn blob_upstream(size: u64) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
    let polls = |_: ()| async { r#"{"models":[],"version":"0.0.0"}"# };
    let app = axum::Router::new()
        .route("/api/version", axum::routing::get(move || polls(())))
        .route("/api/ps", axum::routing::get(move || polls(())))
        .route("/api/tags", axum::routing::get(move || polls(())))
        .fallback(move || {
            let chunk = chunk.clone();
            async move {
                let n = size / chunk.len() as u64;
                let s = futures::stream::iter(
                    (0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                );
                axum::body::Body::from_stream(s)
            }
        });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

pub struct Big {
    pub bytes: u64,
    pub seconds: f64,
    pub peak_rss_kib: u64,
}

/// Streams one large body through foreman, sampling foreman's RSS.
pub async fn big_body(base: &str, foreman: &Child) -> Result<Big> {
    let start = Instant::now();
    let r = reqwest::get(format!("{base}/api/blob")).await?;
    let mut s = r.bytes_stream();
    let mut bytes = 0u64;
    let mut peak = foreman.rss_kib()?;
    let mut last_sample = Instant::now();
    while let Some(chunk) = s.next().await {
        bytes += chunk?.len() as u64;
        if last_sample.elapsed() > Duration::from_millis(50) {
            peak = peak.max(foreman.rss_kib()?);
            last_sample = Instant::now();
        }
    }
    Ok(Big {
        bytes,
        seconds: start.elapsed().as_secs_f64(),
        peak_rss_kib: peak,
    })
}

/// Submits `n` copies of `body` to `/jobs` from `conns` concurrent clients.
pub async fn submit_many(base: &str, body: &'static str, n: usize, conns: usize) -> Result<()> {
    let http = client(conns)?;
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let (http, url, next) = (http.clone(), format!("{base}/jobs"), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::SeqCst) < n {
                    let r = http.post(&url).body(body).send().await?;
                    anyhow::ensure!(r.status() == 202, "submit: {}", r.status());
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for w in workers {
        w.await??;
    }
    Ok(())
}
