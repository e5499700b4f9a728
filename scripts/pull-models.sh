#!/usr/bin/env bash
# Pulls models on the target through foreman's passthrough, showing progress.
#   FOREMAN_URL=http://127.0.0.1:11435 scripts/pull-models.sh llama3.2 qwen3:8b
# Idempotent: a model already present finishes at once. Exits non-zero if any pull fails.
# Sends FOREMAN_TOKEN as a bearer token when set (inbound api_tokens).
set -euo pipefail
url="${FOREMAN_URL:-http://127.0.0.1:11435}"
[ "$#" -gt 0 ] || { echo "usage: $0 MODEL [MODEL...]" >&2; exit 2; }
auth=()
[ -n "${FOREMAN_TOKEN:-}" ] && auth=(-H "Authorization: Bearer ${FOREMAN_TOKEN}")
failed=0
for model in "$@"; do
  echo "== $model"
  last=""
  # One NDJSON progress object per line; an {"error":...} line means the pull failed.
  while IFS= read -r line; do
    last="$line"
    status=$(printf '%s' "$line" | sed -n 's/.*"status":"\([^"]*\)".*/\1/p')
    error=$(printf '%s' "$line" | sed -n 's/.*"error":"\([^"]*\)".*/\1/p')
    completed=$(printf '%s' "$line" | sed -n 's/.*"completed":\([0-9]*\).*/\1/p')
    total=$(printf '%s' "$line" | sed -n 's/.*"total":\([0-9]*\).*/\1/p')
    if [ -n "$error" ]; then
      echo "   error: $error" >&2
    elif [ -n "$completed" ] && [ -n "$total" ] && [ "$total" -gt 0 ]; then
      printf '   %s %d%%\n' "$status" $((completed * 100 / total))
    elif [ -n "$status" ]; then
      echo "   $status"
    fi
  done < <(curl -sS --fail-with-body -N "${auth[@]}" -X POST "$url/api/pull" \
             -d "{\"model\":\"$model\",\"stream\":true}" || echo '{"error":"request failed"}')
  case "$last" in
    *'"status":"success"'*) echo "   ok" ;;
    *) echo "   FAILED: $model" >&2; failed=1 ;;
  esac
done
exit "$failed"
