//! The operator CLI (`foreman jobs …`, `foreman status`) as a real child process against the
//! daemon and the simulator.

use std::process::Output;

use serde_json::{Value, json};

use crate::helpers::{TestApp, foreman_bin, spawn_proxy, spawn_sim};

/// Runs the `foreman` binary with `args` (no FOREMAN_* from the caller's environment).
async fn foreman(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(foreman_bin());
    cmd.args(args)
        .env_remove("FOREMAN_URL")
        .env_remove("FOREMAN_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

/// `foreman <args> --url <app>`.
async fn on(app: &TestApp, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--url", &app.base]);
    foreman(&all, &[]).await
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[tokio::test]
async fn submit_wait_prints_the_answer() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |_| {}).await;

    let out = on(
        &app,
        &["jobs", "submit", "-m", "llama3.2", "-p", "Why?", "--wait"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let expected = crate::helpers::direct_answer(
        &sim.url(),
        "/api/generate",
        &json!({"model": "llama3.2", "prompt": "Why?"}),
    )
    .await;
    assert_eq!(
        stdout(&out).trim_end(),
        expected["response"].as_str().unwrap()
    );
    assert!(stderr(&out).contains("done"), "{}", stderr(&out));

    let dir = tempfile::tempdir().unwrap();
    let messages = dir.path().join("messages.json");
    let chat = json!([{"role": "user", "content": "Tell me more"}]);
    std::fs::write(&messages, chat.to_string()).unwrap();
    let path = messages.to_str().unwrap();
    let out = on(
        &app,
        &[
            "jobs",
            "submit",
            "-m",
            "qwen3:8b",
            "--messages",
            path,
            "--wait",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let view = json_of(&out);
    let expected = crate::helpers::direct_answer(
        &sim.url(),
        "/api/chat",
        &json!({"model": "qwen3:8b", "messages": chat}),
    )
    .await;
    assert_eq!(view["state"], "done");
    assert_eq!(view["result"]["message"], expected["message"]);

    let id = view["id"].as_str().unwrap();
    let out = on(&app, &["jobs", "events", id, "--follow"]).await;
    let text = stdout(&out);
    let states: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(states, ["queued", "loading", "working", "done"], "{text}");
    sim.shutdown().await;
}

#[tokio::test]
async fn get_list_cancel_events_and_status() {
    let app = spawn_proxy("http://127.0.0.1:9", |c| c.worker.enabled = false).await;
    let out = on(
        &app,
        &[
            "jobs",
            "submit",
            "-m",
            "m",
            "-p",
            "x",
            "--metadata",
            r#"{"ticket":7}"#,
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    on(&app, &["jobs", "submit", "-m", "m", "-p", "y"]).await;

    let view = json_of(&on(&app, &["jobs", "get", &id, "--json"]).await);
    assert_eq!(
        (view["id"].as_str(), view["state"].as_str()),
        (Some(id.as_str()), Some("queued"))
    );
    assert_eq!(view["metadata"]["ticket"], 7);

    let listed = json_of(&on(&app, &["jobs", "list", "--json", "--state", "queued"]).await);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let table = stdout(&on(&app, &["jobs", "list", "--limit", "1"]).await);
    assert_eq!(table.lines().count(), 2, "a header and one job: {table}");

    let status = stdout(&on(&app, &["status"]).await);
    assert!(status.contains("http://127.0.0.1:9/"), "{status}");
    assert!(status.contains("DRAIN KEY"), "{status}");
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["m:latest", "2"]),
        "{status}"
    );
    let status = json_of(&on(&app, &["status", "--json"]).await);
    assert_eq!(status["queue"]["queued_by_key"]["m:latest"], 2);

    let out = on(&app, &["jobs", "cancel", &id]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).lines().any(|l| l == "state       canceled"),
        "{}",
        stdout(&out)
    );
    let events = json_of(&on(&app, &["jobs", "events", &id, "--json"]).await);
    let states: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["queued", "canceled"]);
}

#[tokio::test]
async fn the_exit_code_reflects_the_outcome() {
    let sim = spawn_sim(|_| {}).await;
    let app = spawn_proxy(&sim.url(), |c| c.worker.max_attempts = 1).await;
    let out = on(
        &app,
        &["jobs", "submit", "-m", "no-such-model", "-p", "x", "--wait"],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "failed: {}", stderr(&out));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));

    let paused = spawn_proxy(&sim.url(), |c| c.worker.enabled = false).await;
    let out = on(
        &paused,
        &[
            "jobs",
            "submit",
            "-m",
            "m",
            "-p",
            "x",
            "--wait",
            "--timeout",
            "300ms",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(5), "timed out: {}", stderr(&out));
    assert!(
        stderr(&out).contains("did not finish within 300ms"),
        "{}",
        stderr(&out)
    );

    let out = on(
        &paused,
        &["jobs", "get", "0190b1a0-0000-7000-8000-000000000000"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("404"), "{}", stderr(&out));
    let out = on(&paused, &["jobs", "submit", "-p", "x"]).await;
    assert_eq!(out.status.code(), Some(2), "no model: {}", stderr(&out));
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_one_clear_line() {
    let typo = foreman(&["jobs", "lsit"], &[]).await;
    assert_eq!(typo.status.code(), Some(2));
    assert!(
        stderr(&typo).contains("similar subcommands exist"),
        "{}",
        stderr(&typo)
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let down = foreman(&["status"], &[("FOREMAN_URL", &url)]).await;
    assert_eq!(down.status.code(), Some(1));
    let err = stderr(&down);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&url) && err.contains("refused"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn the_token_comes_from_the_environment() {
    let app = spawn_proxy("http://127.0.0.1:9", |c| {
        c.api_tokens = vec![foreman::config::Secret::new("s3cret")];
    })
    .await;
    let url = [("FOREMAN_URL", app.base.as_str())];
    let anonymous = foreman(&["status"], &url).await;
    assert_eq!(anonymous.status.code(), Some(1));
    assert!(stderr(&anonymous).contains("401"), "{}", stderr(&anonymous));
    let with_token = foreman(&["status"], &[url[0], ("FOREMAN_TOKEN", "s3cret")]).await;
    assert_eq!(with_token.status.code(), Some(0), "{}", stderr(&with_token));
}
