//! In-process notifications of job state changes, published after the change commits. Long-poll
//! waiters and event followers subscribe instead of polling the database.

use foreman_api::jobs::JobState;
use tokio::sync::broadcast;

/// One committed state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobChange {
    pub id: String,
    pub state: JobState,
    /// Set on live progress notices (not state changes): tokens generated so far.
    pub tokens: Option<u64>,
}

#[derive(Clone)]
pub struct JobBus {
    tx: broadcast::Sender<JobChange>,
}

impl Default for JobBus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(4096).0,
        }
    }
}

impl JobBus {
    pub fn publish(&self, id: &str, state: JobState) {
        let _ = self.tx.send(JobChange {
            id: id.to_string(),
            state,
            tokens: None,
        });
    }

    /// Live token progress of a working job (not stored; followers of its events see it).
    pub fn progress(&self, id: &str, tokens: u64) {
        let _ = self.tx.send(JobChange {
            id: id.to_string(),
            state: JobState::Working,
            tokens: Some(tokens),
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<JobChange> {
        self.tx.subscribe()
    }
}
