#!/usr/bin/env bash
# Multi-agent benchmark: scheduling policies, fairness and prefix reuse (bench/agents.c).
# N agents share one ~S-token system prompt and each runs T turns of G generated tokens with a
# P ms simulated tool call between turns. In one run, on the same llama.cpp build, model, KV
# size and thread count, it compares:
#   1. aiosd, once per scheduler policy in $POLICIES (scheduler.max_active=$MAXACT)
#   2. llama-server -np N   the serving peer (unified KV -kvu, prompt cache on by default; twice
#                           the KV: with KV its slots, sharing no prefix, overflow it)
#   3. llama-server -np 1   one request at a time
# For each server: a warm-up request (on the shared system prompt), one agent alone (its
# completion time is the reference for slowdowns), then the N-agent run. Prints a markdown table (makespan, mean/p99 completion,
# aggregate tok/s, prompt tokens actually computed vs reused, context switches, Jain's fairness
# over slowdowns, failures), the engine floor from llama-batched-bench and the ratios
# aiosd/llama-server and aiosd makespan / floor.
#
# HALF=1 instead gives every server half the KV cells the N conversations need
# (need ~ N x (S + T x (G + 60) + 64)) and compares aiosd ($POLICIES) with llama-server -np N,
# reporting which agents complete and what errors the servers return.
#
# Run it on an otherwise idle machine (ggml's threads spin):
#   bash bench/agents.sh
#   N=8 T=3 G=32 S=512 P=100 POLICIES="fifo" bash bench/agents.sh
#   HALF=1 bash bench/agents.sh
# Environment: N T G S P THREADS KV MAXACT CACHE (context.cache_entries) AIOSD_FLAGS (more aiosd
# flags) POLICIES PORT HALF MODEL AIOS_CACHE (POLICIES="" skips aiosd).
set -euo pipefail
. "$(dirname "$0")/common.sh"
N="${N:-32}"; T="${T:-4}"; G="${G:-64}"; S="${S:-1024}"; P="${P:-200}"; THREADS="${THREADS:-2}"
KV="${KV:-32768}"; MAXACT="${MAXACT:-16}"; CACHE="${CACHE:-64}"; AIOSD_FLAGS="${AIOSD_FLAGS:-}"; POLICIES="${POLICIES-fifo rr priority fair agent}"
PORT="${PORT:-8790}"; HALF="${HALF:-0}"
url="http://127.0.0.1:$PORT"
tmp="$(mktemp -d)"
trap 'stop_server; rm -rf "$tmp"' EXIT

make --no-print-directory build/agents >/dev/null
[ -f "$model" ] || { echo "no model at $model (make model)" >&2; exit 1; }
[ -x "$bin/llama-server" ] || { echo "no llama-server in $bin (make llama)" >&2; exit 1; }
[ -z "$POLICIES" ] || [ -x build/aiosd ] || { echo "no build/aiosd (make all)" >&2; exit 1; }
if curl -s -o /dev/null "$url/" 2>/dev/null; then echo "port $PORT is already in use (set PORT)" >&2; exit 1; fi

if [ "$HALF" = 1 ]; then
  need=$(( N * (S + T * (G + 60) + 64) ))
  KV=$(( (need / 2 + 128) / 256 * 256 )); [ "$KV" -ge 256 ] || KV=256
fi


# start_server NAME READY_PATH CMD...: runs CMD in the background, output to $tmp/NAME.log, and
# waits until READY_PATH answers 2xx; on failure prints the log tail and returns 1.
start_server() {
  local name="$1" ready="$2"; shift 2
  "$@" >"$tmp/$name.log" 2>&1 & srv_pid=$!
  for _ in $(seq 1 600); do
    kill -0 "$srv_pid" 2>/dev/null || break
    curl -sf "$url$ready" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "$name: server did not come up; last lines of its log:" >&2
  tail -n 15 "$tmp/$name.log" >&2
  stop_server
  return 1
}

