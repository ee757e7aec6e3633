# tests/sanitizers.sh - sourced by the scripts that run ASan+UBSan builds (run-all.sh, run-fuzz.sh,
# run-torture.sh): leaks checked (third-party ones suppressed in tests/lsan.supp), the first
# report halts, UBSan prints its stack.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
