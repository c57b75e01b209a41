"""The gateway in front of real HTTP upstreams (the fake OpenAI-compatible and Ollama servers of
tests/support/upstreams.py on 127.0.0.1), driven by the openai client: the seed's config format and
its three auth types, Ollama, model discovery, upstream failures and failover."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.support.gateway import client, gateway, user
from tests.support.upstreams import FakeOllama, FakeOpenAI


@pytest.fixture
async def up() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(models=["gpt-fake", "small"], reply="fake answer here") as server:
        yield server


async def test_seed_format_with_all_three_auth_types() -> None:
    async with (
        FakeOpenAI(models=["b1"], bearer_token="tok", reply="from bearer") as bearer,
        FakeOpenAI(models=["b2"], basic_auth=("u", "p"), reply="from basic") as basic,
        FakeOpenAI(models=["b3"], api_header=("X-API-Key", "k"), reply="from header") as header,
    ):
        data = {
            "backends": [
                {
                    "name": "bearer",
                    "url": bearer.base_url,
                    "auth": {"type": "bearer", "token": "${TOKEN}"},
                },
                {
                    "name": "basic",
                    "url": basic.base_url,
                    "auth": {"type": "basic", "username": "u", "password": "p"},
                },
                {
                    "name": "header",
                    "url": header.base_url + "/v1",
                    "auth": {"type": "header", "name": "X-API-Key", "value": "k"},
                },
            ]
        }
        async with gateway(data, env={"TOKEN": "tok"}) as gw:
            c = client(gw)
            assert sorted(m.id for m in (await c.models.list()).data) == ["b1", "b2", "b3"]
            for model, text in (("b1", "from bearer"), ("b2", "from basic"), ("b3", "from header")):
                resp = await c.chat.completions.create(model=model, messages=user("q"))
                assert resp.choices[0].message.content == text
        assert bearer.completion_calls == basic.completion_calls == header.completion_calls == 1


async def test_chat_text_and_streams_through_an_openai_upstream(up: FakeOpenAI) -> None:
    async with gateway({"backends": [{"name": "up", "url": up.base_url}]}) as gw:
        c = client(gw)
        raw = await c.chat.completions.with_raw_response.create(
            model="gpt-fake", messages=user("hello"), max_tokens=2, temperature=0.1
        )
        resp = raw.parse()
        assert resp.choices[0].message.content == "fake answer"
        assert resp.choices[0].finish_reason == "length"
        assert resp.usage is not None and resp.usage.completion_tokens == 2
        assert raw.headers["x-swarm-backend"] == "up"
        sent = up.requests[-1].json
        assert sent["max_tokens"] == 2 and sent["temperature"] == 0.1
        text = await c.completions.create(model="small", prompt="p")
        assert text.choices[0].text == "fake answer here"
        stream = await c.chat.completions.create(
            model="gpt-fake",
            messages=user("x"),
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [ch async for ch in stream]
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == (
            "fake answer here"
        )
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
        assert up.stream_calls == 1


async def test_ollama_upstream() -> None:
    async with FakeOllama(models=["llama3:latest"], reply="ollama says hi") as ol:
        data = {"backends": [{"name": "ol", "type": "ollama", "url": ol.base_url}]}
        async with gateway(data) as gw:
            c = client(gw)
            assert [m.id for m in (await c.models.list()).data] == ["llama3:latest"]
            resp = await c.chat.completions.create(model="llama3:latest", messages=user("x"))
            assert resp.choices[0].message.content == "ollama says hi"
            stream = await c.completions.create(model="llama3:latest", prompt="x", stream=True)
            assert "".join([p.choices[0].text async for p in stream]) == "ollama says hi"


async def test_models_appear_and_disappear_on_refresh(up: FakeOpenAI) -> None:
    async with gateway({"backends": [{"name": "up", "url": up.base_url}]}) as gw:
        c = client(gw)
        assert sorted(m.id for m in (await c.models.list()).data) == ["gpt-fake", "small"]
        up.models = ["small", "brand-new"]
        await gw.refresh_models()
        assert sorted(m.id for m in (await c.models.list()).data) == ["brand-new", "small"]
        resp = await c.chat.completions.create(model="brand-new", messages=user("x"))
        assert resp.choices[0].message.content == "fake answer here"
        with pytest.raises(openai.NotFoundError):
            await c.chat.completions.create(model="gpt-fake", messages=user("x"))


async def test_refresh_interval_runs_discovery(up: FakeOpenAI) -> None:
    data = {"backends": [{"name": "up", "url": up.base_url}], "refresh_interval": 0.02}
    async with gateway(data) as gw:
        start = gw.refreshes
        up.models = ["later"]
        # the round that starts after the change must see it
        await asyncio.wait_for(gw.wait_refreshes(start + 2), 10)
        assert [m.id for m in (await client(gw).models.list()).data] == ["later"]


async def test_unreachable_upstream_at_start_does_not_stop_the_gateway(up: FakeOpenAI) -> None:
    data = {
        "backends": [
            {"name": "down", "url": "http://127.0.0.1:9"},
            {"name": "up", "url": up.base_url},
        ]
    }
    async with gateway(data) as gw:
        assert sorted(gw.models) == ["gpt-fake", "small"]


async def test_upstream_failures_map_to_status_codes(up: FakeOpenAI) -> None:
    data: dict[str, Any] = {
        "backends": [{"name": "up", "url": up.base_url, "timeout_s": 0.1}],
        "resilience": {"circuit_breaker": {"enabled": False}},
    }
    async with gateway(data) as gw:
        c = client(gw)
        up.fail_next(1, status=500, message="kaput")
        with pytest.raises(openai.InternalServerError) as e5:
            await c.chat.completions.create(model="small", messages=user("x"))
        assert e5.value.status_code == 502 and "kaput" in e5.value.message
        up.fail_next(1, status=429, retry_after=7)
        with pytest.raises(openai.RateLimitError) as e4:
            await c.chat.completions.create(model="small", messages=user("x"))
        assert e4.value.code == "rate_limit_exceeded"
        assert e4.value.response.headers["Retry-After"] == "7"
        up.fail_next(1, status=400, message="bad temperature")
        with pytest.raises(openai.BadRequestError) as e0:
            await c.chat.completions.create(model="small", messages=user("x"))
        assert "bad temperature" in e0.value.message
        up.latency_ms = 400
        with pytest.raises(openai.APIStatusError) as et:
            await c.chat.completions.create(model="small", messages=user("x"))
        assert et.value.status_code == 504 and et.value.code == "upstream_timeout"


async def test_wrong_upstream_credentials_are_a_502_not_a_401() -> None:
    async with FakeOpenAI(models=["m"], bearer_token="right") as guarded:
        data = {
            "backends": [
                {
                    "name": "g",
                    "url": guarded.base_url,
                    "models": ["m"],
                    "auth": {"type": "bearer", "token": "wrong"},
                }
            ]
        }
        async with gateway(data) as gw:
            with pytest.raises(openai.InternalServerError) as e:
                await client(gw).chat.completions.create(model="m", messages=user("x"))
            assert e.value.status_code == 502


async def test_failover_is_named_in_the_headers(up: FakeOpenAI) -> None:
    async with FakeOpenAI(models=["small"], reply="second") as second:
        data = {
            "backends": [
                {"name": "first", "url": up.base_url, "priority": 0},
                {"name": "second", "url": second.base_url, "priority": 1},
            ],
            "strategy": "priority",
        }
        async with gateway(data) as gw:
            up.fail_next(1, status=503)
            raw = await client(gw).chat.completions.with_raw_response.create(
                model="small", messages=user("x")
            )
            assert raw.parse().choices[0].message.content == "second"
            assert raw.headers["x-swarm-backend"] == "second"
            assert raw.headers["x-swarm-route-reason"].startswith("failover to 'second'")
            up.fail_next(1, status=503)
            stream = await client(gw).chat.completions.with_raw_response.create(
                model="small", messages=user("x"), stream=True
            )
            assert stream.headers["x-swarm-backend"] == "second"
            assert (
                "".join(
                    [ch.choices[0].delta.content or "" async for ch in stream.parse() if ch.choices]
                )
                == "second"
            )


async def test_upstream_stream_breaking_mid_way(up: FakeOpenAI) -> None:
    up.stream_fail_after = 1
    async with gateway({"backends": [{"name": "up", "url": up.base_url}]}) as gw:
        stream = await client(gw).chat.completions.create(
            model="small", messages=user("x"), stream=True
        )
        got: list[str] = []
        with pytest.raises(openai.APIError):
            async for ch in stream:
                if ch.choices:
                    got.append(ch.choices[0].delta.content or "")
        assert "".join(got) == "fake"


@pytest.mark.parametrize("transport", ["http1", "aiohttp"])
def test_upstream_headers_that_frame_the_request_are_a_config_error(transport: str) -> None:
    from router.gateway.build import build_router
    from router.gateway.config import parse_config
    from router.gateway.errors import ConfigError
    from tests.support.gateway import config

    backend = {"name": "up", "url": "http://127.0.0.1:1", "transport": transport}
    cfg = parse_config(config({"backends": [{**backend, "headers": {"Content-Length": "5"}}]}))
    with pytest.raises(ConfigError, match=r"backends\.up: .*Content-Length.*sets it itself"):
        build_router(cfg)
    # Host is one the config may set (a virtual host reached by address)
    build_router(parse_config(config({"backends": [{**backend, "headers": {"Host": "h"}}]})))
