#!/usr/bin/env bash
# End-to-end tests with the official clients (ollama-python, openai-python) against the real
# binaries. Installs its own Python packages into a throwaway venv under target/.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${E2E_VENV:-target/e2e-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check ollama openai pytest schemathesis
cargo build --quiet --bin foreman && cargo build --quiet -p ollama-sim --bin ollama-sim
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/e2e "$@"
