#!/usr/bin/env bash
# Memory-manager benchmark (issue 4 targets: >= 5000 memory ops/s with p99 <= 5 ms through
# HTTP with 32 agents; retrieval recall@10 >= 0.95 against exact search and p99 <= 20 ms at
# 100k items). Starts a fresh aiosd (its own data dir) for each part and runs build/memory:
#   1. ops: AGENTS agents add N blocks each, get them, mixed 50/50, all closed loop; then
#      mixed at RATE ops/s offered (latency from each op's scheduled start).
#   2. recall at each size in SIZES: load, wait for the embeddings, then Q retrievals through
#      the HNSW index and the same with "exact": true (the reference scan).
#   AGENTS=32 N=300 RATE=5000 SIZES="10000 100000" Q=300 bash bench/memory.sh   (SIZES="" skips part 2;
#   AIOSD_FLAGS="--set storage.embed_nice=5" adds flags to every aiosd)
set -euo pipefail
. "$(dirname "$0")/common.sh"
AGENTS="${AGENTS:-32}"; N="${N:-300}"; RATE="${RATE:-5000}"; SIZES="${SIZES-10000 100000}"; Q="${Q:-300}"
PORT="${PORT:-8798}"
tmp="$(mktemp -d)"; pid=""
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=""; }
trap 'stop; rm -rf "$tmp"' EXIT
start() {
  rm -rf "$tmp/data"
  ./build/aiosd --port "$PORT" --data-dir "$tmp/data" --set kernel.log_level=warn --set llms.model="$model" \
    --set storage.embed_queue=200000 ${AIOSD_FLAGS:-} "$@" 2>>"$tmp/aiosd.log" & pid=$!
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/status" >/dev/null 2>&1 && return; sleep 0.2; done
  echo "aiosd did not start; log:" >&2; tail -20 "$tmp/aiosd.log" >&2; exit 1
}
echo "## memory ops through HTTP ($AGENTS agents, $N ops per agent per phase)"
start
./build/memory "http://127.0.0.1:$PORT" ops "$AGENTS" "$N" "$RATE" 2>>"$tmp/json.log"
stop
for size in $SIZES; do
  echo; echo "## retrieval at $size items ($Q queries, k = 10)"
  start
  ./build/memory "http://127.0.0.1:$PORT" recall "$size" "$Q" 10 2>>"$tmp/json.log"
  stop
done
echo; echo "raw JSON lines:"; cat "$tmp/json.log"
