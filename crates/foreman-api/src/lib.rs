//! Wire types of foreman's own HTTP surface, shared by the daemon and its clients.
//!
//! # Layout
//! - [`error`]: the structured error body of foreman's own routes (`{"error":{"code","message","field"}}`).
//!   Proxied Ollama routes keep Ollama's own shape (`{"error":"..."}`); that shape lives in the daemon.
//! - [`jobs`]: the submit body, the job view, states, usage, queue figures.
//! - [`health`]: `/readyz` and `/status` bodies (target state, loaded models).
//!
//! This crate depends on serde only, so a client can use it without pulling in tokio, axum or rusqlite.

pub mod error;
pub mod health;
pub mod jobs;

pub use error::{ErrorBody, ErrorDetail};
