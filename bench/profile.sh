#!/usr/bin/env bash
# Where an engine step's time goes (issue 16 part 1), on the multi-agent workload of
# bench/agents.sh: for each policy in $POLICIES, aiosd serves N agents x T turns (G tokens a
# turn, an ~S-token shared system prompt, P ms tool pauses) and the step histograms of
# /metrics (aios_step_*: one sample per llama_decode) are read before and after the run.
# Prints, per policy:
#   - steps, and the mean milliseconds per step of each phase: decode (llama_decode), sample
#     (sampling, grammar, stop strings, passing text on), schedule (admission, preemption
#     decisions, prefix matching, cache bookkeeping), switch (KV snapshots and restores),
#     plus each phase's share of the run's wall time (the rest: the engine idle or waiting);
#   - decode p50 / p99 (bucket upper bounds);
#   - the batch: mean tokens and sequences per step;
#   - the attention: mean KV cells resident at a step against the mean of the batch's own
#     contexts summed (what its sequences need), and the attention view llama.cpp really
#     built (n_kv: the unified cache's used cell range, padded to 256), read by an LD_PRELOAD
#     shim in front of ggml_flash_attn_ext (bench/nkv_shim.c) at each graph build of the run.
#   bash bench/profile.sh
#   POLICIES="agent" N=8 T=2 G=32 S=512 bash bench/profile.sh
# Environment: N T G S P THREADS KV MAXACT CACHE POLICIES PORT MODEL AIOS_CACHE AIOSD_FLAGS.
set -euo pipefail
. "$(dirname "$0")/common.sh"
N="${N:-32}"; T="${T:-4}"; G="${G:-64}"; S="${S:-1024}"; P="${P:-200}"; THREADS="${THREADS:-2}"
KV="${KV:-32768}"; MAXACT="${MAXACT:-16}"; CACHE="${CACHE:-64}"; POLICIES="${POLICIES:-fair agent}"
PORT="${PORT:-8791}"; AIOSD_FLAGS="${AIOSD_FLAGS:-}"
url="http://127.0.0.1:$PORT"
tmp="$(mktemp -d)"
trap 'stop_server; rm -rf "$tmp"' EXIT

make --no-print-directory build/agents build/aiosd >/dev/null
. scripts/deps.env
cc -shared -fPIC -O2 -I "$cache/llama-$LLAMA_PY_VERSION/src/ggml/include" -o "$tmp/nkv.so" bench/nkv_shim.c -ldl
[ -f "$model" ] || { echo "no model at $model (make model)" >&2; exit 1; }
if curl -s -o /dev/null "$url/" 2>/dev/null; then echo "port $PORT is already in use (set PORT)" >&2; exit 1; fi

echo "model: $model   threads: $THREADS   N=$N agents x T=$T turns, G=$G tokens/turn, S=$S system tokens," \
     "P=$P ms tool calls, KV=$KV cells, aiosd max_active=$MAXACT"
for p in $POLICIES; do
  printf 'llms:\n  models:\n    - name: smollm2\n      path: %s\n      kv_size: %s\n      threads: %s\n' \
    "$model" "$KV" "$THREADS" >"$tmp/$p.yaml"
  serve "aiosd ($p)" "$url" "$tmp/$p.log" env LD_PRELOAD="$tmp/nkv.so" AIOS_NKV_LOG="$tmp/$p-nkv.txt" \
    ./build/aiosd --port "$PORT" --config "$tmp/$p.yaml" --data-dir "$tmp/data-$p" --set scheduler.policy="$p" \
    --set scheduler.max_active="$MAXACT" --set context.cache_entries="$CACHE" --set kernel.log_level=warn $AIOSD_FLAGS
  # calibration (the agents' own, against aiosd) and a warm-up happen before the first scrape
  ./build/agents "$url" 1 1 4 "$S" 0 --agent-base 9999 --label warmup >"$tmp/$p-warm.json" 2>/dev/null || true
  sys_chars=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sys_chars"])' "$tmp/$p-warm.json")
  curl -s "$url/metrics" >"$tmp/$p-m0.txt"
  nkv0=$(wc -l <"$tmp/$p-nkv.txt" 2>/dev/null || echo 0)
  t0=$(date +%s.%N)
  ./build/agents "$url" "$N" "$T" "$G" "$S" "$P" --sys-chars "$sys_chars" --label "$p" >"$tmp/$p.json" 2>"$tmp/$p.err" || true
  t1=$(date +%s.%N)
  curl -s "$url/metrics" >"$tmp/$p-m1.txt"
  tail -n +$(( nkv0 + 1 )) "$tmp/$p-nkv.txt" >"$tmp/$p-nkv-run.txt" 2>/dev/null || : >"$tmp/$p-nkv-run.txt"
  stop_server
  echo "$p $t0 $t1" >>"$tmp/runs.txt"
