# bench/common.sh - what every benchmark script sources: the repository root as working
# directory, the pinned llama.cpp build's binaries ($bin), the model ($model, or $MODEL), and
# wait_up for the servers a benchmark starts.
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
