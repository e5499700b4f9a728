//! Shutdown plumbing: one cancellation token for every background task, one tracker to wait on
//! them, and the OS signals that start it.
//!
//! Phases (logged by [`crate::app::App::run`]):
//! 1. a signal arrives → stop accepting connections;
//! 2. in-flight requests finish, up to `shutdown_timeout`;
//! 3. the token is cancelled → background tasks stop; the tracker is awaited (same deadline);
//! 4. the database writer drains, checkpoints and closes.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Everything a background task needs to be stoppable and awaited.
#[derive(Clone, Default)]
pub struct Tasks {
    pub token: CancellationToken,
    pub tracker: TaskTracker,
}

impl Tasks {
    /// Spawns a tracked task; every background task goes through here.
    pub fn spawn<F>(&self, name: &'static str, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        use tracing::Instrument;
        self.tracker
            .spawn(fut.instrument(tracing::info_span!("task", name)));
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("received Ctrl-C"),
        () = term => tracing::info!("received SIGTERM"),
    }
}
