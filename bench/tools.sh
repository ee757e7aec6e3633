#!/usr/bin/env bash
# Tool-manager benchmark (issue 5 targets: a no-op process tool's round trip through the
# kernel p50 <= 5 ms, with p50 / p99 and calls/s at 32 agents; LLM tokens/s while 100 slow
# tools run >= 0.95 x with none). Writes two manifests into a scratch tools.dir, starts a
# fresh aiosd on the default model and runs build/tools (bench/tools.c):
#   1. noop: the posix_spawn floor, one agent's round trip, AGENTS agents closed loop;
#   2. llm: LLM_AGENTS agents x REQS chat completions of G tokens, alternating ROUNDS times
#      between no tools running and SLOW bench/sleep calls running (sandboxed, cancelled
#      between rounds).
#   AGENTS=32 N=300 SLOW=100 ROUNDS=3 LLM_AGENTS=4 REQS=2 G=64 bash bench/tools.sh
#   (AIOSD_FLAGS="--set tools.memory_mb=256" adds flags to aiosd)
# Run it on an otherwise idle machine.
set -euo pipefail
. "$(dirname "$0")/common.sh"
AGENTS="${AGENTS:-32}"; N="${N:-300}"; SLOW="${SLOW:-100}"; ROUNDS="${ROUNDS:-3}"
LLM_AGENTS="${LLM_AGENTS:-4}"; REQS="${REQS:-2}"; G="${G:-64}"; PORT="${PORT:-8799}"
tmp="$(mktemp -d)"; pid=""
chmod 755 "$tmp" # a kernel running as root gives each call its own uid, which must reach the tools
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=""; }
trap 'stop; rm -rf "$tmp"' EXIT
mkdir -p "$tmp/tools"
cat >"$tmp/tools/noop.json" <<'EOF'
{"name": "bench/noop", "description": "Echoes its parameters.", "kind": "process", "command": "/bin/cat",
 "parameters": {"type": "object", "properties": {"text": {"type": "string"}, "n": {"type": "integer"}}},
 "max_parallel": 64, "timeout_ms": 10000}
EOF
cat >"$tmp/tools/sleep.json" <<'EOF'
{"name": "bench/sleep", "description": "Sleeps until cancelled.", "kind": "process", "command": "/bin/sh",
 "args": ["-c", "exec sleep 3600"], "max_parallel": 1000, "timeout_ms": 3600000}
EOF
./build/aiosd --port "$PORT" --data-dir "$tmp/data" --set kernel.log_level=warn --set llms.model="$model" \
  --set tools.dir="$tmp/tools" ${AIOSD_FLAGS:-} 2>"$tmp/aiosd.log" & pid=$!
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/status" >/dev/null 2>&1 && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$PORT/status" >/dev/null || { echo "aiosd did not start; log:" >&2; tail -20 "$tmp/aiosd.log" >&2; exit 1; }
echo "model: $model   $(nproc) CPUs"
echo; echo "## no-op process tool through the kernel ($N calls per agent)"
./build/tools "http://127.0.0.1:$PORT" noop "$AGENTS" "$N" 2>>"$tmp/json.log"
echo; echo "## LLM throughput with $SLOW slow tools running ($LLM_AGENTS agents x $REQS requests x $G tokens per measurement)"
./build/tools "http://127.0.0.1:$PORT" llm "$SLOW" "$ROUNDS" "$LLM_AGENTS" "$REQS" "$G" 2>>"$tmp/json.log"
echo; echo "raw JSON lines:"; cat "$tmp/json.log"
