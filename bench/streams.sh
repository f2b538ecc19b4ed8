#!/usr/bin/env bash
# Live streams under workload A against a fresh embedded server (SQLite, fsync on every commit,
# rate limits off): bench/streams.sh [BINARY] [KIND] [PER_RUN] [GLOBAL] [RUNS]. The client is
# `venture bench streams` (one epoll thread, its own process); see docs/streams.md.
set -euo pipefail
BIN=${1:-build/venture}
KIND=${2:-sse}
PER_RUN=${3:-10}
GLOBAL=${4:-10}
RUNS=${5:-1000}
DATA=$(mktemp -d /tmp/venture-streams-XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
VENTURE_RATE_LIMITS_ENABLED=false VENTURE_LOG_LEVEL=warn \
  "$BIN" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" >/dev/null &
SERVER=$!
trap 'kill $SERVER; wait $SERVER; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
"$BIN" bench streams --port "$PORT" --token "$(cat "$DATA/admin.token")" --kind "$KIND" \
  --per-run "$PER_RUN" --global "$GLOBAL" --runs "$RUNS" --server-pid "$SERVER"
