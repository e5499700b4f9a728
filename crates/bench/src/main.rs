//! `foreman-bench`: measures foreman against ollama-sim with the real release binaries.
//!
//! Every figure is paired with a baseline measured in the same run (direct to the simulator vs
//! through foreman), because the machines are shared and noisy; ratios are what we report.
//!
//! # Layout
//! - [`procs`]: starting and stopping `ollama-sim` and `foreman` child processes, RSS sampling.
//! - [`load`]: the load generator (open-loop fixed rate with hdrhistogram, closed-loop saturation,
//!   streams).
//! - `passthrough` (this file): the scenarios of the passthrough benchmark.
//!
//! Run with `scripts/bench.sh passthrough` (builds release binaries first).

mod load;
mod procs;
mod queue;
mod sched;

use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    bench: Bench,
    /// Directory with the release binaries `foreman` and `ollama-sim`.
    #[arg(long, global = true, default_value = "target/release")]
    bin_dir: std::path::PathBuf,
    /// Seconds per timed phase.
    #[arg(long, global = true, default_value_t = 5)]
    seconds: u64,
}

#[derive(Subcommand)]
enum Bench {
    /// Proxy overhead: fixed rate, saturation, streaming, 1,000 streams, 1 GB body.
    Passthrough,
    /// Queue throughput: enqueue latency and rate, lifecycle rate, selection at depth, RSS.
    Queue {
        /// Queued jobs for the selection and memory measurements.
        #[arg(long, default_value_t = 1_000_000)]
        depth: usize,
    },
    /// Only the 1 GiB body scenario of `passthrough`.
    BigBody,
    /// Scheduling quality: drain-by-model vs fifo vs direct, loads and makespan.
    Scheduling {
        /// Jobs in the batch workload (the steady workload uses half).
        #[arg(long, default_value_t = 400)]
        jobs: usize,
    },
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    // Children run in temp dirs, so the binaries' path must not be relative.
    args.bin_dir = std::fs::canonicalize(&args.bin_dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match args.bench {
            Bench::Passthrough => passthrough(&args).await,
            Bench::Scheduling { jobs } => {
                println!("\n== scheduling quality");
                for line in sched::run(&args.bin_dir, jobs).await? {
                    println!("{line}");
                }
                Ok(())
            }
            Bench::Queue { depth } => {
                println!("\n== queue throughput");
                let phase = Duration::from_secs(args.seconds);
                for line in queue::run(&args.bin_dir, phase, depth).await? {
                    println!("- {line}");
                }
                Ok(())
            }
            Bench::BigBody => {
                let line = big_body(&args).await?;
                println!("- {line}");
                Ok(())
            }
        }
    })
}

/// 1 GiB through foreman from a blob upstream: RSS must stay flat.
async fn big_body(args: &Args) -> Result<String> {
    let blob = load::blob_upstream(1 << 30).await?;
    let foreman = procs::Child::foreman(&args.bin_dir, &blob).await?;
    let before = foreman.rss_kib()?;
    let big = load::big_body(&foreman.url, &foreman).await?;
    Ok(format!(
        "1 GiB streamed through foreman: {} bytes in {:.1} s ({:.0} MiB/s), foreman RSS before {} MiB, peak during {} MiB",
        big.bytes,
        big.seconds,
        big.bytes as f64 / 1048576.0 / big.seconds,
        before / 1024,
        big.peak_rss_kib / 1024
    ))
}

/// Saturation with foreman on a core of its own: the client and the simulator share core 0,
/// foreman runs alone on core 1 — the shape of a real deployment, where foreman does not compete
/// with its clients and its target for CPU. Restores the process's affinity afterwards.
async fn pinned_saturation(args: &Args, phase: Duration) -> Result<String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        return Ok("pinned saturation: skipped (needs 2 cores)".into());
    }
    procs::pin_self("0")?;
    let outcome = async {
        let sim = procs::Child::sim(&args.bin_dir, &["--zero-delay"]).await?;
        let foreman = procs::Child::foreman_on_cpu(&args.bin_dir, &sim.url, 1).await?;
        load::fixed_rate(&foreman.url, "/api/tags", 200.0, Duration::from_secs(1)).await?;
        let direct = load::saturate(&sim.url, "/api/tags", 64, phase).await?;
        let via = load::saturate(&foreman.url, "/api/tags", 64, phase).await?;
        Ok::<_, anyhow::Error>(format!(
            "GET /api/tags saturated, pinned (client + simulator on core 0, foreman alone on core 1): direct {:.0} req/s | via foreman {:.0} req/s | ratio {:.2}",
            direct.rate, via.rate, via.rate / direct.rate
        ))
    }
    .await;
    procs::pin_self(&format!("0-{}", cores - 1))?;
    outcome
}

