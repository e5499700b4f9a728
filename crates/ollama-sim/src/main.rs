//! The `ollama-sim` binary: a simulated Ollama for demos and benchmarks.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ollama_sim::SimConfig;

/// A faithful Ollama HTTP API simulator (streaming, model loads and swaps, keep-alive,
/// busy errors, fault injection). Statistics at GET /_sim/stats; faults at POST /_sim/faults.
#[derive(Debug, Parser)]
#[command(name = "ollama-sim", version)]
struct Args {
    /// TOML file with simulator settings and `[[models]]` (flags override it).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:11434")]
    listen: String,
    /// Real seconds per simulated second (0.01 = 100x faster; ratios stay true).
    #[arg(long)]
    time_scale: Option<f64>,
    /// Instant loads, unlimited tokens/s, thousands of slots: for measuring proxy overhead.
    #[arg(long)]
    zero_delay: bool,
    /// Memory for loaded runners, in bytes (a runner needs 1.2x the model size).
    #[arg(long, value_name = "BYTES")]
    memory_capacity: Option<u64>,
    /// Concurrent requests per loaded model (OLLAMA_NUM_PARALLEL).
    #[arg(long)]
    num_parallel: Option<usize>,
    /// Most models loaded at once (OLLAMA_MAX_LOADED_MODELS).
    #[arg(long)]
    max_loaded_models: Option<usize>,
    /// Requests that may wait for a load before 503 (OLLAMA_MAX_QUEUE).
    #[arg(long)]
    max_queue: Option<usize>,
    /// Default keep-alive (OLLAMA_KEEP_ALIVE), e.g. 5m.
    #[arg(long, value_parser = humantime::parse_duration)]
    keep_alive: Option<Duration>,
    /// VRAM-recovery wait after each forced unload (simulated), e.g. 5s.
    #[arg(long, value_parser = humantime::parse_duration)]
    swap_penalty: Option<Duration>,
    /// Tokens generated when a request sets no num_predict.
    #[arg(long)]
    default_tokens: Option<usize>,
    /// Log filter (e.g. info, debug).
    #[arg(long, default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(args.log.as_str())
        .with_writer(std::io::stderr)
        .init();
    let config = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ollama-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ollama-sim: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match ollama_sim::spawn(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ollama-sim: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        eprintln!("ollama-sim listening on {}", server.url());
        let _ = tokio::signal::ctrl_c().await;
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

fn build_config(args: &Args) -> Result<SimConfig, String> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => SimConfig::default(),
    };
    config.listen = args
        .listen
        .parse()
        .map_err(|e| format!("--listen {}: {e}", args.listen))?;
    config.zero_delay |= args.zero_delay;
    macro_rules! set {
        ($field:ident, $arg:expr) => {
            if let Some(v) = $arg {
                config.$field = v;
            }
        };
    }
    set!(time_scale, args.time_scale);
    set!(memory_capacity, args.memory_capacity);
    set!(num_parallel, args.num_parallel);
    set!(max_loaded_models, args.max_loaded_models);
    set!(max_queue, args.max_queue);
    set!(default_keep_alive, args.keep_alive);
    set!(swap_penalty, args.swap_penalty);
    set!(default_tokens, args.default_tokens);
    Ok(config)
}
