# bench/common.sh - what every benchmark script sources: the repository root as working
# directory, the pinned llama.cpp build's binaries ($bin), the model ($model, or $MODEL), and
# wait_up, serve and stop_server for the servers a benchmark starts.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/deps.env
cache="${AIOS_CACHE:-$HOME/.cache/aios}"
bin="$cache/llama-$LLAMA_PY_VERSION/build/bin"
model="${MODEL:-$cache/models/SmolLM2-135M-Instruct-Q8_0.gguf}"

# wait_up NAME PID URL LOG: until URL/health answers 200 (a server started in the background
# as PID); if PID dies or a minute passes, the tail of LOG, and the script exits 1.
wait_up() {
  for _ in $(seq 1 600); do
    kill -0 "$2" 2>/dev/null || break
    curl -sf "$3/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "$1 did not come up; last lines of its log:" >&2; tail -n 15 "$4" >&2; exit 1
}

# One server at a time: serve NAME URL LOG CMD... runs CMD in the background (output to LOG,
# its pid in $srv_pid) and waits until it is up (wait_up); stop_server stops it (nothing
# when none runs). A script's EXIT trap calls stop_server too.
srv_pid=""
serve() {
  local name="$1" url="$2" log="$3"; shift 3
  "$@" >"$log" 2>&1 & srv_pid=$!
  wait_up "$name" "$srv_pid" "$url" "$log"
}
stop_server() {
  if [ -n "$srv_pid" ]; then kill "$srv_pid" 2>/dev/null; wait "$srv_pid" 2>/dev/null || true; fi
  srv_pid=""
}
