#!/usr/bin/env bash
# `make test`: every tier, after a preflight (one real decode). 1) unit tests (cmocka), 1b) the fuzz harnesses (AIOS_FUZZ_S seconds each), 2) system + fault tests against the real
# aiosd and model, 3) the same system + fault tests against an ASan+UBSan build. Prints
# each tier's result and one closing "N passed, N failed" line; exits non-zero on failure.
set -uo pipefail
cd "$(dirname "$0")/.."
jobs="${AIOS_JOBS:-2}"
log="$(mktemp -d)"
total_p=0; total_f=0; status=0

count() { # file -> "passed failed" from cmocka/pytest summaries
  local p f
  p=$(grep -Eo '[0-9]+ passed' "$1" | tail -1 | grep -Eo '[0-9]+'); f=$(grep -Eo '[0-9]+ failed' "$1" | tail -1 | grep -Eo '[0-9]+')
  e=$(grep -Eo '[0-9]+ errors?' "$1" | tail -1 | grep -Eo '[0-9]+')
  echo "${p:-0} $(( ${f:-0} + ${e:-0} ))"
}

tier() { # name command...
  local name=$1; shift
  echo "==> $name"
  "$@" 2>&1 | tee "$log/$name.log"; local rc=${PIPESTATUS[0]}
  read -r p f < <(count "$log/$name.log")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  total_p=$((total_p + p)); total_f=$((total_f + f))
  [ "$rc" -eq 0 ] || status=1
  echo "<== $name: $p passed, $f failed"
}

units=$(for f in tests/unit/test_*.c; do t=${f##*/}; echo "build/tests/${t%.c}"; done)  # every unit test file
# shellcheck disable=SC2086
make --no-print-directory -j"$jobs" all $units >/dev/null || { echo "build failed"; exit 1; }
# Preflight: one real decode by the kernel itself, in a child. When the engine cannot run on
# this host (an instruction the CPU cannot execute, a missing backend), say so in one line
# instead of failing every system test.
echo "==> preflight: aiosd --self-test"
pre=$(timeout 300 build/aiosd --self-test 2>&1); rc=$?
if [ $rc -ne 0 ]; then
  echo "$pre" | tail -5
  why="exit status $rc"; [ $rc -eq 124 ] && why="no answer in 300 s"
  [ $rc -gt 128 ] && [ $rc -ne 124 ] && why="killed by SIG$(kill -l $((rc - 128)) 2>/dev/null)"
  echo "preflight: the engine cannot run on this host: aiosd --self-test $why ($(echo "$pre" | grep -o 'engine: .*' | tail -1 || true)); see scripts/engine-smoke.sh"
  echo "total: 0 passed, 1 failed"
  exit 1
fi
echo "$pre" | grep -E '^self-test: ok' || true
# shellcheck disable=SC2086
tier format make --no-print-directory format-check
tier unit bash tests/run-unit.sh $units
make --no-print-directory -j"$jobs" fuzz-build >/dev/null || { echo "fuzz build failed"; exit 1; }
tier fuzz make --no-print-directory fuzz FUZZ_S="${AIOS_FUZZ_S:-20}"  # CI's short setting; locally: make fuzz FUZZ_S=600
tier system bash tests/run-system.sh build
make --no-print-directory -j"$jobs" asan >/dev/null || { echo "asan build failed"; exit 1; }
. tests/sanitizers.sh
tier asan-system bash tests/run-system.sh build-asan
echo "total: $total_p passed, $total_f failed"
exit $status
