#!/usr/bin/env bash
# Runs the system and fault tiers (pytest + the official openai client, in a venv this
# script creates from pinned requirements) against the aiosd in build dir $1.
set -uo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
venv="${AIOS_VENV:-.venv}"
if [ ! -x "$venv/bin/pytest" ] || ! cmp -s tests/system/requirements.txt "$venv/.requirements"; then
  echo "==> creating the test venv ($venv)"
  python3 -m venv "$venv" && "$venv/bin/pip" install -q --disable-pip-version-check -r tests/system/requirements.txt \
    && cp tests/system/requirements.txt "$venv/.requirements" || exit 1
fi
AIOSD="$PWD/$build/aiosd" "$venv/bin/pytest" -q -p no:cacheprovider tests/system "${@:2}"
