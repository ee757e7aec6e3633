#!/usr/bin/env bash
# Fetches the pinned llama.cpp source (the vendor/llama.cpp tree of the llama-cpp-python
# sdist on PyPI), checks its sha256 and builds libllama plus the peer tools used by the
# benchmarks (llama-server, llama-batched-bench, llama-quantize) with llama.cpp's own
# CMake. Output stays in $AIOS_CACHE/llama-<ver>/ so a second run is a no-op.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/deps.env"
cache="${AIOS_CACHE:-$HOME/.cache/aios}"
root="$cache/llama-$LLAMA_PY_VERSION"
stamp="$root/.built"
jobs="${AIOS_JOBS:-2}"

if [ -f "$stamp" ]; then echo "llama.cpp $LLAMA_PY_VERSION: cached in $root"; exit 0; fi
mkdir -p "$cache/dl" "$root"
sdist="$cache/dl/llama_cpp_python-$LLAMA_PY_VERSION.tar.gz"
if [ ! -f "$sdist" ] || ! echo "$LLAMA_PY_SHA256  $sdist" | sha256sum -c --quiet - 2>/dev/null; then
  echo "==> downloading llama-cpp-python $LLAMA_PY_VERSION sdist from PyPI"
  python3 -m pip download --progress-bar on --no-deps --no-binary :all: \
    "llama-cpp-python==$LLAMA_PY_VERSION" -d "$cache/dl" 2>&1 | grep -v "Preparing metadata" || true
fi
echo "$LLAMA_PY_SHA256  $sdist" | sha256sum -c --quiet - || { echo "error: sha256 mismatch for $sdist" >&2; exit 1; }

if [ ! -f "$root/src/CMakeLists.txt" ]; then
  echo "==> unpacking vendor/llama.cpp"
  rm -rf "$root/src" "$root/tmp"; mkdir -p "$root/tmp"
  tar xzf "$sdist" -C "$root/tmp" "llama_cpp_python-$LLAMA_PY_VERSION/vendor/llama.cpp"
  mv "$root/tmp/llama_cpp_python-$LLAMA_PY_VERSION/vendor/llama.cpp" "$root/src"; rm -rf "$root/tmp"
fi

echo "==> configuring llama.cpp (CPU, shared libs)"
cmake -S "$root/src" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
  -DLLAMA_BUILD_SERVER=ON -DGGML_NATIVE=ON ${LLAMA_CMAKE_EXTRA:-} >"$root/configure.log" 2>&1 \
  || { tail -30 "$root/configure.log"; exit 1; }
echo "==> building llama.cpp with -j$jobs (first time only: several minutes)"
cmake --build "$root/build" -j "$jobs" --target llama llama-server llama-batched-bench llama-quantize \
  2>&1 | grep --line-buffered -E '^\[ *[0-9]+%\]' | awk '{ printf "\r   %s %s", $1, $2; fflush() } END { print "" }'
test -f "$root/build/bin/libllama.so" || { echo "error: llama.cpp build failed (see $root/build)" >&2; exit 1; }
touch "$stamp"
echo "llama.cpp $LLAMA_PY_VERSION: built in $root"
