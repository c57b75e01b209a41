#!/usr/bin/env bash
# Regenerate constraints.txt: the exact version of every package that any extra of nostr-swarm
# installs, transitive dependencies included, resolved from the ranges in pyproject.toml.
# scripts/install.sh (and so CI) installs through it, so everyone runs what CI tested.
#
#   bash scripts/lock.sh                          # after changing a dependency in pyproject.toml
#   bash scripts/lock.sh --upgrade-package NAME   # move one package to its newest allowed version
#   bash scripts/lock.sh --upgrade                # move everything to the newest allowed versions
#
# Versions already in constraints.txt are kept unless a range no longer allows them or an option
# above says otherwise. The resolver is uv (pinned below), installed into .venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8

if [ ! -x .venv/bin/python ]; then
  echo "lock.sh: run bash scripts/install.sh first (it makes .venv)" >&2
  exit 1
fi
if [ "$(.venv/bin/uv --version 2>/dev/null)" != "uv $UV_VERSION" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
fi
# One file for every platform (markers say where a pin applies) and every Python we support.
.venv/bin/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
  --custom-compile-command "bash scripts/lock.sh" --output-file constraints.txt --quiet "$@"
echo "lock.sh: wrote constraints.txt ($(grep -c '==' constraints.txt) pins)"