# metric FILE NAME: sum of the Prometheus samples NAME{...} VALUE in FILE, or n/a when absent.
metric() {
  awk -v m="$2" '{ l = $0; sub(/\{[^}]*\}/, "", l); split(l, a, " ");
                   if (a[1] == m) { s += a[2]; f = 1 } }
                 END { if (f) printf "%.0f\n", s; else print "n/a" }' "$1"
}
# delta A B: B - A, or n/a when either is n/a
delta() { if [ "$1" = n/a ] || [ "$2" = n/a ]; then echo n/a; else echo $(( $2 - $1 )); fi; }

METRICS="aios_prefill_tokens_computed_total aios_prefill_tokens_reused_total aios_context_switches_total"

# record KEY LABEL [ERROR]: appends one JSON row (agents' outputs and metrics) to $tmp/rows.jsonl
record() {
  python3 - "$tmp" "$1" "$2" "${3:-}" >>"$tmp/rows.jsonl" <<'PY'
import json, os, sys
tmp, key, label, err = sys.argv[1:5]
def load(f):
    p = os.path.join(tmp, f)
    try:
        return json.loads(open(p).read().strip().splitlines()[-1])
    except Exception:
        return None
m = {}
if os.path.exists(os.path.join(tmp, key + ".metrics")):
    for line in open(os.path.join(tmp, key + ".metrics")):
        k, v = line.split()
        m[k] = None if v == "n/a" else int(v)
print(json.dumps({"key": key, "label": label, "error": err or None, "alone": load(key + "-alone.json"),
                  "run": load(key + ".json"), "metrics": m}))
PY
}

# bench KEY LABEL READY_PATH CMD...: one server through warm-up, the alone run and the N-agent run.
bench() {
  local key="$1" label="$2" ready="$3"; shift 3
  echo "== $label" >&2
  if ! start_server "$key" "$ready" "$@"; then
    record "$key" "$label" "did not start: $(tail -n 1 "$tmp/$key.log" | cut -c1-120)"; return 0
  fi
  # Warm-up: one request (4 tokens) on the shared system prompt, as a server in steady state
  # would have seen it; the alone run then measures contention-free time, not a cold start.
  ./build/agents "$url" 1 1 4 "$S" 0 --sys-chars "$sys_chars" --agent-base 9999 --label warmup \
    >"$tmp/$key-warm.json" 2>"$tmp/$key-warm.err" || true
  grep -q '"agents_completed":1' "$tmp/$key-warm.json" \
    || echo "$label: warm-up request failed: $(head -n 1 "$tmp/$key-warm.err")" >&2
  # The alone agent gets id N (not 0) so that the N-agent run finds none of its conversation
  # already cached; its prompts have the same shape and length.
  if ! ./build/agents "$url" 1 "$T" "$G" "$S" "$P" --alone --agent-base "$N" --sys-chars "$sys_chars" \
      --label "$key-alone" >"$tmp/$key-alone.json" 2>"$tmp/$key-alone.err"; then
    cat "$tmp/$key-alone.err" >&2; stop_server
    record "$key" "$label" "alone run failed: $(tail -n 1 "$tmp/$key-alone.err" | cut -c1-120)"; return 0
  fi
  local alone_s
  alone_s=$(python3 -c 'import json,sys; a=json.load(open(sys.argv[1]))["alone_s"]; print("none" if a is None else a)' \
    "$tmp/$key-alone.json")
  [ "$alone_s" != none ] || echo "$label: the agent alone did not complete: $(tail -n 1 "$tmp/$key-alone.err")" >&2
  local args=(--sys-chars "$sys_chars" --label "$key")
  [ "$alone_s" = none ] || args+=(--alone-s "$alone_s")
  curl -s "$url/metrics" >"$tmp/$key-m0.txt" 2>/dev/null || true
  ./build/agents "$url" "$N" "$T" "$G" "$S" "$P" "${args[@]}" >"$tmp/$key.json" 2>"$tmp/$key.err" || true
  curl -s "$url/metrics" >"$tmp/$key-m1.txt" 2>/dev/null || true
  : >"$tmp/$key.metrics"
  for m in $METRICS; do
    echo "$m $(delta "$(metric "$tmp/$key-m0.txt" "$m")" "$(metric "$tmp/$key-m1.txt" "$m")")" >>"$tmp/$key.metrics"
  done
  grep -q . "$tmp/$key.json" || tail -n 5 "$tmp/$key.err" >&2
  stop_server
  record "$key" "$label"
}

