"""The independent peers the interop tests run against, and how to drive them.

Peers are installed by ``scripts/install-interop.sh``: npm packages pinned in ``js/package.json``
(with its lock file) and nostrdvm in its own virtual environment (its pins conflict with ours).
A peer that is not installed skips its tests with the reason, except in CI (``CI=true``), where
that is a failure: CI installs every peer, so a skip there would hide a broken install.

Node drivers (``js/*.mjs``) are small scripts that print one JSON object per line on stdout;
:class:`NodePeer` starts one and awaits the lines it waits for, with a deadline, never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
JS_DIR = HERE / "js"
NOSTRDVM_VENV = HERE / ".venv-nostrdvm"
NOSTRDVM_PYTHON = NOSTRDVM_VENV / "bin" / "python"
INSTALL = "bash scripts/install-interop.sh"
WAIT = 20.0


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Skip (fail in CI) because a peer is not installed."""
    message = f"{reason}; install the interop peers with `{INSTALL}`"
    if in_ci():
        pytest.fail(f"CI: {message}", pytrace=False)
    pytest.skip(message)


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        missing("node is not on PATH")
    assert node is not None
    return node


def require_js(package: str) -> None:
    """Skip (fail in CI) unless the npm ``package`` is installed under js/node_modules."""
    node_binary()
    if not (JS_DIR / "node_modules" / package / "package.json").is_file():
        missing(f"npm package {package} is not installed in {JS_DIR / 'node_modules'}")


def js_version(package: str) -> str:
    meta = json.loads((JS_DIR / "node_modules" / package / "package.json").read_text())
    return str(meta["version"])


def require_nostrdvm() -> None:
    if not NOSTRDVM_PYTHON.is_file():
        missing(f"nostrdvm's virtual environment {NOSTRDVM_VENV} is missing")


class PeerError(AssertionError):
    """The peer exited, printed something unexpected, or did not say what we waited for."""


class NodePeer:
    """One running peer script. ``await peer.expect("ready")`` returns the first line (a dict)
    whose ``event`` is ``ready``; lines seen on the way are kept in ``lines``."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.lines: list[dict[str, Any]] = []
        self._taken: set[int] = set()

    async def _read_line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        raw = await self.proc.stdout.readline()
        if not raw:
            await self.proc.wait()
            stderr = b""
            if self.proc.stderr is not None:
                stderr = await self.proc.stderr.read()
            raise PeerError(
                f"{self.name} exited ({self.proc.returncode}) before answering; "
                f"stderr: {stderr.decode(errors='replace')[-2000:]}"
            )
        try:
            line = json.loads(raw)
        except ValueError:
            return {"event": "text", "text": raw.decode(errors="replace").rstrip()}
        return line if isinstance(line, dict) else {"event": "text", "text": str(line)}

    async def expect(self, event: str, within: float = WAIT) -> dict[str, Any]:
        """The first line with this ``event`` not returned before (lines may come in any
        order: a driver handles events concurrently)."""

        async def scan() -> dict[str, Any]:
            index = 0
            while True:
                while index < len(self.lines):
                    line = self.lines[index]
                    if line.get("event") == "fatal":
                        raise PeerError(f"{self.name}: {line.get('error')}")
                    if line.get("event") == event and index not in self._taken:
                        self._taken.add(index)
                        return line
                    index += 1
                self.lines.append(await self._read_line())

        try:
            return await asyncio.wait_for(scan(), within)
        except TimeoutError:
            raise PeerError(
                f"{self.name} did not say {event!r} within {within:g}s; it said {self.lines}"
            ) from None

    async def expect_text(self, needle: str, within: float = WAIT) -> str:
        """The first plain (not JSON) output line containing ``needle``: for peers whose own
        logging is the only sign of what they did."""

        async def scan() -> str:
            index = 0
            while True:
                while index < len(self.lines):
                    text = str(self.lines[index].get("text", ""))
                    index += 1
                    if needle in text:
                        return text
                self.lines.append(await self._read_line())

        try:
            return await asyncio.wait_for(scan(), within)
        except TimeoutError:
            raise PeerError(
                f"{self.name} did not print {needle!r} within {within:g}s; it said {self.lines}"
            ) from None


@contextlib.asynccontextmanager
async def run_node(script: str, *args: str, name: str | None = None) -> AsyncIterator[NodePeer]:
    """Run ``js/<script>`` with node (its global WebSocket turned on: node 20 has it behind a
    flag) and stop it on exit."""
    node = node_binary()
    async with _running(
        [node, "--experimental-websocket", "--no-warnings", str(JS_DIR / script), *args],
        name or script,
        JS_DIR,
    ) as peer:
        yield peer


@contextlib.asynccontextmanager
async def run_nostrdvm(
    script: Path, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> AsyncIterator[NodePeer]:
    """Run a Python driver script with nostrdvm's own interpreter (in ``cwd``: nostrdvm writes
    its databases under ./db), with ``env`` added to the environment."""
    async with _running(
        [str(NOSTRDVM_PYTHON), str(script), *args], script.name, cwd or HERE, env
    ) as peer:
        yield peer


@contextlib.asynccontextmanager
async def _running(
    argv: Sequence[str], name: str, cwd: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[NodePeer]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
        limit=4 * 1024 * 1024,
    )
    try:
        yield NodePeer(proc, name)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


__all__ = [
    "JS_DIR",
    "NodePeer",
    "PeerError",
    "in_ci",
    "js_version",
    "require_js",
    "require_nostrdvm",
    "run_node",
    "run_nostrdvm",
]
