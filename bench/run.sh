#!/usr/bin/env bash
# Side-by-side throughput benchmark (issue: kernel foundation). In one run, on the same
# llama.cpp build, model and thread count, for each N in $NS:
#   1. llama-batched-bench -npl N      the engine's ceiling (no HTTP, no scheduling)
#   2. llama-server -np N              the serving peer (same total KV, unified, -t same)
#   3. aiosd  scheduler.max_active=N   this kernel
# Servers are driven by bench/loadgen (C): N concurrent agents, R streaming requests each,
# max_tokens G, temperature 0. Prints aggregate generated tokens/s, p50/p99 latency and
# time to first token, and the ratios aiosd/llama-server and aiosd/ceiling.
# Run it on an otherwise idle machine: ggml's threads spin, so any other load distorts it.
#   NS="1 4 16" R=3 G=64 THREADS=2 bash bench/run.sh
#   AIOSD_FLAGS="--set scheduler.deterministic=1" NS="1 16" bash bench/run.sh   (its cost)
set -euo pipefail
. "$(dirname "$0")/common.sh"
NS="${NS:-1 4 16}"; R="${R:-3}"; G="${G:-64}"; THREADS="${THREADS:-2}"; KV="${KV:-32768}"
PORT="${PORT:-8790}"; AIOSD_FLAGS="${AIOSD_FLAGS:-}"
PROMPT="${PROMPT:-Write a long story about a robot who learns to paint. Use many details.}"
out="$(mktemp -d)"
trap 'stop_server; rm -rf "$out"' EXIT

wait_ready() { # url
  for _ in $(seq 1 300); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "server did not come up" >&2; return 1
}
# prompt tokens of PROMPT after the chat template, measured on aiosd itself
prompt_tokens() {
  curl -s "http://127.0.0.1:$PORT/v1/chat/completions" -d "$(python3 -c 'import json,sys; print(json.dumps({"messages":[{"role":"user","content":sys.argv[1]}],"max_tokens":1}))' "$PROMPT")" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["usage"]["prompt_tokens"])'
}

echo "model: $model   threads: $THREADS   G=$G tokens/request, R=$R requests/agent, KV=$KV"
for n in $NS; do
  echo "== N=$n"
  # aiosd
  ./build/aiosd --port "$PORT" --model "$model" --set scheduler.max_active="$n" --set kernel.log_level=warn $AIOSD_FLAGS \
    --config <(printf 'llms:\n  models:\n    - name: smollm2\n      path: %s\n      kv_size: %s\n      threads: %s\n' "$model" "$KV" "$THREADS") \
    2>"$out/aiosd.log" & srv_pid=$!
  wait_ready "http://127.0.0.1:$PORT/status"
  npp=$(prompt_tokens)
  ./build/loadgen "http://127.0.0.1:$PORT" 1 1 4 "warm up" >/dev/null
  ./build/loadgen "http://127.0.0.1:$PORT" "$n" "$R" "$G" "$PROMPT" >"$out/aiosd-$n.json"
  stop_server
  # llama-server with the same slots, total KV (unified), threads
  "$bin/llama-server" -m "$model" --port "$PORT" -np "$n" -c "$KV" -kvu -t "$THREADS" -tb "$THREADS" \
    --no-webui >"$out/server.log" 2>&1 & srv_pid=$!
  wait_ready "http://127.0.0.1:$PORT/health"
  ./build/loadgen "http://127.0.0.1:$PORT" 1 1 4 "warm up" >/dev/null
  ./build/loadgen "http://127.0.0.1:$PORT" "$n" "$R" "$G" "$PROMPT" >"$out/server-$n.json"
  stop_server
  # engine ceiling at the same batch size and prompt length
  "$bin/llama-batched-bench" -m "$model" -c "$KV" -npp "$npp" -ntg "$G" -npl "$n" -t "$THREADS" -tb "$THREADS" -kvu \
    --output-format jsonl 2>/dev/null | grep "^{" | tail -1 >"$out/batched-$n.json"
done

python3 - "$out" "$NS" <<'PY'
import json, sys, os
out, ns = sys.argv[1], sys.argv[2].split()
load = lambda f: json.load(open(os.path.join(out, f)))
print()
print("| N | ceiling tok/s (batched-bench) | llama-server tok/s | aiosd tok/s | aiosd / server | aiosd / ceiling | server p50 / p99 s | aiosd p50 / p99 s | server TTFT p50 s | aiosd TTFT p50 s |")
print("|---|---|---|---|---|---|---|---|---|---|")
for n in ns:
    a, s, b = load(f"aiosd-{n}.json"), load(f"server-{n}.json"), load(f"batched-{n}.json")
    ceil = b["pl"] * b["tg"] / b["t"]   # generated tokens per second including prefill
    print(f"| {n} | {ceil:.1f} | {s['tok_per_s']:.1f} | {a['tok_per_s']:.1f} | {a['tok_per_s']/s['tok_per_s']:.2f} | "
          f"{a['tok_per_s']/ceil:.2f} | {s['lat_p50']:.2f} / {s['lat_p99']:.2f} | {a['lat_p50']:.2f} / {a['lat_p99']:.2f} | "
          f"{s['ttft_p50']:.3f} | {a['ttft_p50']:.3f} |")
    if a["ok"] != a["requests"] or s["ok"] != s["requests"]:
        print(f"  (failures: aiosd {a['requests']-a['ok']}, llama-server {s['requests']-s['ok']})")
PY
