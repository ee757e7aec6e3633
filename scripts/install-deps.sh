#!/usr/bin/env bash
# Installs the Debian packages aios builds and tests with (only those missing), so a fresh
# machine needs nothing but the repo. Runs apt-get as root or through sudo.
set -euo pipefail
pkgs=(build-essential cmake pkg-config git curl ca-certificates python3 python3-venv python3-pip
      libmicrohttpd-dev libcjson-dev libyaml-dev libcurl4-openssl-dev libcmocka-dev libsqlite3-dev libhnswlib-dev libncurses-dev tmux
      bubblewrap libseccomp-dev libssl-dev chromium chromium-driver clang libclang-rt-14-dev clang-format)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ]; then echo "deps: all system packages present"; exit 0; fi
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "==> installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: installed ${#missing[@]} packages"
