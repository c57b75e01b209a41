#!/usr/bin/env bash
# Peers the benchmarks measure against that cannot share our environment: LiteLLM's proxy
# (bench/gateway.py) goes into bench/.venv-litellm, pinned by bench/requirements-litellm.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x bench/.venv-litellm/bin/python ] || "$PY" -m venv bench/.venv-litellm
echo "install-bench-peers.sh: LiteLLM's proxy into bench/.venv-litellm (a minute or two)"
bench/.venv-litellm/bin/python -m pip install -q --disable-pip-version-check \
  -r bench/requirements-litellm.txt
bench/.venv-litellm/bin/litellm --version >/dev/null
echo "install-bench-peers.sh: done; python bench/gateway.py now prints a litellm row"
