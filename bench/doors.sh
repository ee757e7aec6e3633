#!/usr/bin/env bash
# Per-door overhead benchmark (bench/doors.c). The same streamed generation (a fixed system
# message and user prompt, G tokens, temperature 0) through each API door of aiosd:
#   /v1/chat/completions (the baseline), /v1/responses, /v1/messages, /api/chat
# and through the same doors of llama-server (same llama.cpp build, model, KV cells and
# threads; -np N -kvu --jinja), which serves /v1/chat/completions, /v1/responses and
# /v1/messages (the doors it does not serve are probed, reported and left out). For each N
# in $NS, both servers run side by side (an idle one takes no CPU) and build/doors measures
# every door of both in turn, ROUNDS times, forwards then backwards, so drift on a shared
# machine hits all alike: N agents, R streaming requests each, per door aggregate tokens/s
# (server-reported tokens over wall time), TTFT p50/p90 (to the first text event), latency
# p50, short answers (EOS before G) and failures. Prints, per N, the table of build/doors
# (ratios against aiosd chat), then
#   1. aiosd's doors against its /v1/chat/completions: tok/s ratio (target >= 0.98) and TTFT
#      p50 difference (target <= +2 ms);
#   2. aiosd against llama-server door by door: tok/s ratio aiosd/llama-server, TTFT p50.
# Run it on an otherwise idle machine (ggml's threads spin):
#   bash bench/doors.sh
#   NS="1 16" R=4 G=128 ROUNDS=3 bash bench/doors.sh
#   NS=2 R=2 G=16 ROUNDS=2 bash bench/doors.sh          (a quick smoke run)
# Environment: NS R G ROUNDS THREADS KV MAXACT (scheduler.max_active) PROMPT SYSTEM
# IGNORE_EOS (1: "ignore_eos": true on the chat doors, the only ones taking it) STORE (0:
# "store": false on /v1/responses; aiosd stores responses by default) LLAMA (0 skips
# llama-server) AIOSD_FLAGS (more aiosd flags) PORT (aiosd; llama-server on PORT+1) BUILD
# (the build directory, build) MODEL AIOS_CACHE.
set -euo pipefail
. "$(dirname "$0")/common.sh"
NS="${NS:-1 16}"; R="${R:-4}"; G="${G:-128}"; ROUNDS="${ROUNDS:-3}"; THREADS="${THREADS:-2}"; KV="${KV:-16384}"
MAXACT="${MAXACT:-16}"; IGNORE_EOS="${IGNORE_EOS:-1}"; STORE="${STORE:-1}"; LLAMA="${LLAMA:-1}"
AIOSD_FLAGS="${AIOSD_FLAGS:-}"; PORT="${PORT:-8790}"; BUILD="${BUILD:-build}"
PROMPT="${PROMPT:-Write a long story about a robot who learns to paint. Use many details.}"
SYSTEM="${SYSTEM:-You are a helpful assistant.}"
url_a="http://127.0.0.1:$PORT"; url_l="http://127.0.0.1:$((PORT + 1))"
tmp="$(mktemp -d)"
aiosd_pid=""; llama_pid=""
stop() { # stop PIDVAR
  local p="${!1}"
  [ -n "$p" ] && { kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; }
  printf -v "$1" '%s' ""
}
trap 'stop aiosd_pid; stop llama_pid; rm -rf "$tmp"' EXIT

make --no-print-directory BUILD="$BUILD" "$BUILD/doors" >/dev/null
[ -f "$model" ] || { echo "no model at $model (make model)" >&2; exit 1; }
[ -x "$BUILD/aiosd" ] || { echo "no $BUILD/aiosd (make all)" >&2; exit 1; }
[ "$LLAMA" = 0 ] || [ -x "$bin/llama-server" ] || { echo "no llama-server in $bin (make llama)" >&2; exit 1; }
for u in "$url_a" "$url_l"; do
  if curl -s -o /dev/null "$u/" 2>/dev/null; then echo "$u is already in use (set PORT)" >&2; exit 1; fi
done

# probe URL DOOR: the HTTP status of a 1-token streamed request through DOOR.
probe() {
  local path body
  case "$2" in
    chat) path=/v1/chat/completions; body='{"messages":[{"role":"user","content":"hi"}],"max_tokens":1,"stream":true}' ;;
    responses) path=/v1/responses; body='{"input":"hi","max_output_tokens":1,"stream":true}' ;;
    messages) path=/v1/messages; body='{"model":"smollm2","messages":[{"role":"user","content":"hi"}],"max_tokens":1,"stream":true}' ;;
    ollama) path=/api/chat; body='{"model":"smollm2","messages":[{"role":"user","content":"hi"}],"options":{"num_predict":1}}' ;;
  esac
  curl -s -o /dev/null -w '%{http_code}' --max-time 120 -H 'Authorization: Bearer doors-probe' \
    -H 'anthropic-version: 2023-06-01' -d "$body" "$1$path" || echo 000
}

# served NAME URL DOORS...: appends NAME=DOOR@URL to targets for each door that answers 200,
# and says which do not.
served() {
  local name="$1" u="$2" d st; shift 2
  for d in "$@"; do
    st=$(probe "$u" "$d")
    if [ "$st" = 200 ]; then targets+=("$name=$d@$u"); else echo "note: $name does not serve the $d door (HTTP $st): no numbers for it"; fi
  done
}

