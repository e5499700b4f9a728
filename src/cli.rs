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
