//! `foreman jobs …`.

use std::time::Duration;

use foreman_api::jobs::{JobKind, JobState, JobView, SubmitJob, WebhookSubscription};
use foreman_client::{Client, ListFilter, Update};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};

use super::{OpsError, Outcome, print_json, render};
use crate::cli::{JobsCommand, SubmitArgs};

pub async fn run(client: Client, json: bool, command: JobsCommand) -> Result<Outcome, OpsError> {
    match command {
        JobsCommand::Submit(args) => submit(&client, json, args).await,
        JobsCommand::List {
            state,
            model,
            limit,
        } => list(&client, json, state, model, limit).await,
        JobsCommand::Get { id } => {
            let view = client.get(&id).await?;
            show(json, &view)
        }
        JobsCommand::Cancel { id } => {
            let view = client.cancel(&id).await?;
            show(json, &view)
        }
        JobsCommand::Events { id, follow } if follow => follow_events(&client, json, &id).await,
        JobsCommand::Events { id, .. } => {
            let events = client.events(&id).await?;
            if json {
                print_json(&events)?;
            } else {
                events.iter().for_each(|e| println!("{}", render::event(e)));
            }
            Ok(Outcome::Success)
        }
        JobsCommand::Artifact { id } => {
            let bytes = client.artifact(&id).await?;
            println!("{}", String::from_utf8_lossy(&bytes));
            Ok(Outcome::Success)
        }
    }
}

fn show(json: bool, view: &JobView) -> Result<Outcome, OpsError> {
    if json {
        print_json(view)?;
    } else {
        print!("{}", render::job(view));
    }
    Ok(Outcome::Success)
}

async fn submit(client: &Client, json: bool, args: SubmitArgs) -> Result<Outcome, OpsError> {
    let job = submit_body(&args)?;
    let view = match &args.idempotency_key {
        Some(key) => client.submit_with_key(&job, key).await?,
        None => client.submit(&job).await?,
    };
    if !args.wait {
        if json {
            print_json(&view)?;
        } else {
            println!("{}", view.id);
        }
        return Ok(Outcome::Success);
    }
    let bar = progress_bar(json);
    let waited = tokio::time::timeout(args.timeout, watch(client, &view.id, &bar)).await;
    bar.finish_and_clear();
    let Ok(done) = waited else {
        eprintln!(
            "foreman: job {} did not finish within {}; see `foreman jobs get {}`",
            view.id,
            humantime::format_duration(args.timeout),
            view.id
        );
        return Ok(Outcome::TimedOut);
    };
    report(json, &done?)
}

/// Follows the job's events on the progress bar until it ends; returns the final view.
async fn watch(client: &Client, id: &str, bar: &ProgressBar) -> Result<JobView, OpsError> {
    bar.set_message(format!("{id} queued"));
    // A broken event stream is not fatal: the long-poll below still sees the end.
    if let Ok(updates) = client.follow(id).await {
        let mut updates = std::pin::pin!(updates);
        while let Some(Ok(update)) = updates.next().await {
            bar.set_message(format!("{id} {}", render::update(&update)));
        }
    }
    Ok(client.wait(id, Duration::MAX).await?)
}

/// Prints a finished job: the answer on stdout, the summary or error on stderr.
fn report(json: bool, view: &JobView) -> Result<Outcome, OpsError> {
    if json {
        print_json(view)?;
    }
    match view.state {
        JobState::Done => {
            if !json {
                println!("{}", render::answer(view.result.as_ref()));
                eprintln!("{}", render::summary(view));
            }
            Ok(Outcome::Success)
        }
        JobState::Failed => {
            let why = view.last_error.as_deref().unwrap_or("no reason recorded");
            eprintln!("foreman: job {} failed: {why}", view.id);
            Ok(Outcome::JobFailed)
        }
        _ => {
            eprintln!("foreman: job {} was canceled", view.id);
            Ok(Outcome::JobCanceled)
        }
    }
}

/// A spinner on stderr; hidden for `--json` and when stderr is not a terminal.
fn progress_bar(json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

async fn list(
    client: &Client,
    json: bool,
    state: Option<JobState>,
    model: Option<String>,
    limit: usize,
) -> Result<Outcome, OpsError> {
    let filter = ListFilter {
        state,
        model,
        since: None,
        page_size: Some(u32::try_from(limit.clamp(1, 500)).unwrap_or(500)),
    };
    let jobs: Vec<JobView> = client
        .list(filter)
        .take(limit)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    if json {
        print_json(&jobs)?;
    } else {
        print!("{}", render::jobs(&jobs));
    }
    Ok(Outcome::Success)
}

/// `events --follow`: a line per state change; token progress on a spinner (or as JSON lines).
async fn follow_events(client: &Client, json: bool, id: &str) -> Result<Outcome, OpsError> {
    let updates = client.follow(id).await?;
    let mut updates = std::pin::pin!(updates);
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    while let Some(update) = updates.next().await {
        let update = update?;
        match (&update, json) {
            (_, true) => println!("{}", render::update_json(&update)),
            (Update::State(e), false) => bar.suspend(|| println!("{}", render::event(e))),
            (Update::Progress { .. }, false) => bar.set_message(render::update(&update)),
        }
    }
    bar.finish_and_clear();
    Ok(Outcome::Success)
}

/// The `POST /jobs` body from the command line.
fn submit_body(args: &SubmitArgs) -> Result<SubmitJob, OpsError> {
    let mut request = match (&args.request, &args.messages, &args.prompt) {
        (Some(path), _, _) => match read_json(path)? {
            Value::Object(map) => map,
            _ => {
                return Err(OpsError::Input(format!(
                    "{} must hold a JSON object",
                    path.display()
                )));
            }
        },
        (_, Some(path), _) => {
            let messages = read_json(path)?;
            if !messages.is_array() {
                return Err(OpsError::Input(format!(
                    "{} must hold a JSON array of messages",
                    path.display()
                )));
            }
            Map::from_iter([("messages".to_string(), messages)])
        }
        (_, _, Some(prompt)) => {
            let field = if args.kind == Some(JobKind::Embed) {
                "input"
            } else {
                "prompt"
            };
            Map::from_iter([(field.to_string(), json!(prompt))])
        }
        _ => {
            return Err(OpsError::Input(
                "one of --prompt, --messages or --request is required".into(),
            ));
        }
    };
    if let Some(model) = &args.model {
        request.insert("model".into(), json!(model));
    }
    if !request.get("model").is_some_and(Value::is_string) {
        return Err(OpsError::Input(
            "--model is required (the request names none)".into(),
        ));
    }
    let metadata = args
        .metadata
        .as_deref()
        .map(|m| {
            serde_json::from_str(m)
                .map_err(|e| OpsError::Input(format!("--metadata is not JSON: {e}")))
        })
        .transpose()?;
    Ok(SubmitJob {
        request: Value::Object(request),
        kind: args.kind,
        webhook: args
            .webhook
            .clone()
            .map(|url| WebhookSubscription { url, events: None }),
        metadata,
    })
}

/// Reads a JSON file, or stdin for `-`.
fn read_json(path: &std::path::Path) -> Result<Value, OpsError> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
    .map_err(|e| OpsError::Input(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| OpsError::Input(format!("{} is not JSON: {e}", path.display())))
}
