"""Several ``swarm serve`` processes on one config (a shared PostgreSQL and Redis), each with its
own home folder (its payment ledger) and its stderr in a file, and the requests a test spreads
over them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

SWARM = str(Path(sys.executable).parent / "swarm")
CHAT = [{"role": "user", "content": "q"}]


@dataclass
class Instance:
    url: str
    stderr: Path

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


@contextlib.asynccontextmanager
async def fleet(
    tmp: Path, cfg: dict[str, Any], n: int = 3, env: dict[str, str] | None = None
) -> AsyncIterator[list[Instance]]:
    """``n`` gateways serving ``cfg`` on free ports; stopped (SIGTERM) at the end."""
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    procs: list[asyncio.subprocess.Process] = []
    instances: list[Instance] = []
    try:
        for i in range(n):
            home = tmp / f"gw{i}"
            home.mkdir(exist_ok=True)
            stderr = home / "stderr.log"
            with stderr.open("wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    SWARM,
                    "serve",
                    "--config",
                    str(path),
                    "--port",
                    "0",
                    stdout=asyncio.subprocess.PIPE,
                    stderr=err,
                    env={**os.environ, "NOSTR_SWARM_HOME": str(home), **(env or {})},
                )
            procs.append(proc)
            assert proc.stdout is not None
            async with asyncio.timeout(30):
                line = (await proc.stdout.readline()).decode()
            assert "listening on" in line, line + stderr.read_text()
            instances.append(Instance(line.split("listening on ")[1].split()[0], stderr))
        yield instances
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            async with asyncio.timeout(30):
                await proc.wait()


async def post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], key: str | None
) -> tuple[int, dict[str, str], dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
        return r.status, dict(r.headers), await r.json(content_type=None)


async def spread(
    urls: list[str], key: str | None, n: int, body: dict[str, Any] | None = None
) -> list[int]:
    """``n`` concurrent requests with ``key``, round-robin over the instances; their statuses."""
    body = body or {"model": "m", "messages": CHAT, "max_tokens": 8}
    async with aiohttp.ClientSession() as s:
        answers = await asyncio.gather(*(post(s, urls[i % len(urls)], body, key) for i in range(n)))
    return [status for status, _, _ in answers]


async def usage(url: str, key: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(url + "/v1/usage", headers={"Authorization": f"Bearer {key}"}) as r,
    ):
        assert r.status == 200
        return dict(await r.json())
