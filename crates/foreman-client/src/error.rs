//! The one error type of the client.

use std::time::Duration;

use foreman_api::ErrorDetail;
use foreman_api::jobs::JobView;

/// Everything a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The base URL cannot be used.
    #[error("invalid foreman URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// foreman could not be reached or the connection broke.
    #[error("cannot reach foreman at {url}: {reason}")]
    Transport {
        url: String,
        /// The innermost cause (e.g. "Connection refused"), for one readable line.
        reason: String,
        #[source]
        source: reqwest::Error,
    },
    /// foreman answered with an error status and its structured error body.
    #[error("foreman answered {status} for {url}: {} ({})", .detail.message, .detail.code)]
    Status {
        status: u16,
        url: String,
        detail: ErrorDetail,
    },
    /// The job ended `failed`; `message` is the target's (or foreman's) last error.
    #[error("job {id} failed: {message}")]
    JobFailed {
        id: String,
        message: String,
        job: Box<JobView>,
    },
    /// The job ended `canceled`.
    #[error("job {id} was canceled")]
    Canceled { id: String, job: Box<JobView> },
    /// The job did not end within the wait; it is still queued or running on foreman.
    #[error("job {id} did not finish within {}s", .waited.as_secs_f64())]
    Timeout { id: String, waited: Duration },
    /// foreman's answer did not have the expected shape.
    #[error("unexpected answer from {url}: {reason}")]
    Decode { url: String, reason: String },
}

impl Error {
    /// The HTTP status foreman answered with, for [`Error::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn transport(url: &str, source: reqwest::Error) -> Self {
        Error::Transport {
            url: url.to_string(),
            reason: root_cause(&source),
            source,
        }
    }

    pub(crate) fn decode(url: &str, reason: impl std::fmt::Display) -> Self {
        Error::Decode {
            url: url.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// The innermost error message, which names the real problem ("Connection refused") where
/// reqwest's own message only says "error sending request".
fn root_cause(e: &reqwest::Error) -> String {
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    if e.is_timeout() {
        format!("timed out ({inner})")
    } else {
        inner.to_string()
    }
}