# Calibrate the shared system prompt once, on a llama-server with room for it (same tokenizer
# as every server below), so that all servers get the very same text and none of their runs
# spends requests (or counters) on calibration.
echo "== calibrating the system prompt" >&2
start_server calibrate /health "$bin/llama-server" -m "$model" --port "$PORT" -c $(( 2 * S + 1024 )) -np 1 \
  -t "$THREADS" -tb "$THREADS" --no-webui
./build/agents "$url" 1 1 1 "$S" 0 --label calibrate >"$tmp/calibrate.json" 2>"$tmp/calibrate.err" \
  || { cat "$tmp/calibrate.err" >&2; exit 1; }
stop_server
read -r sys_chars s_measured < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))
print(r["sys_chars"], r["s_measured"])' "$tmp/calibrate.json")

echo "model: $model   threads: $THREADS   N=$N agents x T=$T turns, G=$G tokens/turn, S=$S system tokens," \
     "P=$P ms tool calls, system prompt $s_measured tokens ($sys_chars chars), KV=$KV cells$([ "$HALF" = 1 ] && echo " (HALF: half of the ~$need the conversations need)")," \
     "aiosd max_active=$MAXACT"
: >"$tmp/rows.jsonl"
for p in $POLICIES; do
  printf 'llms:\n  models:\n    - name: smollm2\n      path: %s\n      kv_size: %s\n      threads: %s\n' \
    "$model" "$KV" "$THREADS" >"$tmp/aiosd-$p.yaml"
  bench "aiosd-$p" "aiosd $p" /status ./build/aiosd --port "$PORT" --set scheduler.policy="$p" \
    --set scheduler.max_active="$MAXACT" --set context.cache_entries="$CACHE" --set kernel.log_level=warn \
    --data-dir "$tmp/data" --config "$tmp/aiosd-$p.yaml" $AIOSD_FLAGS
done
# -kvu (unified KV): the N slots share the KV cells, like aiosd's sequences do. Without it
# llama-server splits the KV per slot (KV/N cells each: 1024 at N=32, less than one prompt).
# Outside HALF mode it gets twice the KV: its slots share no prefix cells, so the N whole
# conversations (~S + T x (G + 60) cells each) overflow KV cells and every agent fails with
# "Context size has been exceeded".
peer_kv=$([ "$HALF" = 1 ] && echo "$KV" || echo $(( 2 * KV )))
bench "server-np$N" "llama-server -np $N -kvu$([ "$HALF" = 1 ] || echo " (2x KV)")" /health "$bin/llama-server" -m "$model" \
  --port "$PORT" -c "$peer_kv" -np "$N" -kvu -t "$THREADS" -tb "$THREADS" --no-webui
if [ "$HALF" != 1 ]; then
  bench "server-np1" "llama-server -np 1" /health "$bin/llama-server" -m "$model" --port "$PORT" -c "$KV" -np 1 \
    -t "$THREADS" -tb "$THREADS" --no-webui
fi

# The engine floor: llama-batched-bench on the same build at the batch aiosd runs (MAXACT
# sequences) and the context a turn has (system prompt + a turn), once with per-sequence KV
# streams (each sequence attends to its own cells: the engine's best) and once unified (-kvu,
# every sequence attends over all used cells, as one shared cache does). The floor of the
# workload is its generated tokens at that decode rate plus the least prefill any server
# computed at that prefill rate.
echo "== llama-batched-bench (the engine floor)" >&2
for kvu in "" -kvu; do
  "$bin/llama-batched-bench" -m "$model" -c "$KV" -npp $(( s_measured + 80 )) -ntg "$G" -npl "$MAXACT" -fa on \
    -t "$THREADS" -tb "$THREADS" $kvu --output-format jsonl 2>/dev/null | grep '^{' | tail -n 1 >"$tmp/floor$kvu.json" || true
done

