//! The availability gate: a pure function of the previous state and a reading, so the
//! thresholds and the hysteresis are tested without a host.

use foreman_api::health::HostStatus;

use crate::config::HostMetricsConfig;

/// Whether the worker may start jobs, and why not.
#[derive(Debug, Clone, PartialEq)]
pub struct GateState {
    pub paused: bool,
    pub reason: Option<String>,
}

impl GateState {
    pub const OPEN: GateState = GateState {
        paused: false,
        reason: None,
    };
}

/// The next gate state. Closed when memory or temperature is above its limit; once closed it
/// opens only when both are `resume_margin` below their limits, so a host hovering at the limit
/// does not flap.
pub fn evaluate(
    previous: &GateState,
    reading: &HostStatus,
    limits: &HostMetricsConfig,
) -> GateState {
    let over = over_limits(reading, limits, 0.0);
    if !over.is_empty() {
        return GateState {
            paused: true,
            reason: Some(over.join("; ")),
        };
    }
    if previous.paused {
        let near = over_limits(reading, limits, limits.resume_margin);
        if !near.is_empty() {
            let why = format!("cooling down: {}", near.join("; "));
            return GateState {
                paused: true,
                reason: Some(why),
            };
        }
    }
    GateState::OPEN
}

/// The limits `reading` exceeds once each is lowered by `margin`, as readable phrases.
fn over_limits(reading: &HostStatus, limits: &HostMetricsConfig, margin: f64) -> Vec<String> {
    let mut over = Vec::new();
    let memory_limit = limits.max_memory_percent - margin;
    if reading.memory_percent > memory_limit {
        over.push(format!(
            "memory {:.1}% > {memory_limit:.1}%",
            reading.memory_percent
        ));
    }
    let temperature_limit = limits.max_temperature_c - margin;
    if let Some(t) = reading.cpu_temperature_c.filter(|t| *t > temperature_limit) {
        over.push(format!(
            "CPU temperature {t:.1} °C > {temperature_limit:.1} °C"
        ));
    }
    over
}

#[cfg(test)]
mod tests {
    use super::*;
    use foreman_api::health::{GpuStatus, LoadAverage};

    fn reading(memory_percent: f64, temperature: Option<f64>) -> HostStatus {
        HostStatus {
            at: String::new(),
            load_average: LoadAverage::default(),
            physical_cores: 8,
            available_cores: 8.0,
            memory_used_bytes: 0,
            memory_total_bytes: 0,
            memory_percent,
            cpu_temperature_c: temperature,
            gpu: GpuStatus {
                gpu_type: "none".into(),
                source: None,
                name: None,
                vram_total_bytes: None,
                vram_free_bytes: None,
                note: None,
            },
        }
    }

    #[test]
    fn closes_above_either_limit_and_says_which() {
        let limits = HostMetricsConfig::default();
        let open = GateState::OPEN;
        assert_eq!(evaluate(&open, &reading(50.0, Some(60.0)), &limits), open);
        let hot = evaluate(&open, &reading(50.0, Some(80.0)), &limits);
        assert!(hot.paused);
        assert_eq!(
            hot.reason.as_deref(),
            Some("CPU temperature 80.0 °C > 75.0 °C")
        );
        let both = evaluate(&open, &reading(95.5, Some(80.0)), &limits);
        assert_eq!(
            both.reason.as_deref(),
            Some("memory 95.5% > 90.0%; CPU temperature 80.0 °C > 75.0 °C")
        );
    }

    #[test]
    fn reopens_only_below_the_margin() {
        let limits = HostMetricsConfig::default();
        let closed = evaluate(&GateState::OPEN, &reading(92.0, None), &limits);
        assert!(closed.paused);
        // Under the limit but inside the 5-point margin: still closed.
        let cooling = evaluate(&closed, &reading(88.0, None), &limits);
        assert!(cooling.paused);
        assert_eq!(
            cooling.reason.as_deref(),
            Some("cooling down: memory 88.0% > 85.0%")
        );
        // The same reading does not close an open gate.
        assert!(!evaluate(&GateState::OPEN, &reading(88.0, None), &limits).paused);
        assert_eq!(
            evaluate(&cooling, &reading(84.0, None), &limits),
            GateState::OPEN
        );
    }

    #[test]
    fn an_absent_sensor_never_closes_the_gate() {
        let limits = HostMetricsConfig::default();
        assert_eq!(
            evaluate(&GateState::OPEN, &reading(10.0, None), &limits),
            GateState::OPEN
        );
    }
}
