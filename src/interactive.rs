//! Interactive traffic: passthrough generation requests in flight. The worker starts no new job
//! while any is running (up to `worker.interactive_grace`), and afterwards prefers the model the
//! interactive traffic used: Ollama has just loaded it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default)]
pub struct Interactive {
    in_flight: AtomicUsize,
    /// Bumped by every interactive request; the worker remembers the last one it honoured.
    epoch: AtomicU64,
    last_model: Mutex<Option<String>>,
    changed: Notify,
}

/// Held while one interactive request is in flight (until its response body ends).
pub struct Guard(Arc<Interactive>);

impl Interactive {
    /// Marks an interactive request for `model` (canonical name) as started.
    pub fn begin(self: &Arc<Self>, model: Option<String>) -> Guard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let (Some(m), Ok(mut last)) = (model, self.last_model.lock()) {
            *last = Some(m);
        }
        Guard(self.clone())
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The model of interactive traffic newer than `seen_epoch`, and the current epoch.
    pub fn since(&self, seen_epoch: u64) -> (Option<String>, u64) {
        let epoch = self.epoch.load(Ordering::SeqCst);
        if epoch == seen_epoch {
            return (None, epoch);
        }
        (self.last_model.lock().ok().and_then(|m| m.clone()), epoch)
    }

    /// Resolves when the in-flight count changes.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// Passthrough paths that make the target generate (and so load a model).
pub fn is_generation_path(path: &str) -> bool {
    matches!(
        path,
        "/api/chat"
            | "/api/generate"
            | "/api/embed"
            | "/api/embeddings"
            | "/v1/chat/completions"
            | "/v1/completions"
            | "/v1/embeddings"
    )
}
