#!/usr/bin/env bash
# make tsan: the unit tests, then the concurrent system smoke (test_smoke_concurrent.py) and
# the scheduler's (the agent policy's too) and agents' concurrency tests, against a
# ThreadSanitizer build. Any report fails the run: the unit tests' output is searched for one, and the daemon's stderr is
# checked by Daemon.stop_and_check. Suppressions (third-party only): tests/tsan.supp.
# ASLR is turned off for the run (setarch -R): TSan's shadow memory layout needs the old
# mmap layout on kernels with high mmap randomisation.
#   usage: tests/run-tsan.sh BUILD_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
build="$1"
export TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=0 second_deadlock_stack=1"
norand=(setarch "$(uname -m)" -R)
log="$(mktemp)"
# shellcheck disable=SC2046
"${norand[@]}" bash tests/run-unit.sh $(ls "$build"/tests/test_*) >"$log" 2>&1; unit=$?
reports=$(grep -c 'WARNING: ThreadSanitizer' "$log")
tail -1 "$log"; echo "tsan: $reports reports in the unit tests"
[ "$reports" -eq 0 ] || grep -A20 'WARNING: ThreadSanitizer' "$log" | head -60
"${norand[@]}" bash tests/run-system.sh "$build" -k "test_smoke_concurrent or test_no_starvation or test_stop_parks or test_sched_agent" | tail -3
system=${PIPESTATUS[0]}
rm -f "$log"
[ "$unit" -eq 0 ] && [ "$reports" -eq 0 ] && [ "$system" -eq 0 ]
