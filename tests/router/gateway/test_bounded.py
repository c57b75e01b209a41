"""Whatever callers send, the gateway's memory and its connections stay bounded: model names
have a length limit, per-name tables cap, and slow or idle clients cannot lock out others."""

from __future__ import annotations

import asyncio
import random
import string
from pathlib import Path

import aiohttp
import openai
import pytest

from router.gateway.protocol import MAX_MODEL_NAME
from router.usage import MAX_PAIRS
from tests.support.gateway import client, gateway, user

CATCH_ALL = {
    "backends": [{"name": "any", "type": "mock", "models": ["m"]}],
    "default_backend": "any",  # every made-up model name reaches it
}


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_a_model_name_above_the_limit_is_400() -> None:
    async with gateway(CATCH_ALL) as gw:
        c = client(gw)
        with pytest.raises(openai.BadRequestError) as e:
            await c.chat.completions.create(model="x" * (MAX_MODEL_NAME + 1), messages=user("q"))
        assert e.value.param == "model"
        ok = await c.chat.completions.create(model="x" * MAX_MODEL_NAME, messages=user("q"))
        assert ok.choices[0].message.content


async def test_ten_thousand_made_up_model_names_leave_memory_where_it_was() -> None:
    rng = random.Random(0)

    def name() -> str:
        return "".join(rng.choices(string.ascii_letters, k=rng.randint(200, MAX_MODEL_NAME)))

    async with gateway(CATCH_ALL) as gw, aiohttp.ClientSession() as s:
        url = gw.url + "/v1/chat/completions"

        async def run(n: int) -> None:
            async def worker(k: int) -> None:
                for _ in range(k):
                    body = {"model": name(), "messages": [{"role": "user", "content": "q"}]}
                    async with s.post(url, json=body) as r:
                        assert r.status == 200
                        await r.read()

            await asyncio.gather(*(worker(n // 16) for _ in range(16)))

        await run(2_000)  # warm: allocator arenas, caches at their caps
        before = rss_bytes()
        await run(10_000)
        grown = rss_bytes() - before
        assert grown < 20 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB"
        report = gw.router.usage_report()
        assert len(report.by_model) <= MAX_PAIRS + 1 and "other" in report.by_model
        assert report.total_calls == 12_000  # folded into "other", never lost
        assert len(gw.metrics.usage) <= 1_000
        assert len(gw.router._cache) <= 4_096


async def test_slow_clients_cannot_lock_out_an_honest_one() -> None:
    cfg = {**CATCH_ALL, "server": {"max_connections": 64, "keepalive_timeout_s": 60}}
    async with gateway(cfg) as gw:
        host, port = gw.url.removeprefix("http://").rsplit(":", 1)
        slow = []
        for _ in range(2_000):  # each sends half a head, then nothing
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            slow.append((reader, writer))
        try:
            async with aiohttp.ClientSession() as s, s.get(gw.url + "/healthz") as r:
                assert r.status == 200 and (await r.json())["status"] == "ok"
            server = gw._server
            assert server is not None
            assert len(server.connections) <= 64
            assert server.evicted >= 2_000 - 64
        finally:
            for _, w in slow:
                w.close()


async def test_slow_clients_under_a_small_descriptor_limit(tmp_path: Path) -> None:
    """The measured case: `swarm serve` under a 256-descriptor limit and 300 slow clients. The
    connection cap fits itself to the limit, so accept() never runs out and an honest probe
    still gets in."""
    import resource
    import sys

    import yaml

    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({**CATCH_ALL, "refresh_interval": 0}))

    def small_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    swarm = str(Path(sys.executable).parent / "swarm")
    proc = await asyncio.create_subprocess_exec(
        swarm,
        "serve",
        "--config",
        str(path),
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=small_limit,
    )
    assert proc.stdout is not None
    slow = []
    try:
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode()
        url = line.split("listening on ")[1].split()[0]
        host, port = url.removeprefix("http://").rsplit(":", 1)
        for _ in range(300):
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            slow.append(writer)
        for _ in range(3):
            async with aiohttp.ClientSession() as s, s.get(url + "/healthz") as r:
                assert r.status == 200
    finally:
        for w in slow:
            w.close()
        proc.terminate()
        async with asyncio.timeout(30):
            await proc.wait()
