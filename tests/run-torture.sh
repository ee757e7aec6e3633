#!/usr/bin/env bash
# make torture: the allocation-failure torture tier (tests/torture) against BUILD_DIR/aiosd,
# built with -DAIOS_TORTURE and ASan+UBSan (see the Makefile's torture target), in the system
# tier's venv. Every sanitizer report fails it.
#   usage: tests/run-torture.sh BUILD_DIR [pytest args...]
set -uo pipefail
cd "$(dirname "$0")/.."
build="$1"
venv="${AIOS_VENV:-.venv}"
[ -x "$venv/bin/pytest" ] || bash tests/run-system.sh build --co -q >/dev/null  # makes the venv
. tests/sanitizers.sh
ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0" # (leaks through cJSON, which has no frame pointers)
AIOSD="$PWD/$build/aiosd" "$venv/bin/pytest" -q -s -p no:cacheprovider tests/torture "${@:2}"
