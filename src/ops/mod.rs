//! The operator commands that talk to a running daemon (`foreman jobs …`, `foreman status`),
//! built on `foreman-client` like any other caller.
//!
//! - `jobs.rs`: submit (with live progress), list, get, cancel, events, artifact.
//! - `status.rs`: the target, its models and the queue per drain key.
//! - [`render`]: the human-readable text; `--json` prints the wire types instead.
//!
//! Exit codes: 0 success (a waited job is `done`), 1 foreman unreachable or answered an error,
//! 2 bad command line, 3 the job failed, 4 it was canceled, 5 `--wait` timed out.

mod jobs;
pub mod render;
mod status;

use std::process::ExitCode;

use foreman_client::Client;

use crate::cli::{JobsCommand, RemoteArgs};

/// What a command can fail with; each maps to one line on stderr and an exit code.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Client(#[from] foreman_client::Error),
    /// The command line or an input file is unusable.
    #[error("{0}")]
    Input(String),
    /// A result could not be printed (e.g. stdout closed).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// How a command ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    JobFailed,
    JobCanceled,
    TimedOut,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        ExitCode::from(match o {
            Outcome::Success => 0,
            Outcome::JobFailed => 3,
            Outcome::JobCanceled => 4,
            Outcome::TimedOut => 5,
        })
    }
}

/// Runs `foreman jobs …`.
pub fn jobs(remote: &RemoteArgs, command: JobsCommand) -> ExitCode {
    run(remote, |client| jobs::run(client, remote.json, command))
}

/// Runs `foreman status`.
pub fn status(remote: &RemoteArgs) -> ExitCode {
    run(remote, |client| status::run(client, remote.json))
}

fn run<F, Fut>(remote: &RemoteArgs, command: F) -> ExitCode
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<Outcome, OpsError>>,
{
    let outcome = connect(remote).and_then(|client| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(OpsError::Output)?
            .block_on(command(client))
    });
    match outcome {
        Ok(outcome) => outcome.into(),
        Err(e) => {
            eprintln!("foreman: {e}");
            ExitCode::from(match e {
                OpsError::Input(_) => 2,
                _ => 1,
            })
        }
    }
}

fn connect(remote: &RemoteArgs) -> Result<Client, OpsError> {
    let mut builder = Client::builder(remote.url.clone());
    if let Some(token) = &remote.token {
        builder = builder.token(token.clone());
    }
    Ok(builder.build()?)
}

/// Prints a wire value as pretty JSON on stdout.
fn print_json<T: serde::Serialize>(value: &T) -> Result<(), OpsError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| OpsError::Output(std::io::Error::other(e)))?;
    println!("{text}");
    Ok(())
}
