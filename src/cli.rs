//! Command-line interface (clap). `main` dispatches on [`Command`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

/// foreman: a durable, drain-by-model job queue and transparent proxy in front of one Ollama.
#[derive(Debug, Parser)]
#[command(name = "foreman", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve(ConfigArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Delete finished jobs (with events, deliveries, artifacts) older than the retention.
    Prune {
        #[command(flatten)]
        config: ConfigArgs,
        /// Override `retention` for this run (e.g. 1d, 12h).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: Option<std::time::Duration>,
    },
    /// Consistent online copy of the database and artifacts into a new directory.
    Backup {
        #[command(flatten)]
        config: ConfigArgs,
        /// Destination directory (must not exist or be empty).
        path: std::path::PathBuf,
    },
    /// Webhook signing.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Submit, inspect and cancel jobs on a running daemon.
    Jobs {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Show the target, its loaded models and the queue per model of a running daemon.
    Status(RemoteArgs),
    /// Exit 0 when the daemon's /healthz answers 200 (for container HEALTHCHECKs; needs no curl).
    Healthcheck {
        #[command(flatten)]
        config: ConfigArgs,
        /// Base URL to probe (default: derived from the `listen` setting).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load the configuration, report every error, print the effective config (secrets redacted).
    Check(ConfigArgs),
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Print the webhook signing secret (whsec_...), creating it if needed.
    Secret(ConfigArgs),
}

/// Flags that select and override configuration (highest precedence).
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// TOML config file (default: ./foreman.toml, $XDG_CONFIG_HOME/foreman/foreman.toml, /etc/foreman/foreman.toml).
    #[arg(long, env = "FOREMAN_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on (config key `listen`).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Base URL of the Ollama server (config key `target.url`).
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Data directory (config key `data_dir`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl From<&ConfigArgs> for Overrides {
    fn from(a: &ConfigArgs) -> Self {
        Overrides {
            config_file: a.config.clone(),
            listen: a.listen.clone(),
            target: a.target.clone(),
            data_dir: a.data_dir.clone(),
        }
    }
}

/// How to reach a running daemon (the commands that talk to it over HTTP).
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// Base URL of the foreman daemon.
    #[arg(
        long,
        global = true,
        env = "FOREMAN_URL",
        default_value = "http://127.0.0.1:11435"
    )]
    pub url: String,
    /// Bearer token (one of the daemon's `api_tokens`).
    #[arg(long, global = true, env = "FOREMAN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON (one document, or one line per event) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Queue a job; prints its id (or waits for it with --wait).
    Submit(SubmitArgs),
    /// List jobs, newest first.
    List {
        #[arg(long, value_parser = parse_state)]
        state: Option<foreman_api::jobs::JobState>,
        #[arg(long)]
        model: Option<String>,
        /// Show at most this many jobs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Show one job.
    Get { id: String },
    /// Cancel a job (queued: at once; running: the target request is aborted).
    Cancel { id: String },
    /// Show a job's state changes.
    Events {
        id: String,
        /// Keep printing new events (and token progress) until the job ends.
        #[arg(long)]
        follow: bool,
    },
    /// Print a finished job's stored result.
    Artifact { id: String },
}

/// What `foreman jobs submit` sends.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("body").required(true).args(["prompt", "messages", "request"])))]
pub struct SubmitArgs {
    /// The model (overrides the one in --request).
    #[arg(long, short)]
    pub model: Option<String>,
    /// A prompt: an /api/generate job (or /api/embed with --kind embed).
    #[arg(long, short)]
    pub prompt: Option<String>,
    /// A JSON file holding the chat messages (an array; `-` reads stdin): an /api/chat job.
    #[arg(long, value_name = "FILE")]
    pub messages: Option<PathBuf>,
    /// A JSON file holding a complete Ollama request body (`-` reads stdin).
    #[arg(long, value_name = "FILE")]
    pub request: Option<PathBuf>,
    /// The endpoint, when the body does not make it obvious.
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<foreman_api::jobs::JobKind>,
    /// Deliver state changes to this URL (signed webhooks).
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// JSON object stored with the job and returned with it.
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,
    /// Replays the original job when the same body was already submitted with this key.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Wait for the job, showing its progress, and print the result.
    #[arg(long)]
    pub wait: bool,
    /// Longest --wait (e.g. 90s, 10m).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

fn parse_state(s: &str) -> Result<foreman_api::jobs::JobState, String> {
    foreman_api::jobs::JobState::parse(s).ok_or_else(|| {
        let all: Vec<_> = foreman_api::jobs::JobState::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        format!("expected one of {}", all.join(", "))
    })
}

fn parse_kind(s: &str) -> Result<foreman_api::jobs::JobKind, String> {
    foreman_api::jobs::JobKind::parse(s).ok_or_else(|| "expected chat, generate or embed".into())
}
