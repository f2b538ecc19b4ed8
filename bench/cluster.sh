#!/usr/bin/env bash
# Workloads A, B, C and L embedded (SQLite, fsync on) and clustered (PostgreSQL 15 with
# synchronous_commit on + NATS JetStream, both on this machine), in one session, one JSON line
# each. Every clustered workload gets a fresh database and a fresh nats-server (throw-away services
# from scripts/test-services, stopped by PID at the end).
#
#   bench/cluster.sh [BINARY] [RUNS_SCALE]    # RUNS_SCALE 1 = the workloads' default sizes
set -euo pipefail
BIN=${1:-build/venture}
SCALE=${2:-1}
ROOT=$(mktemp -d /tmp/venture-bench-XXXXXX)
chmod 755 "$ROOT"
trap 'for d in "$ROOT"/svc-*; do [ -d "$d" ] && scripts/test-services stop "$d" >/dev/null 2>&1; done; rm -rf "$ROOT"' EXIT
runs() { case $1 in A|B) echo $((1000 * SCALE));; C) echo $((20000 * SCALE));; L) echo $((100 * SCALE));; esac; }
for w in A B C L; do
  "$BIN" bench "$w" --runs "$(runs $w)" -o json
done
for w in A B C L; do
  svc="$ROOT/svc-$w"
  env_lines=$(scripts/test-services start "$svc")
  pg=$(sed -n 's/^VENTURE_TEST_POSTGRES_URL=//p' <<<"$env_lines")
  nats=$(sed -n 's/^NATS_URL=//p' <<<"$env_lines")
  "$BIN" bench "$w" --runs "$(runs $w)" --store "$pg" --bus "$nats" -o json
  scripts/test-services stop "$svc" >/dev/null
done