printf 'llms:\n  models:\n    - name: smollm2\n      path: %s\n      kv_size: %s\n      threads: %s\n' \
  "$model" "$KV" "$THREADS" >"$tmp/aiosd.yaml"
"$BUILD/aiosd" --host 127.0.0.1 --port "$PORT" --data-dir "$tmp/data" --config "$tmp/aiosd.yaml" \
  --set scheduler.max_active="$MAXACT" --set kernel.log_level=warn $AIOSD_FLAGS >"$tmp/aiosd.log" 2>&1 & aiosd_pid=$!
wait_up aiosd "$aiosd_pid" "$url_a" "$tmp/aiosd.log"

opts=(--model smollm2 --prompt "$PROMPT" --system "$SYSTEM")
[ "$IGNORE_EOS" = 1 ] && opts+=(--ignore-eos)
[ "$STORE" = 1 ] || opts+=(--no-store)
echo "model: $model   threads: $THREADS   KV: $KV cells   aiosd max_active=$MAXACT"
echo "each door: N agents x R=$R streamed requests of G=$G tokens, $ROUNDS rounds (alternating order)," \
     "ignore_eos on chat doors: $IGNORE_EOS, responses store: $STORE"
: >"$tmp/all.jsonl"
for n in $NS; do
  echo; echo "## N=$n"
  targets=()
  served aiosd "$url_a" chat responses messages ollama
  if [ "$LLAMA" != 0 ]; then
    "$bin/llama-server" -m "$model" --host 127.0.0.1 --port "$((PORT + 1))" -c "$KV" -np "$n" -kvu -t "$THREADS" \
      -tb "$THREADS" --no-webui --jinja >"$tmp/llama-server.log" 2>&1 & llama_pid=$!
    wait_up llama-server "$llama_pid" "$url_l" "$tmp/llama-server.log"
    served llama-server "$url_l" chat responses messages ollama
  fi
  case "${targets[0]:-}" in aiosd=chat@*) ;; *) echo "aiosd's chat door does not answer: no baseline" >&2; exit 1 ;; esac
  "$BUILD/doors" "$n" "$R" "$G" "$ROUNDS" "${targets[@]}" "${opts[@]}" 2>"$tmp/doors-$n.err" || true
  grep -v '^{' "$tmp/doors-$n.err" >&2 || true
  grep '^{"summary"' "$tmp/doors-$n.err" >>"$tmp/all.jsonl" || true
  stop llama_pid
done

python3 - "$tmp/all.jsonl" "$LLAMA" <<'PY'
import json, sys
rows = [json.loads(l)["summary"] for l in open(sys.argv[1]) if l.strip()]
llama = sys.argv[2] != "0"
ns = sorted({r["n"] for r in rows})
get = lambda n, label, door: next((r for r in rows if r["n"] == n and r["label"] == label and r["door"] == door), None)
def fails(r):
    return f"{r['failures']} failed" + (f", {r['short']} short" if r["short"] else "")
print("\n### aiosd doors against aiosd /v1/chat/completions (targets: tok/s ratio >= 0.98, TTFT p50 <= +2 ms)\n")
print("| N | door | tok/s | chat tok/s | ratio | per-round ratios | TTFT p50 ms | chat TTFT p50 ms | diff ms | meets targets | failures |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for n in ns:
    base = get(n, "aiosd", "chat")
    for door in ("responses", "messages", "ollama"):
        r = get(n, "aiosd", door)
        if not r or not base:
            print(f"| {n} | {door} | " + " | ".join(["-"] * 8) + " | not served |"); continue
        ok = r["tok_per_s_ratio"] >= 0.98 and r["ttft_p50_diff_ms"] <= 2 and not r["failures"] and not r["short"]
        print(f"| {n} | {door} | {r['tok_per_s']:.1f} | {base['tok_per_s']:.1f} | {r['tok_per_s_ratio']:.3f} | "
              f"{r['round_ratio_min']:.3f}..{r['round_ratio_max']:.3f} | {r['ttft_p50_ms']:.1f} | {base['ttft_p50_ms']:.1f} | "
              f"{r['ttft_p50_diff_ms']:+.1f} | {'yes' if ok else 'no'} | {fails(r)} |")
if llama:
    print("\n### aiosd against llama-server, door by door (llama-server -np N -kvu --jinja)\n")
    print("| N | door | aiosd tok/s | llama-server tok/s | aiosd / llama-server | aiosd TTFT p50 ms | llama-server TTFT p50 ms | failures aiosd / llama-server |")
    print("|---|---|---|---|---|---|---|---|")
    for n in ns:
        for door in ("chat", "responses", "messages"):
            a, l = get(n, "aiosd", door), get(n, "llama-server", door)
            if not a or not l:
                who = " and ".join(x for x, y in (("aiosd", a), ("llama-server", l)) if not y)
                print(f"| {n} | {door} | " + " | ".join(["-"] * 5) + f" | not served by {who} |"); continue
            print(f"| {n} | {door} | {a['tok_per_s']:.1f} | {l['tok_per_s']:.1f} | {a['tok_per_s'] / l['tok_per_s'] if l['tok_per_s'] else 0:.3f} | "
                  f"{a['ttft_p50_ms']:.1f} | {l['ttft_p50_ms']:.1f} | {fails(a)} / {fails(l)} |")
PY
