//! Black-box tests of the daemon: the real HTTP server on port 0, a real SQLite file in a temp
//! dir, and (from the passthrough on) the simulator as the upstream.

// Test code may panic on unexpected failures: that is how a test reports them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod upstreams;

mod chaos;
mod cli;
mod client;
mod contracts;
mod crash;
mod deploy;
mod e2e;
mod faults;
mod health;
mod host;
mod hostile;
mod jobs;
mod load;
mod metrics;
mod passthrough;
mod resources;
mod webhooks;
