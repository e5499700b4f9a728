//! Child processes of the benchmark: the simulator and foreman, on free loopback ports.

use std::path::Path;
use std::process::{Child as Proc, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub struct Child {
    proc: Proc,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Child {
    pub async fn sim(bin_dir: &Path, extra: &[&str]) -> Result<Self> {
        let port = free_port()?;
        let mut cmd = Command::new(bin_dir.join("ollama-sim"));
        cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--log", "warn"])
            .args(extra);
        Self::start(cmd, port, None).await
    }

    pub async fn foreman(bin_dir: &Path, target: &str) -> Result<Self> {
        Self::foreman_with(bin_dir, target, &[], None).await
    }

    /// foreman confined to one CPU (`taskset`), for the pinned saturation run.
    pub async fn foreman_on_cpu(bin_dir: &Path, target: &str, cpu: usize) -> Result<Self> {
        let port = free_port()?;
        let dir = tempfile::tempdir()?;
        let mut cmd = Command::new("taskset");
        cmd.arg("-c")
            .arg(cpu.to_string())
            .arg(bin_dir.join("foreman"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--target",
                target,
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .current_dir(dir.path())
            .env("FOREMAN_LOG", "warn");
        Self::start(cmd, port, Some(dir)).await
    }

    /// foreman with extra `FOREMAN_*` settings, optionally on a prepared data dir.
    pub async fn foreman_with(
        bin_dir: &Path,
        target: &str,
        env: &[(&str, &str)],
        data: Option<tempfile::TempDir>,
    ) -> Result<Self> {
        let port = free_port()?;
        let dir = match data {
            Some(d) => d,
            None => tempfile::tempdir()?,
        };
        let mut cmd = Command::new(bin_dir.join("foreman"));
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--target",
            target,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .current_dir(dir.path())
        .env("FOREMAN_LOG", "warn")
        .envs(env.iter().copied());
        Self::start(cmd, port, Some(dir)).await
    }

    async fn start(mut cmd: Command, port: u16, dir: Option<tempfile::TempDir>) -> Result<Self> {
        let proc = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start child (build release binaries first: scripts/bench.sh)")?;
        let child = Self {
            proc,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(child);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("child did not listen on {port}")
    }

    /// CPU time (user + system) used so far, in seconds (Linux `/proc`, 100 ticks/s).
    pub fn cpu_seconds(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.proc.id()))?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).context("bad stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        Ok(ticks as f64 / 100.0)
    }

    /// Resident set size now, in KiB (Linux `/proc`).
    pub fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.id()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("VmRSS not found")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// Confines every thread of this process (and the children it starts from now on) to `cpus`
/// (a `taskset` list such as `0` or `0-1`).
pub fn pin_self(cpus: &str) -> Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .context("taskset (util-linux) is needed for the pinned run")?;
    if !status.success() {
        bail!("taskset -a -p -c {cpus} failed");
    }
    Ok(())
}
