#!/usr/bin/env bash
# Measure the emulator's GET-project throughput with wrk (rate limit and faults off).
# Usage: benchmarks/emulator_rps.sh [python]   (default: python3 on PATH, or /tmp/venv/bin/python)
set -euo pipefail
PY="${1:-${PYTHON:-python3}}"
KEY="sk-bab-emulator-demo-key"
OUT="$(mktemp)"
"$PY" -m airflow_provider_babou.emulator --port 0 --rate-limit 0 --faults none >"$OUT" 2>/dev/null &
PID=$!
trap 'kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -f "$OUT"' EXIT
for _ in $(seq 1 200); do grep -q listening "$OUT" && break; sleep 0.1; done
API="$(sed -n 's/^Babou emulator listening on //p' "$OUT")"
PROJECT="$(curl -s -X POST "$API/projects" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' -d '{"name":"bench"}' | sed 's/.*"id":"\([^"]*\)".*/\1/')"
echo "wrk -t1 -c8 -d10s -H 'Authorization: Bearer $KEY' $API/projects/$PROJECT"
wrk -t1 -c8 -d10s -H "Authorization: Bearer $KEY" "$API/projects/$PROJECT"
