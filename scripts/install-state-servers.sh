#!/usr/bin/env bash
# PostgreSQL and Redis from Debian's packages, for the tests of shared state (tests/support/servers.py starts private ones).
# The tests start private servers of their own (in temporary folders, on free ports), so the
# packages' own services are not needed and are left stopped. Idempotent.
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-state-servers: please install: ${need[*]}" >&2
    exit 1
  fi
  echo "install-state-servers: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "install-state-servers: PostgreSQL $(ls /usr/lib/postgresql | sort -V | tail -1), $(redis-server --version | cut -d' ' -f3)"
