#!/usr/bin/env bash
# bench/engine-build.sh REF_BIN_DIR: the portable engine build against another llama.cpp
# build of the same source (e.g. the old GGML_NATIVE=ON one), side by side in one run:
# llama-batched-bench (DESIGN.md §7 settings: -t 2, prompt 128, 64 generated tokens) at
# NPL sequences, alternating the two builds R times, and prints the median prefill and
# decode tok/s of each with the ratio portable / reference. The portable build's CPU
# variant is the one ggml picks for this host (named in the table).
#   R=3 NPL="1 8 32" bash bench/engine-build.sh ~/.cache/aios/llama-native-ref/build/bin
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ref="${1:?usage: bench/engine-build.sh REF_BIN_DIR (a llama.cpp build dir holding llama-batched-bench)}"
R="${R:-3}"; NPL="${NPL:-1 8 32}"; PP="${PP:-128}"; TG="${TG:-64}"
[ -x "$ref/llama-batched-bench" ] || { echo "no llama-batched-bench in $ref" >&2; exit 1; }
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
variant=$("$bin/llama-batched-bench" -m "$model" -c 64 -npp 4 -ntg 1 -npl 1 -t 2 -v 2>&1 |
          sed -n 's/.*loaded CPU backend from .*libggml-cpu-\(.*\)\.so.*/\1/p' | tail -1)
for r in $(seq "$R"); do
  for n in $NPL; do
    for side in portable reference; do
      dir=$bin; [ $side = reference ] && dir=$ref
      "$dir/llama-batched-bench" -m "$model" -c $(( n * (PP + TG) + 64 )) -npp "$PP" -ntg "$TG" -npl "$n" \
        -t 2 -tb 2 -kvu --output-format jsonl 2>/dev/null | grep "^{" | tail -1 >>"$out/$side-$n.jsonl"
    done
  done
done
python3 - "$out" "$NPL" "$variant" "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" <<'PY'
import json, os, statistics, sys
out, npl, variant, cpu = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4]
def med(side, n, key):
    rows = [json.loads(l) for l in open(os.path.join(out, f"{side}-{n}.jsonl")) if l.strip()]
    return statistics.median(r[key] for r in rows), len(rows)
print(f"CPU: {cpu}; portable build runs CPU variant {variant or '?'}")
print("| sequences | prefill tok/s portable | reference | ratio | decode tok/s portable | reference | ratio | runs |")
print("|---|---|---|---|---|---|---|---|")
for n in npl:
    pp, k = med("portable", n, "speed_pp"); ppr, _ = med("reference", n, "speed_pp")
    tg, _ = med("portable", n, "speed_tg"); tgr, _ = med("reference", n, "speed_tg")
    print(f"| {n} | {pp:.1f} | {ppr:.1f} | {pp/ppr:.3f} | {tg:.1f} | {tgr:.1f} | {tg/tgr:.3f} | {k} |")
PY
