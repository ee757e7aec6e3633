#!/usr/bin/env bash
# Context-switch cost: how long aiosd takes to snapshot and restore the KV state of a
# ~1000-token sequence (issue 3 target: snapshot + restore <= 10 ms). Two clients send
# requests with ~TOKENS-token prompts to an aiosd with one place in the engine and round
# robin every SLICE tokens, so every switch saves one sequence and restores the other;
# the per-switch times come from aiosd's own counters (aios_snapshot_seconds_total /
# aios_snapshots_total, aios_restore_seconds_total / aios_restores_total).
#   TOKENS=1000 SLICE=8 G=64 bash bench/snapshot.sh
set -euo pipefail
. "$(dirname "$0")/common.sh"
TOKENS="${TOKENS:-1000}"; SLICE="${SLICE:-8}"; G="${G:-64}"; PORT="${PORT:-8797}"; THREADS="${THREADS:-2}"
tmp="$(mktemp -d)"; pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
./build/aiosd --port "$PORT" --data-dir "$tmp/data" --set scheduler.policy=rr --set scheduler.max_active=1 \
  --set scheduler.time_slice="$SLICE" --set context.cache_entries=0 --set kernel.log_level=${LOGLEVEL:-warn} \
  --set llms.model="$model" \
  2>"${AIOSD_LOG:-$tmp/aiosd.log}" & pid=$!
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/status" >/dev/null 2>&1 && break; sleep 0.2; done
python3 - "$PORT" "$TOKENS" "$G" <<'PY'
import json, sys, threading, urllib.request
port, tokens, g = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
url = f"http://127.0.0.1:{port}"
def post(content, n):
    body = json.dumps({"messages": [{"role": "user", "content": content}], "max_tokens": n,
                       "temperature": 0, "ignore_eos": True}).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=600))
def text(i, words):
    return f"Document {i}: " + " ".join(f"word{(i * 7 + k) % 997}" for k in range(words))
words = tokens // 3
words = int(words * tokens / post(text(0, words), 1)["usage"]["prompt_tokens"])  # calibrate once
def metrics():
    out = {}
    for line in urllib.request.urlopen(url + "/metrics", timeout=30).read().decode().splitlines():
        if line and not line.startswith("#"):
            name = line.split("{")[0].split()[0]
            out[name] = float(line.split()[-1])
    return out
m0 = metrics()
usage = []
ts = [threading.Thread(target=lambda i=i: usage.append(post(text(i + 1, words), g)["usage"])) for i in range(2)]
for t in ts: t.start()
for t in ts: t.join()
m1 = metrics()
d = {k: m1[k] - m0.get(k, 0) for k in m1}
n_s, n_r = d["aios_snapshots_total"], d["aios_restores_total"]
snap_ms = 1000 * d["aios_snapshot_seconds_total"] / max(n_s, 1)
rest_ms = 1000 * d["aios_restore_seconds_total"] / max(n_r, 1)
size = d["aios_snapshot_bytes_total"] / max(n_s, 1)
print(f"prompt tokens: {[u['prompt_tokens'] for u in usage]}, generated: {[u['completion_tokens'] for u in usage]}")
print(f"context switches: {d['aios_context_switches_total']:.0f}, snapshots: {n_s:.0f}, restores: {n_r:.0f}")
print(f"| sequence tokens | snapshot bytes | snapshot ms | restore ms | snapshot + restore ms |")
print(f"|---|---|---|---|---|")
print(f"| ~{tokens + g // 2} | {size / 1e6:.1f} MB | {snap_ms:.2f} | {rest_ms:.2f} | {snap_ms + rest_ms:.2f} |")
PY
