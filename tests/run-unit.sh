#!/usr/bin/env bash
# Runs the cmocka unit-test binaries given as arguments; prints cmocka's own summaries and
# one closing "N passed, N failed" line over all of them. Exits non-zero on any failure.
set -uo pipefail
passed=0; failed=0
for t in "$@"; do
  out="$("$t" 2>&1)"; rc=$?
  echo "$out"
  p=$(echo "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
  f=$(echo "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
  if [ $rc -ne 0 ] && [ "${f:-0}" = 0 ]; then failed=$((failed + 1)); echo "$t exited $rc"; fi
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