done

python3 - "$tmp" <<'PY'
import json, re, sys
tmp = sys.argv[1]
LINE = re.compile(r'^(aios_step_\w+?)(_bucket|_sum|_count)\{([^}]*)\} (\S+)$')

def read(path):
    """{(series, phase or ''): {"sum": s, "count": c, "buckets": [(le, n)...]}}"""
    out = {}
    for ln in open(path):
        m = LINE.match(ln.strip())
        if not m:
            continue
        name, part, labels, val = m.groups()
        lab = dict(kv.split("=", 1) for kv in re.findall(r'(\w+="[^"]*")', labels))
        key = (name, lab.get("phase", '""').strip('"'))
        h = out.setdefault(key, {"sum": 0.0, "count": 0.0, "buckets": []})
        if part == "_bucket":
            h["buckets"].append((float(lab["le"].strip('"')), float(val)))
        else:
            h[part[1:]] = float(val)
    return out

def delta(a, b):
    d = {}
    for k, hb in b.items():
        ha = a.get(k, {"sum": 0, "count": 0, "buckets": [(le, 0) for le, _ in hb["buckets"]]})
        d[k] = {"sum": hb["sum"] - ha["sum"], "count": hb["count"] - ha["count"],
                "buckets": [(le, n - na) for (le, n), (_, na) in zip(hb["buckets"], ha["buckets"])]}
    return d

def quantile(h, q):
    if not h["count"]:
        return None
    for le, n in h["buckets"]:
        if n >= q * h["count"]:
            return le
    return float("inf")

rows = []
for ln in open(f"{tmp}/runs.txt"):
    p, t0, t1 = ln.split()
    d = delta(read(f"{tmp}/{p}-m0.txt"), read(f"{tmp}/{p}-m1.txt"))
    wall = float(t1) - float(t0)
    try:
        run = json.loads(open(f"{tmp}/{p}.json").read().strip().splitlines()[-1])
    except Exception:
        run = {}
    rows.append((p, d, wall, run))

def mean(h):
    return h["sum"] / h["count"] if h["count"] else float("nan")

print("\n| policy | makespan | mean completion | steps | decode ms/step | sample | schedule | switch | decode share | sample | schedule | switch | decode p50 / p99 ms |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for p, d, wall, run in rows:
    ph = {x: d.get(("aios_step_seconds", x), {"sum": 0, "count": 0, "buckets": []}) for x in ("decode", "sample", "schedule", "switch")}
    steps = int(ph["decode"]["count"])
    ms = [f"{1000 * mean(ph[x]):.2f}" for x in ph]
    share = [f"{100 * ph[x]['sum'] / wall:.1f}%" for x in ph]
    q50, q99 = quantile(ph["decode"], 0.5), quantile(ph["decode"], 0.99)
    mk, mc = run.get("makespan_s"), run.get("mean_completion_s")
    sec = lambda x: "n/a" if x is None else f"{x:.1f} s"
    print(f"| {p} | {sec(mk)} | {sec(mc)} | {steps} | {' | '.join(ms)} | {' | '.join(share)} |"
          f" {q50 and 1000 * q50:g} / {q99 and 1000 * q99:g} |")
print("\n| policy | tokens / step | sequences / step | KV cells resident / step | own contexts / step | resident / own | attention view n_kv at graph builds: median / max (builds) |")
print("|---|---|---|---|---|---|---|")
for p, d, wall, run in rows:
    g = lambda n: d.get((f"aios_step_{n}", ""), {"sum": 0, "count": 0})
    kv, own = mean(g("kv_cells")), mean(g("context_cells"))
    views = sorted(int(l.split()[0]) for l in open(f"{tmp}/{p}-nkv-run.txt") if l.strip())
    view = f"{views[len(views) // 2]} / {views[-1]} ({len(views)})" if views else "n/a"
    print(f"| {p} | {mean(g('batch_tokens')):.1f} | {mean(g('batch_sequences')):.1f} | {kv:.0f} | {own:.0f} |"
          f" {kv / own if own else float('nan'):.2f} | {view} |")
PY
