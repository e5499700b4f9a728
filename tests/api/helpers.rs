//! `spawn_app()`: the daemon on port 0 with its database in a temp dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use foreman::app::App;
use foreman::config::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
    pub state: foreman::app::AppState,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), foreman::app::AppError>>>,
}

/// A config for tests: port 0, data in `dir`, a short shutdown deadline.
pub fn test_config(dir: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join("data"),
        shutdown_timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    adjust(&mut config);
    start(config, dir).await
}

/// foreman on an existing data dir (a restart).
pub async fn spawn_on(data_dir: &std::path::Path, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.data_dir = data_dir.to_path_buf();
    adjust(&mut config);
    start(config, dir).await
}

/// foreman with injected host probes (readings chosen by the test).
pub async fn spawn_with_probes(
    probes: foreman::host::Probes,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    adjust(&mut config);
    start_with(config, dir, probes).await
}

async fn start(config: Config, dir: tempfile::TempDir) -> TestApp {
    let probes = foreman::host::Probes::host(&config.host_metrics);
    start_with(config, dir, probes).await
}

async fn start_with(
    config: Config,
    dir: tempfile::TempDir,
    probes: foreman::host::Probes,
) -> TestApp {
    let app = App::build_with(config, probes).await.expect("app builds");
    let addr = app.local_addr();
    let state = app.state().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        base: format!("http://{addr}"),
        dir,
        client: reqwest::Client::new(),
        state,
        stop: Some(stop),
        handle: Some(handle),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("data/foreman.db")
    }

    /// `POST /jobs` with `body`, asserting 202; returns the job id.
    pub async fn submit_ok(&self, body: &serde_json::Value) -> String {
        let r = self
            .client
            .post(self.url("/jobs"))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let v: serde_json::Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// Polls the job view (every 5 ms, up to 10 s) until its state is one of `states`; returns
    /// the last view either way, so the caller's assertion reports what it saw.
    pub async fn wait_for_state(&self, id: &str, states: &[&str]) -> serde_json::Value {
        let mut view = serde_json::Value::Null;
        for _ in 0..2000 {
            view = self.get(&format!("/jobs/{id}")).await.json().await.unwrap();
            if states.iter().any(|s| view["state"] == *s) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        view
    }

    /// Triggers shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) -> Result<(), foreman::app::AppError> {
        self.stop_and_wait().await
    }

    pub async fn stop_and_wait(&mut self) -> Result<(), foreman::app::AppError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.handle.take() {
            Some(h) => h.await.unwrap(),
            None => Ok(()),
        }
    }
}

/// The simulator, fast (1 simulated second = 1 ms), on port 0.
pub async fn spawn_sim(adjust: impl FnOnce(&mut ollama_sim::SimConfig)) -> ollama_sim::SimServer {
    let mut config = ollama_sim::SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        time_scale: 0.001,
        ..ollama_sim::SimConfig::default()
    };
    adjust(&mut config);
    ollama_sim::spawn(config).await.unwrap()
}

/// foreman in front of `upstream_url`.
pub async fn spawn_proxy(upstream_url: &str, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let url = upstream_url.parse().unwrap();
    spawn_with(|c| {
        c.target.url = url;
        adjust(c);
    })
    .await
}

/// Polls `cond` every 5 ms for up to 5 s (for effects in another task or process).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what}: not reached within 5 s");
}

/// Path of the built `foreman` binary, for tests of the real process.
pub fn foreman_bin() -> &'static str {
    env!("CARGO_BIN_EXE_foreman")
}

/// A child process killed when the test ends, even by a failed assertion (no orphans).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Only a process that has not been reaped yet, so a reused pid is never hit.
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// What the simulator answers to `body` sent straight to it, unstreamed: the reference a
/// result through foreman is compared with.
pub async fn direct_answer(
    sim_url: &str,
    path: &str,
    body: &serde_json::Value,
) -> serde_json::Value {
    let mut body = body.clone();
    body["stream"] = serde_json::json!(false);
    let response = reqwest::Client::new()
        .post(format!("{sim_url}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

/// Sends `signal` (`-9`, `-TERM`) to a child process, asserting it was delivered.
pub fn signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {}", child.id());
}
