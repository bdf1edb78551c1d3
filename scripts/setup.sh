#!/usr/bin/env bash
# setup.sh - installs what the project needs on a fresh Debian machine:
# Debian packages (compilers, libcjson, chromium for the browser tests) and
# a .venv at the repository root with torch (CPU build) and the genesis
# package. Idempotent: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(build-essential clang libclang-rt-14-dev cmake ninja-build pkg-config
              libcjson-dev valgrind chromium chromium-driver fonts-wqy-zenhei)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.genesis-setup
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements-dev.txt -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv"
  # torch first and pinned: the CPU build lies on disk; an unpinned torch
  # would pull a multi-GB CUDA build.
  .venv/bin/pip install -q torch==2.13.0
  .venv/bin/pip install -q -r requirements-dev.txt
  .venv/bin/pip install -q -e . --no-build-isolation
  touch "$stamp"
fi
echo "setup: ready"
