//! Reading CPU load, memory and temperature. [`SystemProbe`] is the seam tests inject readings
//! through; [`Sysinfo`] is the real one (the `sysinfo` crate: no /proc parsing of our own).

use std::sync::Mutex;

use foreman_api::health::LoadAverage;

/// CPU and memory figures at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemReading {
    pub load_average: LoadAverage,
    pub physical_cores: u32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// Hottest CPU sensor in °C; `None` when the host exposes no sensor.
    pub cpu_temperature_c: Option<f64>,
}

/// Where CPU, memory and temperature come from. Called on a blocking thread.
pub trait SystemProbe: Send + Sync + 'static {
    fn read(&self) -> SystemReading;
}

/// The host, through `sysinfo`.
pub struct Sysinfo {
    system: Mutex<sysinfo::System>,
    components: Mutex<sysinfo::Components>,
}

impl Sysinfo {
    pub fn new() -> Self {
        Self {
            system: Mutex::new(sysinfo::System::new()),
            components: Mutex::new(sysinfo::Components::new_with_refreshed_list()),
        }
    }
}

impl Default for Sysinfo {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemProbe for Sysinfo {
    fn read(&self) -> SystemReading {
        let load = sysinfo::System::load_average();
        let (used, total) = match self.system.lock() {
            Ok(mut s) => {
                s.refresh_memory();
                (s.used_memory(), s.total_memory())
            }
            Err(_) => (0, 0),
        };
        SystemReading {
            load_average: LoadAverage {
                one: load.one,
                five: load.five,
                fifteen: load.fifteen,
            },
            physical_cores: sysinfo::System::physical_core_count()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1),
            memory_used_bytes: used,
            memory_total_bytes: total,
            cpu_temperature_c: self.hottest_cpu(),
        }
    }
}

impl Sysinfo {
    /// The hottest CPU-like sensor (coretemp, k10temp, "Package", "CPU"); else any thermal
    /// zone sysinfo found (on Linux it reads hwmon, which includes /sys/class/thermal zones).
    fn hottest_cpu(&self) -> Option<f64> {
        let mut components = self.components.lock().ok()?;
        components.refresh(true);
        let readings: Vec<(String, f32)> = components
            .iter()
            .filter_map(|c| Some((c.label().to_lowercase(), c.temperature()?)))
            .filter(|(_, t)| t.is_finite() && *t > 0.0)
            .collect();
        let cpu_like = |label: &str| {
            ["cpu", "core", "package", "k10temp", "coretemp", "tctl"]
                .iter()
                .any(|k| label.contains(k))
        };
        let cpu: Vec<f32> = readings
            .iter()
            .filter(|(l, _)| cpu_like(l))
            .map(|(_, t)| *t)
            .collect();
        let pool = if cpu.is_empty() {
            readings.iter().map(|(_, t)| *t).collect()
        } else {
            cpu
        };
        pool.into_iter().reduce(f32::max).map(f64::from)
    }
}