async fn passthrough(args: &Args) -> Result<()> {
    let phase = Duration::from_secs(args.seconds);
    let sim = procs::Child::sim(&args.bin_dir, &["--zero-delay"]).await?;
    let foreman = procs::Child::foreman(&args.bin_dir, &sim.url).await?;
    let mut report = Vec::new();

    // Warm both paths (connection pools, page cache).
    load::fixed_rate(&sim.url, "/api/tags", 200.0, Duration::from_secs(1)).await?;
    load::fixed_rate(&foreman.url, "/api/tags", 200.0, Duration::from_secs(1)).await?;

    let direct = load::fixed_rate(&sim.url, "/api/tags", 1000.0, phase).await?;
    let via = load::fixed_rate(&foreman.url, "/api/tags", 1000.0, phase).await?;
    report.push(format!(
        "GET /api/tags @1000 req/s: direct p50 {:.3} ms p99 {:.3} ms | via foreman p50 {:.3} ms p99 {:.3} ms | added p50 {:+.3} ms p99 {:+.3} ms | errors {}/{}",
        direct.p50_ms, direct.p99_ms, via.p50_ms, via.p99_ms,
        via.p50_ms - direct.p50_ms, via.p99_ms - direct.p99_ms, direct.errors, via.errors
    ));

    let (sim_cpu, foreman_cpu) = (sim.cpu_seconds()?, foreman.cpu_seconds()?);
    let direct = load::saturate(&sim.url, "/api/tags", 64, phase).await?;
    let sim_cpu_direct = sim.cpu_seconds()? - sim_cpu;
    let (sim_cpu, foreman_cpu_before) =
        (sim.cpu_seconds()?, foreman_cpu.max(foreman.cpu_seconds()?));
    let via = load::saturate(&foreman.url, "/api/tags", 64, phase).await?;
    let sim_cpu_via = sim.cpu_seconds()? - sim_cpu;
    let foreman_cpu_via = foreman.cpu_seconds()? - foreman_cpu_before;
    let per_req = |cpu: f64, rate: f64| cpu * 1e6 / (rate * phase.as_secs_f64());
    report.push(format!(
        "GET /api/tags saturated (64 conns, 2 cores shared by client, simulator and foreman): direct {:.0} req/s | via foreman {:.0} req/s | ratio {:.2} | CPU per request: simulator {:.1} µs, foreman {:.1} µs (simulator during via phase {:.1} µs)",
        direct.rate, via.rate, via.rate / direct.rate,
        per_req(sim_cpu_direct, direct.rate), per_req(foreman_cpu_via, via.rate), per_req(sim_cpu_via, via.rate)
    ));

    report.push(pinned_saturation(args, phase).await?);

    let chat = r#"{"model":"llama3.2","messages":[{"role":"user","content":"bench"}],"options":{"num_predict":199}}"#;
    let direct = load::streams(&sim.url, "/api/chat", chat, 200).await?;
    let via = load::streams(&foreman.url, "/api/chat", chat, 200).await?;
    report.push(format!(
        "/api/chat 200-line streams x200: time to first line p50 direct {:.3} ms via {:.3} ms (added {:+.3} ms) | per-line gap direct {:.2} µs via {:.2} µs | lines/stream {} vs {}",
        direct.ttfl_p50_ms, via.ttfl_p50_ms, via.ttfl_p50_ms - direct.ttfl_p50_ms,
        direct.per_line_us, via.per_line_us, direct.lines, via.lines
    ));
    drop(foreman);
    drop(sim);

    // 1,000 concurrent streams: a paced simulator keeps every stream open for seconds.
    let paced = procs::Child::sim(
        &args.bin_dir,
        &[
            "--time-scale",
            "0.05",
            "--num-parallel",
            "4096",
            "--max-queue",
            "4096",
        ],
    )
    .await?;
    let foreman = procs::Child::foreman(&args.bin_dir, &paced.url).await?;
    let idle_rss = foreman.rss_kib()?;
    let long_chat = r#"{"model":"llama3.2","messages":[{"role":"user","content":"bench"}],"options":{"num_predict":200}}"#;
    let outcome = load::concurrent_streams(&foreman.url, long_chat, 1000, &foreman).await?;
    report.push(format!(
        "1,000 concurrent streams via foreman: completed {} / 1000, errors {}, max open at once {}, foreman RSS idle {} MiB, peak {} MiB",
        outcome.completed, outcome.errors, outcome.max_open, idle_rss / 1024, outcome.peak_rss_kib / 1024
    ));
    drop(foreman);
    drop(paced);

    report.push(big_body(args).await?);

    println!(
        "\n== passthrough benchmark (direct = ollama-sim --zero-delay, via = through foreman)"
    );
    for line in &report {
        println!("- {line}");
    }
    Ok(())
}
