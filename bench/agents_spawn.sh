#!/usr/bin/env bash
# Agent start benchmark (issue 14): start latency of an agent (POST /agents -> the answer of
# its first syscall) against a bare fork+exec of the same program, p50 / p99; then AT_ONCE
# agents started at once: all run, and the kernel's resident memory and descriptors per live
# agent. Starts a fresh aiosd on the default model and runs build/agents_spawn
# (bench/agents_spawn.c).
#   N=50 AT_ONCE=100 bash bench/agents_spawn.sh
# Run it on an otherwise idle machine.
set -euo pipefail
. "$(dirname "$0")/common.sh"
N="${N:-50}"; AT_ONCE="${AT_ONCE:-100}"; PORT="${PORT:-8798}"
tmp="$(mktemp -d)"; pid=""
chmod 755 "$tmp" # a kernel running as root gives each agent its own uid, which must reach its workdir
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=""; }
trap 'stop; rm -rf "$tmp"' EXIT
./build/aiosd --port "$PORT" --data-dir "$tmp/data" --set kernel.log_level=warn --set llms.model="$model" \
  --set agents.max_running=$((AT_ONCE + 8)) --set agents.max_records=$((2 * N + AT_ONCE + 8)) \
  ${AIOSD_FLAGS:-} 2>"$tmp/aiosd.log" & pid=$!
wait_up aiosd "$pid" "http://127.0.0.1:$PORT" "$tmp/aiosd.log"
echo "model: $model   $(nproc) CPUs   $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
./build/agents_spawn "http://127.0.0.1:$PORT" "$pid" "$N" "$AT_ONCE"
