#!/usr/bin/env bash
# The protocol core installs and works on its own: a fresh virtualenv with a bare
# `pip install .` (no extras; the versions of constraints.txt) imports every module of `client`
# and runs `swarm`, and none of the gateway's, provider's or relay's packages is installed.
# Subcommands from the other packages say which extra they need. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$PY" -m venv "$dir/venv"
out=$("$dir/venv/bin/python" -m pip install -q --disable-pip-version-check \
  -c constraints.txt . 2>&1) || {
  printf '%s\n' "$out" >&2
  exit 1
}
cd "$dir" # away from the checkout: `client` must come from the installed package
"$dir/venv/bin/python" - <<'PYEOF'
import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path

import client

assert Path(client.__file__).is_relative_to(sys.prefix), client.__file__
# The packages of the extras are absent, or this proves nothing.
for name in ("aiohttp", "httptools", "yaml", "prometheus_client", "uvloop", "orjson", "redis",
             "psycopg", "llama_cpp", "numpy", "onnxruntime"):
    if importlib.util.find_spec(name) is not None:
        sys.exit(f"check-core-install: {name} is installed by a bare pip install")
failed = {}
for info in pkgutil.walk_packages(client.__path__, "client."):
    if info.name.endswith(".__main__"):  # runs the command
        continue
    try:
        importlib.import_module(info.name)
    except ImportError as exc:
        failed[info.name] = exc
if failed:
    sys.exit(f"check-core-install: modules of client need more than the core: {failed}")
print("check-core-install: every module of client imports without the extras")
PYEOF
swarm="$dir/venv/bin/swarm"
keys=$("$swarm" keys new --json)
grep -q '"npub": "npub1' <<<"$keys"
help=$("$swarm" --help)
grep -Eq 'serve +\(unavailable: No module named' <<<"$help"
rc=0
err=$("$swarm" serve --config x.yaml 2>&1) || rc=$?
[ "$rc" -eq 2 ] && grep -q 'pip install "nostr-swarm\[gateway\]"' <<<"$err" || {
  echo "check-core-install: swarm serve without the gateway extra said (exit $rc): $err" >&2
  exit 1
}
echo "check-core-install: swarm runs; swarm serve asks for the gateway extra"
