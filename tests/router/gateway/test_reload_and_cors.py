"""SIGHUP reloads `swarm serve`'s config without dropping requests in flight, and refuses an
invalid one; CORS for browser clients. The reload runs against a real `swarm serve` process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.support.gateway import gateway
from tests.support.upstreams import FakeOpenAI

SWARM = str(Path(sys.executable).parent / "swarm")


def config(reply: str) -> dict[str, Any]:
    return {
        "backends": [{"name": "m", "type": "mock", "models": ["m"], "response": reply}],
        "refresh_interval": 0,
    }


async def read_line_with(stream: asyncio.StreamReader, needle: str) -> str:
    async with asyncio.timeout(30):
        while True:
            line = (await stream.readline()).decode()
            assert line, f"the process ended before printing {needle!r}"
            if needle in line:
                return line


async def ask(s: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}]}
    async with s.post(url + "/v1/chat/completions", json=body) as r:
        data = await r.json()
        return r.status, data["choices"][0]["message"]["content"] if r.status == 200 else ""


async def test_sighup_reloads_without_dropping_a_request_and_refuses_a_bad_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gateway.yaml"
    async with FakeOpenAI(models=["m"], reply="old") as up:
        path.write_text(yaml.safe_dump({"backends": [{"name": "up", "url": up.base_url}]}))
        proc = await asyncio.create_subprocess_exec(
            SWARM,
            "serve",
            "--config",
            str(path),
            "--port",
            "0",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ),
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            line = await read_line_with(proc.stdout, "listening on")
            url = line.split("listening on ")[1].split()[0]
            async with aiohttp.ClientSession() as s:
                up.hold()
                slow = asyncio.create_task(ask(s, url))  # in flight across the reload
                await up.wait_for_requests(1)
                path.write_text(yaml.safe_dump(config("new")))
                proc.send_signal(signal.SIGHUP)
                await read_line_with(proc.stderr, "reloaded")
                assert await ask(s, url) == (200, "new")
                up.release()
                assert await slow == (200, "old")  # finished on the old config
                path.write_text("backends: [{name: x, type: nope}]")
                proc.send_signal(signal.SIGHUP)
                refused = await read_line_with(proc.stderr, "reload refused")
                assert "type must be one of" in refused
                assert await ask(s, url) == (200, "new")  # still serving
        finally:
            proc.terminate()
            async with asyncio.timeout(30):
                await proc.wait()


async def test_reload_in_process_keeps_spend_and_swaps_keys(tmp_path: Path) -> None:
    from router.gateway.config import parse_config

    data = {
        "backends": [{"name": "paid", "type": "mock", "models": ["m"], "cost_sats": 3}],
        "keys": [{"name": "alice", "key": "sk-a", "budget_sats": 10}],
    }
    async with gateway(data) as gw, aiohttp.ClientSession() as s:
        body = {"model": "m", "messages": [{"role": "user", "content": "q"}]}
        async with s.post(
            gw.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer sk-a"}
        ) as r:
            assert r.status == 200
        new = {**data, "keys": [{"name": "alice", "key": "sk-a2", "budget_sats": 10}]}
        await gw.reload(parse_config({**new, "server": {"port": 0}, "refresh_interval": 0}))
        for key, status in (("sk-a", 401), ("sk-a2", 200)):
            async with s.post(
                gw.url + "/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
            ) as r:
                assert r.status == status
        assert gw.keys.accounts["alice"].spent_sats == 6  # spend kept across the reload


async def test_cors_preflight_and_answers() -> None:
    data = {**config("hi"), "server": {"cors_origins": ["https://app.example.org"]}}
    async with gateway(data) as gw, aiohttp.ClientSession() as s:
        pre = {
            "Origin": "https://app.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        async with s.options(gw.url + "/v1/chat/completions", headers=pre) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.org"
            assert "POST" in r.headers["Access-Control-Allow-Methods"]
            assert r.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
        body = {"model": "m", "messages": [{"role": "user", "content": "q"}]}
        origin = {"Origin": "https://app.example.org"}
        async with s.post(gw.url + "/v1/chat/completions", json=body, headers=origin) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.org"
            assert "x-swarm-backend" in r.headers["Access-Control-Expose-Headers"]
        async with s.post(
            gw.url + "/v1/chat/completions", json={**body, "stream": True}, headers=origin
        ) as r:
            assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.org"
            await r.read()
        evil = {**pre, "Origin": "https://evil.example"}
        async with s.options(gw.url + "/v1/chat/completions", headers=evil) as r:
            assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
        async with s.post(
            gw.url + "/v1/chat/completions", json=body, headers={"Origin": "https://evil.example"}
        ) as r:
            assert "Access-Control-Allow-Origin" not in r.headers


async def test_cors_on_an_answer_built_without_headers() -> None:
    data = {**config("hi"), "server": {"cors_origins": ["*"]}}
    async with gateway(data) as gw, aiohttp.ClientSession() as s:
        origin = {"Origin": "https://any.example"}
        async with s.get(gw.url + "/metrics", headers=origin) as r:  # a bare answer
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == "https://any.example"
        async with s.get(gw.url + "/nope", headers=origin) as r:
            assert r.status == 404 and "Access-Control-Allow-Origin" in r.headers