python3 - "$tmp/rows.jsonl" "$N" "$HALF" "$tmp/floor.json" "$tmp/floor-kvu.json" "$T" "$G" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
n, half = sys.argv[2], sys.argv[3] == "1"
def bench_row(path):
    try:
        return json.loads(open(path).read())
    except Exception:
        return None
floors = [("per-sequence streams", bench_row(sys.argv[4])), ("unified (-kvu)", bench_row(sys.argv[5]))]
generated = int(n) * int(sys.argv[6]) * int(sys.argv[7])
def f(x, d=None):
    """n/a for None; ints as they are unless d decimals are asked for; floats with d (2) decimals"""
    if x is None:
        return "n/a"
    if d is None and isinstance(x, int):
        return str(x)
    return f"{float(x):.{2 if d is None else d}f}"
def prefill(row):
    """(computed, reused): aiosd's metrics if it has them, else llama-server's timings.prompt_n."""
    r, m = row["run"], row["metrics"]
    c, u = m.get("aios_prefill_tokens_computed_total"), m.get("aios_prefill_tokens_reused_total")
    if c is None and r.get("prompt_n_total") is not None:
        c = r["prompt_n_total"]
        u = r["prompt_tokens_total"] - c
    return c, u
print("\nprefill = prompt tokens computed / reused during the N-agent run (aiosd: /metrics deltas; "
      "llama-server: timings.prompt_n); Jain over slowdowns (completion / completion alone)\n")
print("| server | alone s | makespan s | mean completion s | p99 completion s | agg tok/s | prefill computed | "
      "prefill reused | ctx switches | Jain | failures / completed | short turns | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for row in rows:
    r, a = row["run"], row["alone"]
    if row["error"] or not r:
        print(f"| {row['label']} | " + " | ".join(["-"] * 11) + f" | {row['error'] or 'no result'} |")
        continue
    c, u = prefill(row)
    errs = ", ".join(f"{k}: {v}" for k, v in r["errors"].items())
    if r.get("first_error"):
        errs += f" (first: {r['first_error'][:100]})"
    print(f"| {row['label']} | {f(a['alone_s'])} | {f(r['makespan_s'])} | {f(r['mean_completion_s'])} | "
          f"{f(r['p99_completion_s'])} | {f(r['agg_tok_s'], 1)} | {f(c)} | {f(u)} | "
          f"{f(row['metrics'].get('aios_context_switches_total'))} | {f(r['jain'], 3)} | "
          f"{r['failures']} / {r['agents_completed']} of {r['n']} | {r['length_mismatches']} | {errs or '-'} |")
by = {row["key"]: row["run"] for row in rows if row["run"] and not row["error"]}
peer, one = by.get(f"server-np{n}"), by.get("server-np1")
def ratio(x, y):
    return "n/a" if x is None or not y else f"{x / y:.2f}"
computed = [c for c, _ in (prefill(row) for row in rows if row["run"] and not row["error"]) if c is not None]
least = min(computed) if computed else None
floor_s = {}
print(f"\nengine floor (llama-batched-bench, {generated} generated tokens + the least prefill computed, {f(least)} tokens):\n")
print("| KV layout | prefill tok/s | decode tok/s | floor s |")
print("|---|---|---|---|")
for name, b in floors:
    if not b or least is None:
        print(f"| {name} | n/a | n/a | n/a |")
        continue
    floor_s[name] = generated / b["speed_tg"] + least / b["speed_pp"]
    print(f"| {name} | {b['speed_pp']:.1f} | {b['speed_tg']:.1f} | {floor_s[name]:.1f} |")
print()
for row in rows:
    if not row["key"].startswith("aiosd-") or row["key"] not in by:
        continue
    r = by[row["key"]]
    line = f"- {row['label']}: mean completion / llama-server -np {n}'s = " \
           f"{ratio(r['mean_completion_s'], peer and peer['mean_completion_s'])}"
    if not half:
        line += f"; agg tok/s / llama-server -np 1's = {ratio(r['agg_tok_s'], one and one['agg_tok_s'])}"
    for name, fs in floor_s.items():
        line += f"; makespan / floor ({name}) = {ratio(r['makespan_s'], fs)}"
    print(line)
PY
