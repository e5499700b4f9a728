//! The job the worker is running now, with the token that aborts it (cancel requests).

use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Running {
    current: Mutex<Option<(String, CancellationToken)>>,
}

impl Running {
    /// Registers `id` as running; the token is cancelled by [`Running::cancel`].
    pub fn start(&self, id: &str) -> CancellationToken {
        let token = CancellationToken::new();
        if let Ok(mut c) = self.current.lock() {
            *c = Some((id.to_string(), token.clone()));
        }
        token
    }

    pub fn finish(&self) {
        if let Ok(mut c) = self.current.lock() {
            *c = None;
        }
    }

    /// Aborts `id` if it is the running job; true when it was.
    pub fn cancel(&self, id: &str) -> bool {
        let Ok(c) = self.current.lock() else {
            return false;
        };
        match c.as_ref() {
            Some((running, token)) if running == id => {
                token.cancel();
                true
            }
            _ => false,
        }
    }
}
