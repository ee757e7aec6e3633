#!/usr/bin/env bash
# The fuzzing tier (make fuzz; docs/testing.md): runs each libFuzzer harness for S seconds
# over a working corpus (build-fuzz/corpus/<name>, seeded from tests/fuzz/corpus/<name>),
# and prints one line per harness: runs, execs/s, edges covered, corpus size. A crash, leak
# or failed property stops the harness; its input is kept as build-fuzz/crashes/<name>-*,
# to be turned into a regression input under tests/fuzz/corpus/<name>/ once fixed (every
# committed input is replayed by every run); a failing input of up to 4 KiB is printed in
# base64 too, for a failure seen only in a CI log. Exit status: 1 if any harness failed.
#   usage: tests/run-fuzz.sh SECONDS build-fuzz/fuzz_NAME...
set -u
secs="$1"; shift
. tests/sanitizers.sh # (leaks checked, third-party ones suppressed in tests/lsan.supp)
mkdir -p build-fuzz/crashes build-fuzz/logs
printf '%-10s %9s %9s %7s %7s  %s\n' harness runs execs/s edges corpus result
fail=0 fail_n=0
for bin in "$@"; do
  name="${bin##*/fuzz_}"
  work="build-fuzz/corpus/$name" seeds="tests/fuzz/corpus/$name" log="build-fuzz/logs/$name.log"
  mkdir -p "$work"
  "$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -artifact_prefix="build-fuzz/crashes/$name-" "$work" "$seeds" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  edges=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  files=$(find "$work" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then result=ok; else result="FAILED (rc $rc, $log)"; fail=1; fail_n=$((fail_n + 1)); fi
  printf '%-10s %9s %9s %7s %7s  %s\n' "$name" "${runs:-?}" "${rate:-?}" "${edges:-?}" "$files" "$result"
  if [ "$rc" -ne 0 ]; then
    grep -E 'ERROR|property failed|SUMMARY' "$log" | head -5
    # the input itself, so that a failure seen only in CI's log can be replayed anywhere:
    #   base64 -d > x && build-fuzz/fuzz_NAME x
    for a in $(grep -oE "build-fuzz/crashes/$name-[a-z]+-[0-9a-f]+" "$log" | sort -u | head -2); do
      [ -f "$a" ] && [ "$(stat -c %s "$a")" -le 4096 ] && { echo "input ($a, base64):"; base64 -w 100 "$a"; }
    done
  fi
done
echo "fuzz: $(( $# - fail_n )) passed, $fail_n failed (${secs} s each)"
exit $fail
