//! foreman: one Ollama server turned into a queued, observable, OpenAI/Ollama-compatible endpoint.
//!
//! # Architecture
//! Data flows one way: HTTP edge → queue (one SQLite writer thread) → worker → target client and
//! webhook sender.
//!
//! - [`cli`], [`config`], [`telemetry`]: the process's inputs: flags, layered configuration
//!   (defaults < TOML < env < flags), logging.
//! - [`app`]: the composition root: `App::build` opens the store and binds; `App::run` serves and
//!   shuts down in phases ([`shutdown`]).
//! - [`http`]: the router, middleware, and foreman's own handlers, with one error type per
//!   response shape ([`http::error`]).
//! - [`store`]: SQLite with a single writer thread (group commit) and embedded migrations.
//! - [`target`]: the pooled client for the one Ollama server, and its monitor.
//! - [`queue`]: the durable job queue (SQL, state machine) and the drain-by-model policy.
//! - [`worker`]: the one job worker (load, run, assemble, retry); [`interactive`]: the
//!   passthrough traffic it defers to.
//! - [`host`]: host figures (CPU, memory, temperature, GPU) and the availability gate.
//! - [`webhooks`]: the durable, signed webhook outbox and its sender.
//! - [`metrics`]: Prometheus metrics and their names.
//! - [`artifacts`]: result files; [`prune`]: retention of finished jobs and their files;
//!   [`backup`]: online copies of the data dir.
//! - [`ops`]: the operator commands (`foreman jobs …`, `foreman status`) that talk to a running
//!   daemon through `foreman-client`.
//! - [`clock`]: timestamp formatting shared by everything that stores time.

pub mod app;
pub mod artifacts;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod fuzzing;
pub mod host;
pub mod http;
pub mod interactive;
pub mod metrics;
pub mod ops;
pub mod prune;
pub mod queue;
pub mod shutdown;
pub mod store;
pub mod target;
pub mod telemetry;
pub mod webhooks;
pub mod worker;
