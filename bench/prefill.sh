#!/usr/bin/env bash
# Chunked prefill (issue 16 part 5; bench/prefill.c): K streams generate G tokens each while
# one ~L-token prompt arrives; prints the streams' inter-token gaps while the long prompt is
# being prefilled (p50 / p99 / max) against the other gaps, and the long prompt's latency.
# In one run, on the same llama.cpp build, model and threads:
#   aiosd, once per llms.models[].prefill_chunk in $CHUNKS (0 = up to batch_size 512 a step)
#   llama-server -np K+1 -kvu (its default batching: n_batch 2048, n_ubatch 512)
#   bash bench/prefill.sh
#   K=4 G=128 L=2000 CHUNKS="0 128" bash bench/prefill.sh
# Environment: K G L CHUNKS THREADS KV PORT MODEL AIOS_CACHE.
set -euo pipefail
. "$(dirname "$0")/common.sh"
K="${K:-8}"; G="${G:-320}"; L="${L:-4000}"; CHUNKS="${CHUNKS:-0 256 128 64}"; THREADS="${THREADS:-2}"
KV="${KV:-16384}"; PORT="${PORT:-8792}"
url="http://127.0.0.1:$PORT"
tmp="$(mktemp -d)"
trap 'stop_server; rm -rf "$tmp"' EXIT
make --no-print-directory build/prefill build/aiosd >/dev/null
[ -f "$model" ] || { echo "no model at $model (make model)" >&2; exit 1; }
if curl -s -o /dev/null "$url/" 2>/dev/null; then echo "port $PORT is already in use (set PORT)" >&2; exit 1; fi

# run LABEL CMD...: starts the server, runs the client, prints one table row
run() {
  local label="$1"; shift
  serve "$label" "$url" "$tmp/server.log" "$@"
  ./build/prefill "$url" "$K" "$G" "$L" >"$tmp/out.json" 2>"$tmp/err.txt" || true
  stop_server
  python3 - "$label" "$tmp/out.json" "$tmp/err.txt" <<'PY'
import json, sys
label = sys.argv[1]
try:
    r = json.loads(open(sys.argv[2]).read())
except Exception:
    print(f"| {label} | failed: {open(sys.argv[3]).read().strip()[:100]} |||||||")
    sys.exit(0)
print(f"| {label} | {r['streams_ok']}/{r['streams']} ({r['stream_tokens']} tokens) | {r['long_prompt_tokens']} | {r['long_latency_s']:.2f} s |"
      f" {r['during_p50_ms']:.0f} / {r['during_p99_ms']:.0f} / {r['during_max_ms']:.0f} ms ({r['gaps_during']}) |"
      f" {r['other_p50_ms']:.0f} / {r['other_p99_ms']:.0f} / {r['other_max_ms']:.0f} ms ({r['gaps_other']}) |")
PY
}

echo "model: $model   threads: $THREADS   K=$K streams x G=$G tokens, a ~$L-token prompt arriving once they decode, KV=$KV"
echo
echo "| server | streams ok | long prompt tokens | long prompt latency | stream gaps during its prefill p50 / p99 / max (n) | other gaps p50 / p99 / max (n) |"
echo "|---|---|---|---|---|---|"
for c in $CHUNKS; do
  printf 'llms:\n  models:\n    - name: smollm2\n      path: %s\n      kv_size: %s\n      threads: %s\n      prefill_chunk: %s\n' \
    "$model" "$KV" "$THREADS" "$c" >"$tmp/aiosd.yaml"
  run "aiosd prefill_chunk=$c" ./build/aiosd --port "$PORT" --config "$tmp/aiosd.yaml" --data-dir "$tmp/data" \
    --set scheduler.max_active=$(( K + 1 )) --set kernel.log_level=warn
done
run "llama-server -np $(( K + 1 )) -kvu" "$bin/llama-server" -m "$model" --port "$PORT" -c "$KV" -np $(( K + 1 )) -kvu \
  -t "$THREADS" -tb "$THREADS" --no-webui
