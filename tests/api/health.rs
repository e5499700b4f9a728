//! Foundation: health, readiness, request ids, shutdown, lock, schema, and the CLI process.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::{foreman_bin, spawn_app, spawn_with, test_config};

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn readyz_is_ready_when_the_database_takes_a_write() {
    let app = spawn_app().await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"ready": true}));
    let probe: String = rusqlite::Connection::open(app.db_path())
        .unwrap()
        .query_row("SELECT value FROM meta WHERE key='ready_probe'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(probe, "ok");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn readyz_is_unavailable_once_the_database_is_closed() {
    let app = spawn_app().await;
    app.state.store.close().await.unwrap();
    let r = app.get("/readyz").await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["ready"], false);
    assert!(body["reason"].as_str().unwrap().contains("database"));
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn request_id_is_generated_or_propagated() {
    let app = spawn_app().await;
    let r = app.get("/healthz").await;
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 36, "a uuid: {generated}");
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn migrations_produce_the_expected_schema() {
    let mut app = spawn_app().await;
    let path = app.db_path();
    app.stop_and_wait().await.unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type='table' ORDER BY name")
        .unwrap();
    let tables: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for expected in ["meta", "schema_migrations"] {
        assert!(tables.contains(&expected.to_string()), "{tables:?}");
    }
    let version: i64 = conn
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(version, foreman::store::migrations::latest_version());
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn writes_from_many_tasks_are_grouped_into_few_commits() {
    let app = spawn_app().await;
    let store = app.state.store.clone();
    let before = store.writer_stats();
    let writes = (0..200).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(move |c| {
                    c.execute(
                        "INSERT INTO meta (key, value, updated_at) VALUES (?1, 'v', 'now')",
                        [format!("k{i}")],
                    )?;
                    Ok(())
                })
                .await
        })
    });
    for w in futures::future::join_all(writes).await {
        w.unwrap().unwrap();
    }
    let after = store.writer_stats();
    // The target monitor may write a snapshot meanwhile, hence `>=`.
    let ops = after.operations - before.operations;
    let batches = after.batches - before.batches;
    assert!(ops >= 200, "{ops}");
    assert!(
        batches < ops,
        "concurrent writes share commits: {batches} batches for {ops} ops"
    );
    let n: i64 = store
        .read(|c| {
            Ok(
                c.query_row("SELECT count(*) FROM meta WHERE key LIKE 'k%'", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
        .unwrap();
    assert_eq!(n, 200);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failing_write_rolls_back_alone() {
    let app = spawn_app().await;
    let store = app.state.store.clone();
    let bad = store.write(|c| {
        c.execute("INSERT INTO meta VALUES ('half', 'v', 'now')", [])?;
        Err::<(), _>(foreman::store::StoreError::Invalid("boom".into()))
    });
    let good = store.write(|c| {
        c.execute("INSERT INTO meta VALUES ('whole', 'v', 'now')", [])?;
        Ok(())
    });
    let (bad, good) = tokio::join!(bad, good);
    assert!(bad.is_err());
    good.unwrap();
    let keys: Vec<String> = store
        .read(|c| {
            let mut s = c.prepare("SELECT key FROM meta WHERE key IN ('half','whole')")?;
            let rows = s.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .await
        .unwrap();
    assert_eq!(keys, vec!["whole".to_string()]);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_second_daemon_on_the_same_data_dir_is_refused() {
    let app = spawn_app().await;
    let mut config = test_config(app.dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let err = foreman::app::App::build(config)
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("in use by another foreman"),
        "{err}"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_waits_for_in_flight_requests_then_stops() {
    let app = spawn_with(|c| c.shutdown_timeout = Duration::from_secs(5)).await;
    let client = app.client.clone();
    let url = app.url("/readyz");
    let in_flight = tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) });
    tokio::task::yield_now().await;
    let addr = app.addr;
    app.shutdown().await.unwrap();
    // The request either completed before shutdown or was never accepted; it never hangs.
    let status = in_flight.await.unwrap();
    if let Ok(s) = status {
        assert!(s.is_success() || s.as_u16() == 503);
    }
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

fn run_cli(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(foreman_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("FOREMAN_CONFIG")
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .output()
        .unwrap()
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("foreman.toml"), "log = \"debug\"\n").unwrap();
    let out = Command::new(foreman_bin())
        .args(["config", "check"])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("FOREMAN_TARGET_TOKEN", "very-secret")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("log = \"debug\""), "{stdout}");
    assert!(stdout.contains("<redacted>"), "{stdout}");
    assert!(!stdout.contains("very-secret"));
    assert!(dir.path().join("data").is_dir(), "data dir created");
}

#[test]
fn bad_config_exits_non_zero_with_one_line_per_problem_and_no_panic() {
    let cases: &[(&str, &str)] = &[
        ("listen = 5\n", "`listen`"),
        ("nope = 1\n", "`nope`"),
        ("shutdown_timeout = \"soon\"\n", "`shutdown_timeout`"),
        ("listen = [[[\n", "foreman.toml"),
    ];
    for (toml, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("foreman.toml"), toml).unwrap();
        for cmd in [&["config", "check"][..], &["serve"][..]] {
            let out = run_cli(cmd, dir.path());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd:?} {toml}: {stderr}");
            assert!(stderr.contains(needle), "{toml}: {stderr}");
            assert!(
                stderr.contains("foreman.toml"),
                "names the source: {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        }
    }
}

#[test]
fn unwritable_data_dir_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocker"), "x").unwrap();
    let out = run_cli(
        &["config", "check", "--data-dir", "blocker/sub"],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`data_dir`"), "{stderr}");
}

#[test]
fn healthcheck_fails_with_one_line_when_nothing_listens() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(&["healthcheck", "--url", "http://127.0.0.1:9"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("http://127.0.0.1:9/healthz"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1);
}

#[test]
fn version_flag_prints_the_version() {
    let out = Command::new(foreman_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// Starts `foreman serve` on a free port in `dir` and waits until `/healthz` answers.
pub fn start_daemon(dir: &std::path::Path, extra: &[&str]) -> (std::process::Child, String) {
    start_daemon_env(dir, extra, &[])
}

/// [`start_daemon`] with extra environment variables (they win over the defaults here).
pub fn start_daemon_env(
    dir: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["serve", "--listen", &listen];
    args.extend_from_slice(extra);
    let mut child = Command::new(foreman_bin())
        .args(&args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("FOREMAN_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://{listen}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(&listen).is_ok() {
            return (child, base);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("foreman did not start listening on {listen}");
}

#[test]
fn serve_starts_with_no_config_creates_data_and_exits_zero_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start_daemon(dir.path(), &[]);
    let body = reqwest::blocking::get(format!("{base}/readyz")).unwrap();
    assert_eq!(body.status(), 200);
    assert!(dir.path().join("data/foreman.db").is_file());

    // A second daemon on the same data dir is refused with a clear message.
    let out = run_cli(&["serve", "--listen", "127.0.0.1:0"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("in use by another foreman"), "{stderr}");

    let hc = run_cli(&["healthcheck", "--url", &base], dir.path());
    assert!(hc.status.success(), "{hc:?}");

    crate::helpers::signal(&child, "-TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // The database is intact after a clean stop.
    let conn = rusqlite::Connection::open(dir.path().join("data/foreman.db")).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

#[test]
fn prune_command_runs_against_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(&["prune", "--older-than", "1d"], dir.path());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pruned 0 jobs, 0 artifact files, 0 idempotency keys"
    );
}
