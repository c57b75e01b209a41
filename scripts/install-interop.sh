#!/usr/bin/env bash
# Install the independent peers that tests/interop/ runs against, at pinned versions:
#   - npm: @getalby/sdk, @nostr-dev-kit/ndk, nostr-tools (tests/interop/js/package.json + its
#     package-lock.json, installed with `npm ci`); needs the machine's Node.js >= 20 and npm;
#   - PyPI: nostr-dvm in its own virtual environment (tests/interop/.venv-nostrdvm): its pins
#     conflict with the project's.
# Idempotent; a peer already at its pinned version is left as it is. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

NOSTR_DVM_VERSION=1.1.8
JS=tests/interop/js
DVM_VENV=tests/interop/.venv-nostrdvm

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "install-interop: node and npm are needed (Node.js 20 or newer)" >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "install-interop: Node.js $(node --version) is too old; the drivers need 20 or newer" >&2
  exit 1
fi

# npm ci installs exactly the lock file; skipped when node_modules already matches it.
if ! cmp -s "$JS/package-lock.json" "$JS/node_modules/.package-lock.json.installed" 2>/dev/null; then
  (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$JS/package-lock.json" "$JS/node_modules/.package-lock.json.installed"
fi

PY=${PYTHON:-python3}
if ! "$DVM_VENV/bin/python" -c \
  "import importlib.metadata as m, sys; sys.exit(m.version('nostr-dvm') != '$NOSTR_DVM_VERSION')" \
  2>/dev/null; then
  "$PY" -m venv "$DVM_VENV"
  "$DVM_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "nostr-dvm==$NOSTR_DVM_VERSION"
fi
echo "install-interop: peers installed (node $(node --version), nostr-dvm $NOSTR_DVM_VERSION)"
