#!/usr/bin/env bash
# Remote model benchmark (issue 13): what aiosd adds when it routes to a remote model server,
# how it spreads work over replicas, and how fast it fails over. llama.cpp's llama-server (the
# pinned build, the default model) is the remote server.
#   1. Overhead: for each N in $NS, N agents stream R requests of G tokens each, measured by
#      build/doors side by side, ROUNDS rounds in alternating order, against (a) llama-server
#      directly and (b) aiosd's model `remote` (backend openai) routing to that same
#      llama-server. Targets: aggregate tok/s ratio (b)/(a) >= 0.97, TTFT p50 added <= 2 ms.
#   2. Balance: two llama-server replicas behind one aiosd model (`endpoints: [a, b]`), 16
#      agents streaming; requests per replica from /status (target: within 10%).
#   3. Failover: an agent pinned to one replica sends short requests back to back;
#      build/failover kills that replica (SIGKILL) and times the kill to the first request
#      answered in full afterwards (by the other replica); TRIALS times, the victim restarted
#      in between. Prints p50 and max.
#   bash bench/remote.sh
#   NS="1 16" R=4 G=128 ROUNDS=3 TRIALS=5 bash bench/remote.sh
#   NS=2 R=2 G=16 ROUNDS=1 TRIALS=2 bash bench/remote.sh      (a quick smoke run)
# Environment: NS R G ROUNDS TRIALS THREADS (llama-server's in part 1; each replica gets half
# in parts 2-3) KV PORT (aiosd; llama-servers on PORT+1, PORT+2; the fleet kernel on PORT+3)
# BUILD MODEL AIOS_CACHE.
set -euo pipefail
. "$(dirname "$0")/common.sh"
NS="${NS:-1 16}"; R="${R:-4}"; G="${G:-128}"; ROUNDS="${ROUNDS:-3}"; TRIALS="${TRIALS:-5}"
THREADS="${THREADS:-2}"; KV="${KV:-16384}"; PORT="${PORT:-8800}"; BUILD="${BUILD:-build}"
url_k="http://127.0.0.1:$PORT"; url_a="http://127.0.0.1:$((PORT + 1))"; url_b="http://127.0.0.1:$((PORT + 2))"
url_f="http://127.0.0.1:$((PORT + 3))"
tmp="$(mktemp -d)"
declare -A pid=()
stop() { # stop NAME
  local p="${pid[$1]:-}"
  [ -n "$p" ] && { kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; }
  pid[$1]=""
}
trap 'for n in "${!pid[@]}"; do stop "$n"; done; rm -rf "$tmp"' EXIT

make --no-print-directory BUILD="$BUILD" "$BUILD/doors" "$BUILD/failover" "$BUILD/aiosd" >/dev/null
[ -f "$model" ] || { echo "no model at $model (make model)" >&2; exit 1; }
[ -x "$bin/llama-server" ] || { echo "no llama-server in $bin (make llama)" >&2; exit 1; }
for u in "$url_k" "$url_a" "$url_b" "$url_f"; do
  if curl -s -o /dev/null "$u/" 2>/dev/null; then echo "$u is already in use (set PORT)" >&2; exit 1; fi
done

# llama NAME PORT SLOTS THREADS: a llama-server replica
llama() {
  "$bin/llama-server" -m "$model" --host 127.0.0.1 --port "$2" -c "$KV" -np "$3" -kvu -t "$4" -tb "$4" --no-webui \
    --jinja >>"$tmp/$1.log" 2>&1 & pid[$1]=$!
  wait_up "$1" "${pid[$1]}" "http://127.0.0.1:$2" "$tmp/$1.log"
}

# kernel NAME PORT YAML: an aiosd serving only the remote model(s) of YAML
kernel() {
  printf '%s\n' "$3" >"$tmp/$1.yaml"
  "$BUILD/aiosd" --host 127.0.0.1 --port "$2" --data-dir "$tmp/data-$1" --config "$tmp/$1.yaml" \
    --set kernel.log_level=warn >"$tmp/$1.log" 2>&1 & pid[$1]=$!
  wait_up "$1" "${pid[$1]}" "http://127.0.0.1:$2" "$tmp/$1.log"
}

# endpoint_requests: "requests_a requests_b" of the fleet model, from /status
endpoint_requests() {
  curl -s "$url_f/status" | python3 -c 'import json,sys
m = next(m for m in json.load(sys.stdin)["llms"] if m["name"] == "fleet")
print(" ".join(str(e["requests"]) for e in m["endpoints"]))'
}

# wait_endpoints_up: until both replicas of the fleet model are up again
wait_endpoints_up() {
  for _ in $(seq 1 200); do
    curl -s "$url_f/status" | python3 -c 'import json,sys
m = next(m for m in json.load(sys.stdin)["llms"] if m["name"] == "fleet")
sys.exit(0 if all(e["state"] == "up" for e in m["endpoints"]) else 1)' && return 0
    sleep 0.1
  done
  echo "the fleet's replicas did not come back up" >&2; exit 1
}

echo "model: $model   CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)   cores: $(nproc)"

# ---- 1. overhead against llama-server directly
llama direct "$((PORT + 1))" 16 "$THREADS"
kernel kernel "$PORT" "llms:
  default_model: remote
  models:
    - name: remote
      backend: openai
      hostname: $url_a
      max_inflight: 16
      health_path: /health"
