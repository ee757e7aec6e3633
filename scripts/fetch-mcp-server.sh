#!/usr/bin/env bash
# Installs a real MCP server for the system tests of the kernel's MCP client over stdio:
# the reference server "mcp-server-time" from PyPI, with its whole dependency closure
# pinned by sha256 in scripts/mcp-requirements.txt (pip --require-hashes --no-deps, wheels
# only), into its own venv built from Debian's /usr/bin/python3:
#   ${AIOS_CACHE:-$HOME/.cache/aios}/mcp-time-<version>
# The venv is rebuilt only when it is missing or its stamp file (.aios-stamp, the sha256
# of the requirements file) differs; otherwise this takes a few milliseconds.
# Prints the path of the server executable ($venv/bin/mcp-server-time) as the last line
# of stdout; progress goes to stderr. Usage: srv="$(scripts/fetch-mcp-server.sh)"
#   "$srv" --local-timezone UTC   # newline-delimited JSON-RPC 2.0 on stdin/stdout
#
# The venv is built from /usr/bin/python3, not a pyenv python under /root, and made
# readable by everyone (chmod -R a+rX), because the kernel may spawn the server as
# another user. Its parent directories must also let that user through (o+x): this script
# changes nothing above the cache dir and only warns. Note: with the default
# AIOS_CACHE=$HOME/.cache/aios and HOME=/root, /root is mode 0700, so a non-root user
# cannot reach the venv; point AIOS_CACHE elsewhere (e.g. /var/cache/aios) for that case.
set -euo pipefail
umask 022
here="$(cd "$(dirname "$0")" && pwd)"
req="$here/mcp-requirements.txt"
py=/usr/bin/python3

version="$(sed -n 's/^mcp-server-time==\([^ \\]*\).*/\1/p' "$req")"
[ -n "$version" ] || { echo "error: no mcp-server-time pin in $req" >&2; exit 1; }
cache="${AIOS_CACHE:-$HOME/.cache/aios}"
venv="$cache/mcp-time-$version"
stamp="$venv/.aios-stamp"
srv="$venv/bin/mcp-server-time"
want="$(sha256sum "$req" | cut -d' ' -f1)"

ready() {
  [ -x "$srv" ] && [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]
}

if ready; then echo "$srv"; exit 0; fi

mkdir -p "$cache"
# Serialize concurrent callers (parallel test runs) on one lock; re-check once we hold it.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache/.mcp-time-$version.lock"
  flock -w 600 9 || { echo "error: timed out waiting for $cache/.mcp-time-$version.lock" >&2; exit 1; }
  if ready; then echo "$srv"; exit 0; fi
fi

[ -x "$py" ] || { echo "error: $py not found (apt-get install python3 python3-venv)" >&2; exit 1; }
pyver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$pyver" != 3.11 ]; then
  echo "error: $py is Python $pyver, but $req pins cp311 wheels: regenerate it (see its header)" >&2
  exit 1
fi

echo "==> building the MCP test server venv: mcp-server-time $version at $venv" >&2
t0=$(date +%s.%N)
rm -rf "$venv"
"$py" -m venv "$venv" >&2 || {
  echo "error: '$py -m venv' failed (apt-get install python3-venv?)" >&2; rm -rf "$venv"; exit 1; }
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input \
  --require-hashes --no-deps --only-binary :all: -r "$req" >&2
# --no-deps installs exactly the pinned set: make sure it is a complete, consistent closure.
out="$("$venv/bin/python" -m pip check --disable-pip-version-check 2>&1)" || {
  echo "error: pip check: $out" >&2; exit 1; }
"$venv/bin/python" -c 'import mcp_server_time, mcp, pydantic_core' >&2
[ -x "$srv" ] || { echo "error: $srv missing after install" >&2; exit 1; }

chmod -R a+rX "$venv"
chmod a+x "$cache" 2>/dev/null || true   # traversal only; may not be ours to change
# Warn (only) about parents that other users cannot traverse; change nothing above $cache.
d="$(cd "$cache" && pwd -P)"
while [ "$d" != / ]; do
  d="$(dirname "$d")"
  if [ "$(( 0$(stat -c %a "$d") & 01 ))" = 0 ]; then
    echo "note: $d is not traversable by other users (mode $(stat -c %a "$d")): a kernel" \
      "running as another user cannot exec $srv; set AIOS_CACHE elsewhere for that" >&2
  fi
done

echo "$want" >"$stamp"
chmod a+r "$stamp"
t1=$(date +%s.%N)
echo "==> mcp-server-time $version ready ($(du -sh "$venv" | cut -f1), $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s)" >&2
echo "$srv"
