//! A Rust client for [foreman](https://example.invalid/foreman): submit durable jobs, wait for
//! them, follow their progress, and verify the webhooks foreman signs.
//!
//! # Layout
//! - [`Client`] / [`ClientBuilder`] (`client.rs`): base URL, bearer token, timeouts and the bounded
//!   retry on `429`/`503` that honours `Retry-After`.
//! - Job calls (`jobs.rs`): [`Client::submit`], [`Client::get`], [`Client::wait`] (a long-poll
//!   loop), [`Client::cancel`], [`Client::list`] (a stream over every page), [`Client::events`],
//!   [`Client::follow`] (live state changes and token progress), [`Client::artifact`],
//!   [`Client::status`].
//! - The one-call facade (`facade.rs`): [`Client::chat`], [`Client::generate`],
//!   [`Client::embed`] submit a job, wait for it and return the assembled Ollama response — a
//!   synchronous API over the durable asynchronous one. Typed Ollama bodies live in [`ollama`].
//! - [`webhook`]: Standard Webhooks signing and [`verify_webhook`], framework-agnostic.
//! - [`blocking`] (feature `blocking`): the same surface for callers without an async runtime.
//! - [`Error`] (`error.rs`): one error type for every call.
//!
//! # Example
//! ```no_run
//! use foreman_client::{Client, ollama::{ChatRequest, Message}};
//!
//! # async fn demo() -> Result<(), foreman_client::Error> {
//! let client = Client::builder("http://127.0.0.1:11435").token("s3cret").build()?;
//! let reply = client
//!     .chat(ChatRequest::new("llama3.2", vec![Message::user("Why is the sky blue?")]))
//!     .await?;
//! println!("{}", reply.message.content);
//! # Ok(()) }
//! ```

#[cfg(feature = "blocking")]
pub mod blocking;
mod client;
mod error;
mod facade;
mod jobs;
pub mod ollama;
pub mod webhook;

pub use client::{Client, ClientBuilder};
pub use error::Error;
pub use foreman_api as api;
pub use jobs::{ListFilter, Update};
pub use webhook::{WebhookError, verify_webhook};

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
