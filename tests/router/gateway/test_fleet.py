"""Three `swarm serve` processes sharing one PostgreSQL (spend) and one Redis (key limits), with
requests spread over them by the test: no key spends beyond its budget, an rpm limit holds
across the instances, and every instance reports the same totals. Then Redis goes away (limits
fall back to each process, nothing breaks) and PostgreSQL goes away (requests that cost money
get a clear 503, nothing is charged twice), and both come back by themselves."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.support.servers import Postgres, Redis

SWARM = str(Path(sys.executable).parent / "swarm")


def config(pg_url: str, redis_url: str) -> dict[str, Any]:
    return {
        "refresh_interval": 0,
        "backends": [{"name": "paid", "type": "mock", "models": ["m"], "cost_sats": 2}],
        "keys": [
            {"name": "alice", "key": "sk-alice", "budget_sats": 50},
            {"name": "bob", "key": "sk-bob", "rpm": 30},
        ],
        "state": {"url": pg_url, "redis": redis_url},
    }


@contextlib.asynccontextmanager
async def fleet(tmp: Path, cfg: dict[str, Any], n: int = 3) -> AsyncIterator[list[str]]:
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    procs = []
    urls = []
    try:
        for _ in range(n):
            proc = await asyncio.create_subprocess_exec(
                SWARM,
                "serve",
                "--config",
                str(path),
                "--port",
                "0",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=dict(os.environ),
            )
            procs.append(proc)
            assert proc.stdout is not None
            async with asyncio.timeout(30):
                line = (await proc.stdout.readline()).decode()
            assert "listening on" in line, line
            urls.append(line.split("listening on ")[1].split()[0])
        yield urls
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            async with asyncio.timeout(30):
                await proc.wait()


async def spread(urls: list[str], key: str, n: int) -> list[int]:
    """``n`` concurrent requests with ``key``, round-robin over the instances."""
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}], "max_tokens": 8}
    async with aiohttp.ClientSession() as s:

        async def one(i: int) -> int:
            async with s.post(
                urls[i % len(urls)] + "/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
            ) as r:
                await r.read()
                return r.status

        return list(await asyncio.gather(*(one(i) for i in range(n))))


async def usage(url: str, key: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.get(url + "/v1/usage", headers={"Authorization": f"Bearer {key}"}) as r,
    ):
        assert r.status == 200
        return dict(await r.json())


async def test_three_gateways_share_budgets_limits_and_totals(
    tmp_path: Path, pg_url: str, redis_server: Redis
) -> None:
    async with fleet(tmp_path, config(pg_url, redis_server.url)) as urls:
        statuses = await spread(urls, "sk-alice", 200)
        assert statuses.count(200) == 25 and set(statuses) == {200, 429}  # 25 x 2 = 50 sats
        if 60 - time.time() % 60 < 15:  # a fixed minute window: start the rpm check in one
            await asyncio.sleep(60 - time.time() % 60 + 0.5)
        statuses = await spread(urls, "sk-bob", 90)
        assert statuses.count(200) == 30, statuses  # rpm 30 across the three
        reports = [await usage(u, "sk-alice") for u in urls]
        assert {r["key"]["spent_msats"] for r in reports} == {50_000}
        assert len({tuple(sorted(r["state"].items())) for r in reports}) == 1
        assert reports[0]["state"]["spent_msats"] == 50_000 + 30 * 2_000


async def test_redis_then_postgres_away_and_back(
    tmp_path: Path, pg_url: str, redis_server: Redis, postgres: Postgres
) -> None:
    async with fleet(tmp_path, config(pg_url, redis_server.url), n=2) as urls:
        assert (await spread(urls, "sk-bob", 4)) == [200] * 4
        redis_server.kill()
        assert (await spread(urls, "sk-bob", 4)) == [200] * 4  # limits per process, still served
        postgres.kill()
        try:
            statuses = await spread(urls, "sk-alice", 4)
            assert statuses == [503] * 4  # money needs the state store: a clear refusal
            async with (
                aiohttp.ClientSession() as s,
                s.post(
                    urls[0] + "/v1/chat/completions",
                    json={"model": "m", "messages": [{"role": "user", "content": "q"}]},
                    headers={"Authorization": "Bearer sk-alice"},
                ) as r,
            ):
                err = await r.json()
                assert err["error"]["code"] == "state_unavailable"
        finally:
            postgres.start()
            redis_server.start()
        assert (await spread(urls, "sk-alice", 4)) == [200] * 4  # recovered by themselves
        spent = {(await usage(u, "sk-alice"))["key"]["spent_msats"] for u in urls}
        assert spent == {4 * 2_000}  # the refused requests charged nothing
