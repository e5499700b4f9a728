//! The `foreman` binary. Kept thin: parse the command line, load the configuration, start
//! logging, and hand over to the library ([`foreman::app::App`]). Errors become one line on
//! stderr and a non-zero exit code; `anyhow` is used only here.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use foreman::app::App;
use foreman::cli::{Cli, Command, ConfigArgs, ConfigCommand, WebhookCommand};
use foreman::config::{self, Overrides};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Config(ConfigCommand::Check(args)) => check(&args),
        Command::Healthcheck { config, url } => healthcheck(&config, url),
        Command::Webhook(WebhookCommand::Secret(args)) => webhook_secret(&args),
        Command::Prune { config, older_than } => prune(&config, older_than),
        Command::Backup { config, path } => backup(&config, &path),
        Command::Jobs { remote, command } => foreman::ops::jobs(&remote, command),
        Command::Status(remote) => foreman::ops::status(&remote),
    }
}

fn load(args: &ConfigArgs) -> Result<config::Loaded, ExitCode> {
    config::load(&Overrides::from(args)).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })
}

/// Loads the configuration and makes sure the data dir exists and is writable.
fn load_prepared(args: &ConfigArgs) -> Result<config::Loaded, ExitCode> {
    let loaded = load(args)?;
    if let Err(p) = config::prepare_data_dir(&loaded.config) {
        eprintln!("{p}");
        return Err(ExitCode::from(2));
    }
    Ok(loaded)
}

/// Runs one future on a small runtime (for the one-shot commands).
fn block_on<T>(fut: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(fut)
}

fn serve(args: &ConfigArgs) -> ExitCode {
    let loaded = match load(args) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if let Err(e) = foreman::telemetry::init(&loaded.config.log, loaded.config.log_format) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    match run(loaded.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("foreman: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: config::Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let app = App::build(config).await?;
        app.run(foreman::shutdown::signal()).await?;
        Ok(())
    })
}

fn check(args: &ConfigArgs) -> ExitCode {
    let loaded = match load_prepared(args) {
        Ok(l) => l,
        Err(code) => return code,
    };
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    let source = loaded
        .file
        .as_ref()
        .map_or("no config file".to_string(), |p| {
            format!("file {}", p.display())
        });
    println!("# configuration OK ({source}); effective values, secrets redacted:");
    print!("{}", loaded.config.redacted_toml());
    ExitCode::SUCCESS
}

fn healthcheck(args: &ConfigArgs, url: Option<String>) -> ExitCode {
    let base = match url {
        Some(url) => url,
        None => match load(args) {
            Ok(l) => foreman::app::local_url(l.config.listen),
            Err(code) => return code,
        },
    };
    let probe = format!("{}/healthz", base.trim_end_matches('/'));
    let outcome = block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(3))
            .build()?;
        let status = client.get(&probe).send().await?.status();
        anyhow::ensure!(status.is_success(), "status {status}");
        Ok(())
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("foreman: healthcheck {probe} failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn webhook_secret(args: &ConfigArgs) -> ExitCode {
    let loaded = match load_prepared(args) {
        Ok(l) => l,
        Err(code) => return code,
    };
    match foreman::webhooks::load_or_create_secret(&loaded.config.webhook, &loaded.config.data_dir)
    {
        Ok(secret) => {
            println!("{secret}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("foreman: {e}");
            ExitCode::FAILURE
        }
    }
}

fn prune(args: &ConfigArgs, older_than: Option<std::time::Duration>) -> ExitCode {
    let config = match load_prepared(args) {
        Ok(l) => l.config,
        Err(code) => return code,
    };
    let retention = older_than.unwrap_or(config.retention);
    let outcome = block_on(async {
        // Safe beside a running daemon: SQLite serialises the writers (busy timeout).
        let store = foreman::store::Store::open(&config.db_path(), &config.database)?;
        let ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let pruned = foreman::prune::prune(
            &store,
            &config.artifacts_dir(),
            foreman::clock::now_ms(),
            ms,
        )
        .await?;
        store.close().await?;
        Ok::<_, anyhow::Error>(pruned)
    });
    match outcome {
        Ok(p) => {
            println!(
                "pruned {} jobs, {} artifact files, {} idempotency keys",
                p.jobs, p.files, p.keys
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("foreman: prune failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn backup(args: &ConfigArgs, dest: &std::path::Path) -> ExitCode {
    let config = match load(args) {
        Ok(l) => l.config,
        Err(code) => return code,
    };
    match foreman::backup::backup(&config, dest) {
        Ok(r) => {
            println!(
                "backed up {} and {} artifact files to {}",
                r.database.display(),
                r.artifacts,
                dest.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("foreman: backup failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
