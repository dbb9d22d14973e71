#!/usr/bin/env bash
# Installs what the test suite needs and is missing, and starts PostgreSQL/Redis when they do not
# answer. Debian packages are installed only when running as root (CI and fresh machines).
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
mapfile -t DEBIAN_PACKAGES < <(grep -v '^\s*#' "$HERE/../debian-packages.txt" | grep -v '^\s*$')

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "ensure-machine: installing ${missing[*]}"
    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "ensure-machine: missing Debian packages (run as root to install): ${missing[*]}" >&2
  fi
fi

if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "ensure-machine: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if command -v redis-cli >/dev/null 2>&1 && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "ensure-machine: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
fi
exit 0