: >"$tmp/all.jsonl"
for n in $NS; do
  echo; echo "## overhead, N=$n agents x R=$R streamed requests of G=$G tokens, $ROUNDS rounds"
  "$BUILD/doors" "$n" "$R" "$G" "$ROUNDS" "llama-server=chat@$url_a" "aiosd=chat@$url_k" --model remote --ignore-eos \
    --prompt "Write a long story about a robot who learns to paint." 2>"$tmp/doors-$n.err" || true
  grep -v '^{' "$tmp/doors-$n.err" >&2 || true
  grep '^{"summary"' "$tmp/doors-$n.err" >>"$tmp/all.jsonl" || true
done
stop kernel; stop direct

# ---- 2. balance over two replicas
half=$(( THREADS > 1 ? THREADS / 2 : 1 ))
llama a "$((PORT + 1))" 8 "$half"
llama b "$((PORT + 2))" 8 "$half"
kernel fleet "$((PORT + 3))" "llms:
  default_model: fleet
  models:
    - name: fleet
      backend: openai
      endpoints: [$url_a, $url_b]
      max_inflight: 8
      health_path: /health
      health_interval_s: 1
      breaker_open_s: 1"
wait_endpoints_up
read -r a0 b0 < <(endpoint_requests)
echo; echo "## balance: 16 agents x R=$R streamed requests of G=$G tokens over two replicas"
"$BUILD/doors" 16 "$R" "$G" 1 "fleet=chat@$url_f" --model fleet --ignore-eos 2>"$tmp/doors-fleet.err" || true
grep -v '^{' "$tmp/doors-fleet.err" >&2 || true
read -r a1 b1 < <(endpoint_requests)

# ---- 3. failover
: >"$tmp/failover.jsonl"
for t in $(seq 1 "$TRIALS"); do
  agent="failover-$t"
  read -r a0f b0f < <(endpoint_requests)
  curl -sf -o /dev/null -H "Authorization: Bearer $agent" -d '{"model":"fleet","messages":[{"role":"user","content":"hi"}],"max_tokens":2}' \
    "$url_f/v1/chat/completions"
  read -r a1f b1f < <(endpoint_requests)
  if [ "$a1f" -gt "$a0f" ]; then victim=a; vport=$((PORT + 1)); else victim=b; vport=$((PORT + 2)); fi
  "$BUILD/failover" "$url_f" fleet "$agent" "${pid[$victim]}" --tokens 8 >>"$tmp/failover.jsonl" || true
  wait "${pid[$victim]}" 2>/dev/null || true
  llama "$victim" "$vport" 8 "$half"
  wait_endpoints_up
done

python3 - "$tmp/all.jsonl" "$tmp/failover.jsonl" "$a0" "$b0" "$a1" "$b1" <<'PY'
import json, statistics, sys
rows = [json.loads(l)["summary"] for l in open(sys.argv[1]) if l.strip()]
fo = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
a0, b0, a1, b1 = map(int, sys.argv[3:7])
get = lambda n, label: next((r for r in rows if r["n"] == n and r["label"] == label), None)
print("\n### 1. aiosd routing to llama-server against llama-server directly (targets: tok/s ratio >= 0.97, TTFT p50 added <= 2 ms)\n")
print("| N | llama-server tok/s | aiosd tok/s | ratio | per-round ratios | llama-server TTFT p50 ms | aiosd TTFT p50 ms | added ms | meets targets | failures aiosd / direct |")
print("|---|---|---|---|---|---|---|---|---|---|")
for n in sorted({r["n"] for r in rows}):
    d, k = get(n, "llama-server"), get(n, "aiosd")
    if not d or not k:
        print(f"| {n} | " + " | ".join(["-"] * 9) + " |"); continue
    ok = k["tok_per_s_ratio"] >= 0.97 and k["ttft_p50_diff_ms"] <= 2 and not k["failures"]
    print(f"| {n} | {d['tok_per_s']:.1f} | {k['tok_per_s']:.1f} | {k['tok_per_s_ratio']:.3f} | "
          f"{k['round_ratio_min']:.3f}..{k['round_ratio_max']:.3f} | {d['ttft_p50_ms']:.1f} | {k['ttft_p50_ms']:.1f} | "
          f"{k['ttft_p50_diff_ms']:+.1f} | {'yes' if ok else 'no'} | {k['failures']} / {d['failures']} |")
ra, rb = a1 - a0, b1 - b0
spread = abs(ra - rb) / max(ra, rb) if max(ra, rb) else 0
print("\n### 2. two replicas behind one model (target: requests per replica within 10%)\n")
print("| requests on a | requests on b | difference | meets target |\n|---|---|---|---|")
print(f"| {ra} | {rb} | {spread * 100:.1f}% | {'yes' if spread <= 0.10 else 'no'} |")
print("\n### 3. failover: SIGKILL of the agent's replica to the first request answered in full by the other\n")
ok = [f["failover_s"] for f in fo if f["failover_s"] is not None]
print("| trials | served after the kill | p50 ms | max ms | requests failed in between (each trial) |\n|---|---|---|---|---|")
print(f"| {len(fo)} | {len(ok)} | {statistics.median(ok) * 1e3 if ok else float('nan'):.1f} | "
      f"{max(ok) * 1e3 if ok else float('nan'):.1f} | {', '.join(str(f['failed']) for f in fo)} |")
PY
