//! Scaled time: simulated durations map to real sleeps through `time_scale`, and real elapsed
//! time maps back to the simulated durations the API reports.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    scale: f64,
}

impl Clock {
    pub fn new(scale: f64) -> Self {
        Self {
            scale: scale.max(0.0),
        }
    }

    /// Real time that a simulated duration takes.
    pub fn real(&self, simulated: Duration) -> Duration {
        simulated.mul_f64(self.scale)
    }

    /// Sleeps for a simulated duration (no-op in zero-delay mode).
    pub async fn sleep(&self, simulated: Duration) {
        let real = self.real(simulated);
        if !real.is_zero() {
            tokio::time::sleep(real).await;
        }
    }

    /// Simulated time since `start` (real time when the scale is 0).
    pub fn since(&self, start: Instant) -> Duration {
        let real = start.elapsed();
        if self.scale > 0.0 {
            real.div_f64(self.scale)
        } else {
            real
        }
    }
}
