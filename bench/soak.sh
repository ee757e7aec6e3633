#!/usr/bin/env bash
# Soak benchmark (issue 15, part 5): AGENTS agents (one thread, one keep-alive connection and
# one identity each) for SECONDS of mixed LLM (short generations), memory, storage and tool
# syscalls against a fresh aiosd on the default model; build/soak (bench/soak.c) prints per
# kind the operations completed, errors (503 backpressure apart) and p50 / p99 latency, and
# the kernel's RSS and open descriptors over time with their slope after WARMUP seconds.
#   AGENTS=1000 SECS=600 bash bench/soak.sh        (the issue's setting; CI does not run it)
#   AGENTS=200 SECS=120 bash bench/soak.sh         (a short local check)
# Run it on an otherwise idle machine.
set -euo pipefail
. "$(dirname "$0")/common.sh"
AGENTS="${AGENTS:-1000}"; SECS="${SECS:-600}"; SAMPLE="${SAMPLE:-10}"; WARMUP="${WARMUP:-60}"; PORT="${PORT:-8799}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
tmp="$(mktemp -d)"; pid=""
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=""; }
trap 'stop; rm -rf "$tmp"' EXIT
./build/aiosd --port "$PORT" --data-dir "$tmp/data" --set kernel.log_level=warn --set llms.model="$model" \
  --set server.max_connections=$((AGENTS + 256)) --set scheduler.max_queue=$((AGENTS * 2)) \
  ${AIOSD_FLAGS:-} 2>"$tmp/aiosd.log" & pid=$!
wait_up aiosd "$pid" "http://127.0.0.1:$PORT" "$tmp/aiosd.log"
echo "model: $model   $(nproc) CPUs   $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
echo "command: AGENTS=$AGENTS SECS=$SECS SAMPLE=$SAMPLE WARMUP=$WARMUP bash bench/soak.sh"
./build/soak "http://127.0.0.1:$PORT" "$pid" "$AGENTS" "$SECS" "$SAMPLE" "$WARMUP"
kill -0 "$pid" && echo "aiosd still serving: $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health")"
echo "kernel log lines with 'error': $(grep -cE 'ERROR|error' "$tmp/aiosd.log" || true)"
