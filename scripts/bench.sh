#!/usr/bin/env bash
# Builds release binaries and runs a benchmark: scripts/bench.sh passthrough [--seconds N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin foreman
cargo build --release --quiet -p ollama-sim --bin ollama-sim
cargo build --release --quiet -p foreman-bench
ulimit -n 65536 2>/dev/null || true
exec target/release/foreman-bench "$@"
