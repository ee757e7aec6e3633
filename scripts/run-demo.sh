#!/usr/bin/env bash
# `make run`: starts aiosd on 127.0.0.1:8000 (or $AIOS_PORT) with the default model, runs
# the demo agents against it (4 agents chatting at once through /query), then keeps the
# kernel serving in the foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${AIOS_PORT:-8000}"
url="http://127.0.0.1:$port"
./build/aiosd --port "$port" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT INT TERM
for _ in $(seq 1 600); do
  curl -sf "$url/status" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { echo "aiosd exited; see the error above"; exit 1; }
  sleep 0.2
done
echo
AIOS_URL="$url" ./build/demo_agents "${DEMO_TOKENS:-48}"
echo "== kernel status =="
AIOS_URL="$url" ./build/aios status
echo
echo "aiosd is still serving at $url  (try: ./build/aios chat \"Hello\"; Ctrl-C to stop)"
[ -n "${AIOS_DEMO_EXIT:-}" ] && exit 0
wait $pid
