#!/usr/bin/env bash
# POST /v1/runs under wrk against a fresh embedded server (SQLite, fsync on every commit, rate
# limits off): bench/wrk_post_runs.sh [BINARY] [DURATION] [CONNECTIONS]. Needs `wrk` (apt).
set -euo pipefail
BIN=${1:-build/venture}
DURATION=${2:-10s}
CONNECTIONS=${3:-64}
DATA=$(mktemp -d /tmp/venture-wrk-XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
VENTURE_RATE_LIMITS_ENABLED=false VENTURE_LOG_LEVEL=warn \
  "$BIN" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" >/dev/null &
SERVER=$!
trap 'kill $SERVER; wait $SERVER; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
export VENTURE_TOKEN=$(cat "$DATA/admin.token")
curl -sf -X POST -H "Authorization: Bearer $VENTURE_TOKEN" -H 'Content-Type: application/json' \
  --data '{"name":"wrk","nodes":[{"id":"a","type":"noop"}]}' "http://127.0.0.1:$PORT/v1/workflows" >/dev/null
VENTURE_WORKFLOW=wrk wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency \
  -s "$(dirname "$0")/wrk_post_runs.lua" "http://127.0.0.1:$PORT/v1/runs"
