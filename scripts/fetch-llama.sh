#!/usr/bin/env bash
# Fetches the pinned llama.cpp source (the vendor/llama.cpp tree of the llama-cpp-python
# sdist on PyPI), checks its sha256 and builds libllama plus the peer tools used by the
# benchmarks (llama-server, llama-batched-bench, llama-quantize) with llama.cpp's own
# CMake. Output stays in $AIOS_CACHE/llama-<ver>/ so a second run is a no-op.
#
# Portability (DESIGN.md §8): never a build for the build host's CPU only. ggml is built the
# way llama.cpp's own release builds are: GGML_BACKEND_DL with one CPU backend per x86-64
# variant (libggml-cpu-<variant>.so), and at run time ggml loads the best one the host really
# supports. The variants are LLAMA_CPU_VARIANTS in deps.env: the AMX one (sapphirerapids) is
# left out because ggml's AMX kernels trap (SIGILL at tilezero) on hosts where the tile state
# is not usable in worker threads (an open upstream fix); AMX hosts run the zen4 variant
# (AVX-512 VBMI/VNNI/BF16) instead. The stamp holds a hash of the flags and variants, so a
# build made with other flags (an older native build) is rebuilt. After a build a smoke
# decode (scripts/engine-smoke.sh) runs when the model is there; fetch-model.sh runs it too.
#
# GPUs: AIOS_GPU=cuda (make llama GPU=cuda) also builds ggml's CUDA backend
# (libggml-cuda.so, loaded at run time like the CPU variants) with the CUDA compiler on PATH
# or in /usr/local/cuda, into its own tree, llama-<ver>-cuda, so the CPU build stays what CI
# and `make test` use. CUDA architectures: AIOS_CUDA_ARCHS (default: llama.cpp's own list).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/deps.env"
cache="${AIOS_CACHE:-$HOME/.cache/aios}"
gpu="${AIOS_GPU:-}"
root="$cache/llama-$LLAMA_PY_VERSION${gpu:+-$gpu}"
stamp="$root/.built"
jobs="${AIOS_JOBS:-2}"
variants="${AIOS_CPU_VARIANTS:-$LLAMA_CPU_VARIANTS}"

flags=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF
       -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON
       -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON ${LLAMA_CMAKE_EXTRA:-})
case "$gpu" in
  "") ;;
  cuda)
    nvcc="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
    [ -x "$nvcc" ] || { echo "error: GPU=cuda needs the CUDA compiler (nvcc on PATH or in /usr/local/cuda/bin)" >&2; exit 1; }
    flags+=(-DGGML_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc")
    [ -n "${AIOS_CUDA_ARCHS:-}" ] && flags+=(-DCMAKE_CUDA_ARCHITECTURES="$AIOS_CUDA_ARCHS") ;;
  *) echo "error: GPU='$gpu': the GPU backends built here are: cuda" >&2; exit 1 ;;
esac
# what the build depends on besides the source: the flags, the variants, and this script's recipe
key=$(printf '%s\n' "recipe 2" "${flags[*]}" "variants $variants" | sha256sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then echo "llama.cpp $LLAMA_PY_VERSION: cached in $root ($key)"; exit 0; fi
[ -f "$stamp" ] && echo "==> cached llama.cpp build was made with other flags: rebuilding"
rm -f "$stamp"
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

# Keep only the chosen x86-64 variants in ggml's list (other architectures keep theirs).
lists="$root/src/ggml/src/CMakeLists.txt"
[ -f "$lists.orig" ] || cp "$lists" "$lists.orig"
awk -v keep=" $variants " '
  /GGML_SYSTEM_ARCH STREQUAL "x86"/ { x86 = 1 }
  x86 && /GGML_SYSTEM_ARCH STREQUAL "ARM"/ { x86 = 0 }
  x86 && match($0, /ggml_add_cpu_backend_variant\([a-z0-9_]+/) {
    name = substr($0, RSTART + 29, RLENGTH - 29)
    if (index(keep, " " name " ") == 0) next
  }
  { print }' "$lists.orig" >"$lists"
if [ "$(uname -m)" = x86_64 ]; then
  got=$(sed -n '/STREQUAL "x86"/,/STREQUAL "ARM"/s/.*ggml_add_cpu_backend_variant(\([a-z0-9_]*\).*/\1/p' "$lists" | xargs)
  want=$(echo $variants | tr ' ' '\n' | sort | xargs); have=$(echo "$got" | tr ' ' '\n' | sort | xargs)
  [ "$want" = "$have" ] || { echo "error: ggml's x86 variant list did not take the selection (wanted: $want; got: $have)" >&2; exit 1; }
fi

echo "==> configuring llama.cpp (${gpu:+$gpu and }CPU, shared libs, CPU variants: $variants)"
rm -rf "$root/build"
cmake -S "$root/src" -B "$root/build" "${flags[@]}" >"$root/configure.log" 2>&1 \
  || { tail -30 "$root/configure.log"; exit 1; }
echo "==> building llama.cpp with -j$jobs (first time only: several minutes)"
cmake --build "$root/build" -j "$jobs" --target llama llama-server llama-batched-bench llama-quantize \
  2>&1 | tee "$root/build.log" | grep --line-buffered -E '^\[ *[0-9]+%\]' | awk '{ printf "\r   %s %s", $1, $2; fflush() } END { print "" }'
test -f "$root/build/bin/libllama.so" || { tail -30 "$root/build.log"; echo "error: llama.cpp build failed (see $root/build.log)" >&2; exit 1; }
ls "$root/build/bin"/libggml-cpu-*.so >/dev/null 2>&1 || { echo "error: no ggml CPU backend was built (see $root/build.log)" >&2; exit 1; }
[ -z "$gpu" ] || [ -f "$root/build/bin/libggml-$gpu.so" ] || { echo "error: no ggml $gpu backend was built (see $root/build.log)" >&2; exit 1; }
echo "$key" >"$stamp"
echo "llama.cpp $LLAMA_PY_VERSION: built in $root (CPU variants: $(cd "$root/build/bin" && ls libggml-cpu-*.so | sed 's/libggml-cpu-//; s/\.so//' | xargs))"
bash "$here/engine-smoke.sh" --if-model
