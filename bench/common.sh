# bench/common.sh - what every benchmark script sources: the repository root as working
# directory, the pinned llama.cpp build's binaries ($bin) and the model ($model, or $MODEL).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/deps.env
cache="${AIOS_CACHE:-$HOME/.cache/aios}"
bin="$cache/llama-$LLAMA_PY_VERSION/build/bin"
model="${MODEL:-$cache/models/SmolLM2-135M-Instruct-Q8_0.gguf}"
