"""``swarm demo --keep-running`` (or ``--web``) as a real process, for tests of what it prints
and of how it stops."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

READY = "Ctrl-C stops the swarm."


@contextlib.asynccontextmanager
async def running_demo(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[str]]]:
    """``swarm demo ARGS`` started, and its lines up to the one that says it is ready; the
    process is killed on exit if the test did not stop it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client.cli",
        "demo",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(240):
            while not lines or READY not in lines[-1]:
                line = await proc.stdout.readline()
                assert line, "the demo ended early:\n" + "".join(lines)
                lines.append(line.decode())
        yield proc, lines
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
