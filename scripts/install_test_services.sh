#!/usr/bin/env bash
# Debian packages of the real services some tests use: `postgresql` (tests/integration/test_sweep_workers_lost.py
# starts its own throw-away server from these binaries) and `chromium` + `chromium-driver` (headless page tests).
# Needs root and apt-get; installs only what is missing. Exit status non-zero when something could not be installed.
set -uo pipefail
missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null || missing+=(postgresql)
command -v chromium > /dev/null || missing+=(chromium chromium-driver)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get > /dev/null; then
  echo "install_test_services: need root and apt-get to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "${missing[@]}" > /dev/null 2>&1 || { apt-get update -q > /dev/null 2>&1 && apt-get install -y -q "${missing[@]}" > /dev/null 2>&1; }
