//! GPU memory: NVML first (`nvml-wrapper`, which loads `libnvidia-ml` at run time, so the
//! binary runs on hosts without it), then `nvidia-smi`, else `gpu_type: none`. Every query is
//! bounded by a timeout: a wedged driver delays nothing but this reading.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use foreman_api::health::GpuStatus;

/// Device figures summed over every GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuReading {
    pub name: String,
    pub vram_total_bytes: u64,
    pub vram_free_bytes: u64,
}

/// A blocking GPU query (NVML in production; a stub in tests).
pub trait GpuProbe: Send + Sync + 'static {
    fn read(&self) -> Result<GpuReading, String>;
}

/// NVML, initialised once; a host without the library answers the same error every time.
#[derive(Default)]
pub struct Nvml(OnceLock<Result<nvml_wrapper::Nvml, String>>);

impl GpuProbe for Nvml {
    fn read(&self) -> Result<GpuReading, String> {
        let nvml = self
            .0
            .get_or_init(|| nvml_wrapper::Nvml::init().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)?;
        let count = nvml.device_count().map_err(|e| e.to_string())?;
        let mut names = Vec::new();
        let (mut total, mut free) = (0, 0);
        for i in 0..count {
            let device = nvml.device_by_index(i).map_err(|e| e.to_string())?;
            let memory = device.memory_info().map_err(|e| e.to_string())?;
            total += memory.total;
            free += memory.free;
            names.push(device.name().unwrap_or_else(|_| "NVIDIA GPU".into()));
        }
        if count == 0 {
            return Err("NVML sees no device".into());
        }
        Ok(GpuReading {
            name: names.join(", "),
            vram_total_bytes: total,
            vram_free_bytes: free,
        })
    }
}

/// How GPUs are queried: the NVML probe, then the `nvidia-smi` command (empty: skipped).
#[derive(Clone)]
pub struct GpuQuery {
    pub nvml: Arc<dyn GpuProbe>,
    pub nvidia_smi: String,
    pub timeout: Duration,
}

impl GpuQuery {
    /// The GPU status; never fails and never waits longer than twice the timeout.
    pub async fn status(&self) -> GpuStatus {
        let nvml = self.nvml.clone();
        let from_nvml = tokio::time::timeout(
            self.timeout,
            tokio::task::spawn_blocking(move || nvml.read()),
        )
        .await;
        let nvml_error = match from_nvml {
            Ok(Ok(Ok(r))) => return nvidia(r, "nvml"),
            Ok(Ok(Err(e))) => e,
            Ok(Err(e)) => format!("NVML query panicked: {e}"),
            Err(_) => format!(
                "NVML did not answer within {}",
                humantime::format_duration(self.timeout)
            ),
        };
        if self.nvidia_smi.is_empty() {
            return none(format!("NVML: {nvml_error}"));
        }
        match self.smi().await {
            Ok(r) => nvidia(r, "nvidia-smi"),
            Err(smi_error) => none(format!("NVML: {nvml_error}; nvidia-smi: {smi_error}")),
        }
    }

    async fn smi(&self) -> Result<GpuReading, String> {
        let run = tokio::process::Command::new(&self.nvidia_smi)
            .args([
                "--query-gpu=name,memory.total,memory.free",
                "--format=csv,noheader,nounits",
            ])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| {
                format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                )
            })?
            .map_err(|e| e.to_string())?;
        if !output.status.success() {
            let why = String::from_utf8_lossy(&output.stderr).trim().to_string();
            return Err(format!("{}: {why}", output.status));
        }
        parse_smi(&String::from_utf8_lossy(&output.stdout))
    }
}

/// `name, total MiB, free MiB` per line, summed over lines.
pub fn parse_smi(text: &str) -> Result<GpuReading, String> {
    const MIB: u64 = 1024 * 1024;
    let mut names = Vec::new();
    let (mut total, mut free) = (0, 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [name, t, f] = fields[..] else {
            return Err(format!("unexpected nvidia-smi line {line:?}"));
        };
        let number = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("unexpected nvidia-smi line {line:?}"))
        };
        total += number(t)? * MIB;
        free += number(f)? * MIB;
        names.push(name.to_string());
    }
    if names.is_empty() {
        return Err("nvidia-smi listed no GPU".into());
    }
    Ok(GpuReading {
        name: names.join(", "),
        vram_total_bytes: total,
        vram_free_bytes: free,
    })
}

fn nvidia(r: GpuReading, source: &str) -> GpuStatus {
    GpuStatus {
        gpu_type: "nvidia".into(),
        source: Some(source.into()),
        name: Some(r.name),
        vram_total_bytes: Some(r.vram_total_bytes),
        vram_free_bytes: Some(r.vram_free_bytes),
        note: None,
    }
}

fn none(note: String) -> GpuStatus {
    GpuStatus {
        gpu_type: "none".into(),
        source: None,
        name: None,
        vram_total_bytes: None,
        vram_free_bytes: None,
        note: Some(note),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_csv_is_summed_over_devices() {
        let r =
            parse_smi("NVIDIA GeForce RTX 4090, 24564, 20000\nNVIDIA A2, 15356, 15000\n").unwrap();
        assert_eq!(r.name, "NVIDIA GeForce RTX 4090, NVIDIA A2");
        assert_eq!(r.vram_total_bytes, (24564 + 15356) * 1024 * 1024);
        assert_eq!(r.vram_free_bytes, 35000 * 1024 * 1024);
        assert!(parse_smi("").is_err());
        assert!(parse_smi("GPU, N/A, 1").is_err());
    }
}
