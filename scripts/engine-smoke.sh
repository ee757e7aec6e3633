#!/usr/bin/env bash
# engine-smoke.sh [--if-model] [MODEL]: proves the llama.cpp build runs on this host with one
# real decode (llama-batched-bench, 8 prompt + 4 generated tokens) in a child process, on the
# CPU variant ggml picks here. A variant that kills the child with a signal (SIGILL: an
# instruction this host advertises but cannot run, like AMX without usable tile state) is set
# aside as libggml-cpu-<variant>.so.disabled and the next best one is tried, so the build
# never leaves the kernel a backend that crashes; the script says which variant failed and
# why. Exits non-zero, with one clear line, when no variant can decode.
# --if-model: do nothing (exit 0) when the model is not fetched yet (fetch-model.sh runs
# this again once it is).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/deps.env"
cache="${AIOS_CACHE:-$HOME/.cache/aios}"
bin="$cache/llama-$LLAMA_PY_VERSION/build/bin"
if_model=0
[ "${1:-}" = "--if-model" ] && { if_model=1; shift; }
model="${1:-$cache/models/SmolLM2-135M-Instruct-Q8_0.gguf}"
if [ ! -f "$model" ]; then
  [ "$if_model" = 1 ] && { echo "engine smoke: skipped until the model is fetched"; exit 0; }
  echo "error: engine smoke: no model at $model (run make model)" >&2; exit 1
fi
[ -x "$bin/llama-batched-bench" ] || { echo "error: engine smoke: $bin/llama-batched-bench missing (run make llama)" >&2; exit 1; }

host_cpu() {
  local name flags
  name=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  flags=$(sed -n 's/^flags[[:space:]]*: //p' /proc/cpuinfo | head -1 | tr ' ' '\n' |
          grep -E '^(sse4_2|avx|avx2|fma|f16c|bmi2|avx512f|avx512bw|avx512vl|avx512_vbmi|avx512_vnni|avx512_bf16|avx_vnni|amx_tile|amx_int8|amx_bf16)$' | xargs)
  echo "${name:-unknown CPU}; flags: ${flags:-none of the SIMD ones}"
}

log=$(mktemp); probe_dir=$(mktemp -d); trap 'rm -rf "$log" "$probe_dir"' EXIT
sig_name() { echo "SIG$(kill -l $(($1 - 128)) 2>/dev/null || echo $(($1 - 128)))"; }

# decode DIR: runs llama-batched-bench from DIR (ggml loads CPU backends from the binary's own
# directory); sets rc and variant (the backend it loaded, "unknown" if it died before saying).
decode() {
  timeout 300 "$1/llama-batched-bench" -m "$model" -c 256 -b 32 -ub 32 -npp 8 -ntg 4 -npl 1 -t 2 -v >"$log" 2>&1
  rc=$?
  local so; so=$(sed -n 's/.*loaded CPU backend from \(.*\.so\).*/\1/p' "$log" | tail -1)
  variant=$(basename "${so:-unknown}" .so); variant=${variant#libggml-cpu-}
}

# When the crash came before ggml named the backend it loaded, each variant decodes alone
# (hard links of the build in a scratch directory) and those that die are set aside.
probe_each() {
  local so other
  for so in "$bin"/libggml-cpu-*.so; do
    rm -rf "${probe_dir:?}"/*
    for other in "$bin"/*; do
      case "$other" in "$bin"/libggml-cpu-*) continue ;; esac
      [ -f "$other" ] && ln "$other" "$probe_dir/" 2>/dev/null || cp -p "$other" "$probe_dir/"
    done
    ln "$so" "$probe_dir/" 2>/dev/null || cp -p "$so" "$probe_dir/"
    decode "$probe_dir"
    if [ $rc -gt 128 ] && [ $rc -ne 124 ]; then
      echo "engine smoke: CPU variant $(basename "$so" .so | sed 's/libggml-cpu-//') died alone with $(sig_name $rc) on this host; setting it aside" >&2
      mv "$so" "$so.disabled"
    fi
  done
}

probed=0
while :; do
  decode "$bin"
  if [ $rc -eq 0 ] && grep -qE '^\|[[:space:]]+8 \|[[:space:]]+4 \|' "$log"; then
    echo "engine smoke: ok (one decode on CPU variant $variant; host: $(host_cpu))"
    exit 0
  fi
  if [ $rc -gt 128 ] && [ $rc -ne 124 ]; then
    if [ -f "$bin/libggml-cpu-$variant.so" ]; then
      echo "engine smoke: CPU variant $variant died with $(sig_name $rc) on this host ($(host_cpu)); setting it aside and trying the next best" >&2
      mv "$bin/libggml-cpu-$variant.so" "$bin/libggml-cpu-$variant.so.disabled"
      continue
    fi
    if [ $probed -eq 0 ] && ls "$bin"/libggml-cpu-*.so >/dev/null 2>&1; then
      echo "engine smoke: died with $(sig_name $rc) before naming its CPU variant; trying each variant alone" >&2
      probed=1; probe_each; continue
    fi
  fi
  tail -15 "$log" >&2
  why="exit status $rc"; [ $rc -eq 124 ] && why="no answer in 300 s"
  [ $rc -gt 128 ] && [ $rc -ne 124 ] && why="killed by $(sig_name $rc)"
  echo "error: engine smoke: llama-batched-bench failed ($why) on CPU variant $variant with $model; host: $(host_cpu)" >&2
  exit 1
done
