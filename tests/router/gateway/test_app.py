"""The gateway driven by the official openai client, over mock backends (fake HTTP upstreams
are in test_upstreams.py): completions, streaming, errors, auth, budgets, metrics, usage,
limits and shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest

from router.errors import BackendError
from router.request import LmRequest, Sampling
from tests.support.gateway import client, gateway, hold, mock_of, user

MOCKS: dict[str, Any] = {
    "backends": [
        {
            "name": "alpha",
            "type": "mock",
            "models": ["m1", "shared"],
            "response": "one two three",
            "usage": [4, 3],
        },
        {
            "name": "beta",
            "type": "mock",
            "models": ["m2", "shared"],
            "response": "beta says hi",
            "usage": [2, 3],
            "cost_sats": 7,
        },
    ],
    "aliases": {"fast": "m1"},
}


async def test_list_and_retrieve_models() -> None:
    async with gateway(MOCKS) as gw:
        c = client(gw)
        page = await c.models.list()
        owners = {m.id: m.owned_by for m in page.data}
        assert owners == {"m1": "alpha", "m2": "beta", "shared": "alpha", "fast": "alpha"}
        m = await c.models.retrieve("m2")
        assert m.id == "m2" and m.owned_by == "beta"
        with pytest.raises(openai.NotFoundError):
            await c.models.retrieve("nope")


async def test_chat_completion_with_routing_headers() -> None:
    async with gateway(MOCKS) as gw:
        raw = await client(gw).chat.completions.with_raw_response.create(
            model="m2", messages=user("hello")
        )
        resp = raw.parse()
        assert resp.object == "chat.completion" and resp.model == "m2"
        assert resp.choices[0].message.content == "beta says hi"
        assert resp.choices[0].message.role == "assistant"
        assert resp.choices[0].finish_reason == "stop"
        assert resp.usage is not None and resp.usage.total_tokens == 5
        assert raw.headers["x-swarm-backend"] == "beta"
        assert "m2" in raw.headers["x-swarm-route-reason"]
        assert raw.headers["x-swarm-cost-sats"] == "7"
        assert mock_of(gw, "beta").last_prompt == [{"role": "user", "content": "hello"}]


async def test_text_completion_and_alias() -> None:
    async with gateway(MOCKS) as gw:
        raw = await client(gw).completions.with_raw_response.create(
            model="fast", prompt="say it", max_tokens=9, temperature=0.5
        )
        resp = raw.parse()
        assert resp.object == "text_completion"
        assert resp.choices[0].text == "one two three" and resp.model == "m1"
        assert raw.headers["x-swarm-backend"] == "alpha"
        assert raw.headers["x-swarm-cost-sats"] == "0"
        alpha = mock_of(gw, "alpha")
        assert alpha.last_prompt == "say it" and alpha.last_request is not None
        assert alpha.last_request.sampling == Sampling(temperature=0.5)


async def test_chat_stream_with_usage() -> None:
    async with gateway(MOCKS) as gw:
        stream = await client(gw).chat.completions.create(
            model="m1", messages=user("x"), stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 7
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


async def test_streams_without_usage_and_text_stream() -> None:
    async with gateway(MOCKS) as gw:
        c = client(gw)
        raw = await c.chat.completions.with_raw_response.create(
            model="m2", messages=user("x"), stream=True
        )
        assert raw.headers["content-type"].startswith("text/event-stream")
        assert raw.headers["x-swarm-backend"] == "beta"
        chunks = [ch async for ch in raw.parse()]
        assert all(ch.choices for ch in chunks) and all(ch.usage is None for ch in chunks)
        tstream = await c.completions.create(model="m1", prompt="p", stream=True)
        parts = [ch async for ch in tstream]
        assert "".join(p.choices[0].text for p in parts) == "one two three"
        assert parts[-1].choices[0].finish_reason == "stop"


async def test_raw_sse_bytes_end_with_done() -> None:
    async with gateway(MOCKS) as gw, aiohttp.ClientSession() as s:
        body = {"model": "m1", "messages": user("x"), "stream": True}
        async with s.post(gw.url + "/v1/chat/completions", json=body) as r:
            raw = await r.read()
    events = raw.split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    assert all(e.startswith(b"data: {") for e in events[:-2])


async def test_stream_error_after_start_reaches_the_client() -> None:
    async with gateway(MOCKS) as gw:
        mock_of(gw, "alpha").with_stream_failure(1)
        stream = await client(gw).chat.completions.create(
            model="m1", messages=user("x"), stream=True
        )
        got: list[str] = []
        with pytest.raises(openai.APIError) as e:
            async for ch in stream:
                got.append(ch.choices[0].delta.content or "")
        assert "".join(got) == "one" and "stream" in str(e.value.message)


async def test_stream_error_before_start_is_a_json_error() -> None:
    async with gateway(MOCKS) as gw:
        mock_of(gw, "alpha").fail_next(1, lambda: BackendError("down", status=500))
        with pytest.raises(openai.APIStatusError) as e:
            await client(gw).chat.completions.create(model="m1", messages=user("x"), stream=True)
        assert e.value.status_code == 502


async def test_errors_in_openai_shape() -> None:
    async with gateway(MOCKS) as gw:
        c = client(gw)
        with pytest.raises(openai.NotFoundError) as nf:
            await c.chat.completions.create(model="unknown", messages=user("x"))
        assert nf.value.code == "model_not_found" and nf.value.param == "model"
        with pytest.raises(openai.BadRequestError) as br:
            await c.chat.completions.create(model="m1", messages=user("x"), n=3)
        assert br.value.param == "n" and br.value.type == "invalid_request_error"
        with pytest.raises(openai.BadRequestError):
            await c.chat.completions.create(model="m1", messages=[])
        mock_of(gw, "alpha").fail_next(1, lambda: BackendError("upstream exploded", status=503))
        with pytest.raises(openai.InternalServerError) as ise:
            await c.chat.completions.create(model="m1", messages=user("x"))
        assert ise.value.status_code == 502 and "upstream exploded" in ise.value.message
        async with aiohttp.ClientSession() as s:
            async with s.post(gw.url + "/v1/chat/completions", data=b"{not json") as r:
                assert r.status == 400
                err = (await r.json())["error"]
        assert set(err) == {"message", "type", "param", "code"}
        assert "not valid JSON" in err["message"]


async def test_request_too_large_is_413() -> None:
    async with gateway({**MOCKS, "server": {"max_body_bytes": 2048}}) as gw:
        with pytest.raises(openai.APIStatusError) as e:
            await client(gw).chat.completions.create(model="m1", messages=user("x" * 5000))
        assert e.value.status_code == 413 and e.value.code == "request_too_large"
        async with aiohttp.ClientSession() as s:

            async def chunks() -> Any:  # no Content-Length: the limit applies while reading
                for _ in range(10):
                    yield b"x" * 1000

            async with s.post(gw.url + "/v1/completions", data=chunks()) as r:
                assert r.status == 413
                assert (await r.json())["error"]["code"] == "request_too_large"


async def test_breaker_open_is_503_and_gateway_timeout_is_504() -> None:
    data = {
        "backends": [{"name": "solo", "type": "mock", "models": ["m"]}],
        "resilience": {
            "circuit_breaker": {"failure_threshold": 1, "reset_timeout_s": 60},
            "request_timeout_s": 0.2,
        },
    }
    async with gateway(data) as gw:
        c = client(gw)
        mock = mock_of(gw, "solo")
        mock.fail_next(1, lambda: BackendError("boom", status=500))
        with pytest.raises(openai.InternalServerError):
            await c.chat.completions.create(model="m", messages=user("x"))
        with pytest.raises(openai.APIStatusError) as e:
            await c.chat.completions.create(model="m", messages=user("x"))
        assert e.value.status_code == 503 and e.value.code == "backend_unavailable"
        assert e.value.response.headers["Retry-After"] == "60"
    async with gateway(data) as gw:
        mock_of(gw, "solo").with_gate(asyncio.Event())  # never released
        with pytest.raises(openai.APIStatusError) as e:
            await client(gw).chat.completions.create(model="m", messages=user("x"))
        assert e.value.status_code == 504 and e.value.code == "gateway_timeout"


AUTHED: dict[str, Any] = {
    **MOCKS,
    "keys": [
        {"name": "alice", "key": "sk-alice", "budget_sats": 10},
        {"name": "bob", "key_env": "BOB_KEY", "budget_usd": 0.001},
    ],
    "backends": [
        *MOCKS["backends"],
        {
            "name": "paid",
            "type": "mock",
            "models": ["priced"],
            "usage": [500, 500],
            "cost_per_1k_input_usd": 0.001,
            "cost_per_1k_output_usd": 0.001,
        },
    ],
}


async def test_api_keys() -> None:
    async with gateway(AUTHED, env={"BOB_KEY": "sk-bob"}) as gw:
        with pytest.raises(openai.AuthenticationError) as e:
            await client(gw, "wrong").chat.completions.create(model="m1", messages=user("x"))
        assert e.value.status_code == 401 and e.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            await client(gw, "wrong").models.list()
        ok = await client(gw, "sk-bob").chat.completions.create(model="m1", messages=user("x"))
        assert ok.choices[0].message.content == "one two three"
        async with aiohttp.ClientSession() as s:
            async with s.post(gw.url + "/v1/completions", json={"model": "m1", "prompt": "x"}) as r:
                assert r.status == 401
                assert "didn't provide an API key" in (await r.json())["error"]["message"]
            async with s.get(gw.url + "/healthz") as r:  # health and metrics need no key
                assert r.status == 200 and (await r.json())["status"] == "ok"
            async with s.get(gw.url + "/metrics") as r:
                assert r.status == 200


async def test_budget_in_sats_gives_429() -> None:
    async with gateway(AUTHED, env={"BOB_KEY": "sk-bob"}) as gw:
        alice = client(gw, "sk-alice")
        await alice.chat.completions.create(model="m2", messages=user("x"))  # 7 sats
        # A second 7-sat request would overspend: it is refused before it is sent.
        with pytest.raises(openai.RateLimitError) as e:
            await alice.chat.completions.create(model="m2", messages=user("x"))
        assert e.value.code == "insufficient_quota"
        assert "alice" in e.value.message and "3 of its 10 sats left" in e.value.message
        # a request that costs nothing still fits; another key is not affected
        await alice.chat.completions.create(model="m1", messages=user("x"))
        await client(gw, "sk-bob").chat.completions.create(model="m2", messages=user("x"))
        assert gw.keys.accounts["alice"].spent_sats == 7


async def test_budget_in_usd_gives_429() -> None:
    async with gateway(AUTHED, env={"BOB_KEY": "sk-bob"}) as gw:
        bob = client(gw, "sk-bob")
        # The budget reserves max_tokens at the output price before the request is sent:
        # the default 1024 tokens would not fit $0.001, 500 do.
        with pytest.raises(openai.RateLimitError) as e:
            await bob.chat.completions.create(model="priced", messages=user("x"))
        assert "bob" in e.value.message and "may cost up to $0.001121" in e.value.message
        raw = await bob.chat.completions.with_raw_response.create(
            model="priced", messages=user("x"), max_tokens=500
        )
        assert raw.headers["x-swarm-cost-usd"] == "0.00100000"
        with pytest.raises(openai.RateLimitError) as e:
            await bob.completions.create(model="priced", prompt="x", max_tokens=1)
        assert "bob" in e.value.message and "($0.001000 spent)" in e.value.message


async def test_usage_endpoint() -> None:
    async with gateway(AUTHED, env={"BOB_KEY": "sk-bob"}) as gw, aiohttp.ClientSession() as s:
        alice = client(gw, "sk-alice")
        await alice.chat.completions.create(model="m2", messages=user("x"))
        stream = await alice.chat.completions.create(model="m1", messages=user("x"), stream=True)
        async for _ in stream:
            pass
        async with s.get(gw.url + "/v1/usage") as r:
            assert r.status == 401
        async with s.get(gw.url + "/v1/usage", headers={"Authorization": "Bearer sk-alice"}) as r:
            rep = await r.json()
    assert rep["total_calls"] == 2 and rep["total_cost_sats"] == 7
    assert (
        rep["by_model"]["m2"]["call_count"] == 1 and rep["by_backend"]["alpha"]["call_count"] == 1
    )
    assert rep["key"]["name"] == "alice" and rep["key"]["spent_sats"] == 7
    assert rep["key"]["requests"] == 2


async def test_metrics() -> None:
    async with gateway(MOCKS) as gw, aiohttp.ClientSession() as s:
        c = client(gw)
        await c.chat.completions.create(model="m2", messages=user("x"))
        await c.completions.create(model="m1", prompt="x")
        with pytest.raises(openai.NotFoundError):
            await c.chat.completions.create(model="zz", messages=user("x"))
        async with s.get(gw.url + "/metrics") as r:
            text = await r.text()
            assert r.headers["Content-Type"].startswith("text/plain")
    lines = set(text.splitlines())
    assert 'swarm_gateway_requests_total{endpoint="/v1/chat/completions",status="200"} 1.0' in lines
    assert 'swarm_gateway_requests_total{endpoint="/v1/chat/completions",status="404"} 1.0' in lines
    assert 'swarm_gateway_requests_total{endpoint="/v1/completions",status="200"} 1.0' in lines
    assert (
        'swarm_gateway_errors_total{code="model_not_found",endpoint="/v1/chat/completions"} 1.0'
        in lines
    )
    assert 'swarm_gateway_sats_spent_total{backend="beta"} 7.0' in lines
    assert 'swarm_gateway_tokens_total{backend="alpha",kind="completion"} 3.0' in lines
    assert 'swarm_gateway_breaker_state{backend="alpha"} 0.0' in lines
    assert any(
        ln.startswith('swarm_gateway_request_duration_seconds_count{endpoint="/v1/completions"}')
        for ln in lines
    )


async def test_graceful_shutdown_finishes_in_flight_requests() -> None:
    async with gateway(MOCKS) as gw:
        held = hold(gw, "alpha")
        c = client(gw)
        pending = asyncio.create_task(c.chat.completions.create(model="m1", messages=user("x")))
        streaming = asyncio.create_task(c.completions.create(model="m1", prompt="x", stream=True))
        await asyncio.wait_for(held.arrivals(2), 10)
        stopping = asyncio.create_task(gw.stop(grace_s=10))
        await asyncio.wait_for(gw.draining.wait(), 10)
        with pytest.raises(openai.APIConnectionError):  # no new connections
            await client(gw).models.list()
        assert not stopping.done()
        held.gate.set()
        resp = await pending
        assert resp.choices[0].message.content == "one two three"
        text = "".join([p.choices[0].text async for p in await streaming])
        assert text == "one two three"
        assert await stopping is True


async def test_stream_stalling_past_the_request_timeout_ends_with_an_error_event() -> None:
    data = {
        "backends": [{"name": "solo", "type": "mock", "models": ["m"], "response": "a b c"}],
        "resilience": {"request_timeout_s": 0.3},
    }
    async with gateway(data) as gw:
        held = hold(gw, "solo")
        held.with_stream_failure(None)
        gate_after_first = asyncio.Event()
        inner_stream = held.send_stream

        async def stalls(request: LmRequest) -> Any:  # first chunk, then nothing
            async for i, ch in _enumerate(inner_stream(request)):
                yield ch
                if i == 0:
                    await gate_after_first.wait()

        held.send_stream = stalls  # type: ignore[method-assign]
        held.gate.set()
        stream = await client(gw).chat.completions.create(
            model="m", messages=user("x"), stream=True
        )
        with pytest.raises(openai.APIError) as e:
            async for _ in stream:
                pass
        assert "longer than the gateway allows" in e.value.message


async def _enumerate(agen: Any) -> Any:
    i = 0
    async for x in agen:
        yield i, x
        i += 1


async def test_router_rate_limit_is_429_with_retry_after() -> None:
    data = {
        "backends": [
            {
                "name": "slow",
                "type": "mock",
                "models": ["m"],
                "rate_limit": {"requests_per_second": 0.01, "burst": 1},
            }
        ]
    }
    async with gateway(data) as gw:
        c = client(gw)
        await c.chat.completions.create(model="m", messages=user("x"))
        with pytest.raises(openai.RateLimitError) as e:
            await c.chat.completions.create(model="m", messages=user("x"))
        assert e.value.code == "rate_limit_exceeded"
        assert int(e.value.response.headers["Retry-After"]) >= 60


async def test_deep_health_check_asks_every_backend() -> None:
    async with gateway(MOCKS) as gw, aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/healthz?deep=1") as r:
            assert r.status == 200
            assert (await r.json())["backends"] == {"alpha": True, "beta": True}
        mock_of(gw, "alpha").healthy = False
        mock_of(gw, "beta").healthy = False
        async with s.get(gw.url + "/healthz?deep=1") as r:
            assert r.status == 503 and (await r.json())["status"] == "unhealthy"


async def test_unknown_paths_and_methods_get_json_errors() -> None:
    async with gateway(MOCKS) as gw, aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/v1/chat/completions") as r:
            assert r.status == 405 and r.headers["Allow"] == "POST"
            assert (await r.json())["error"]["code"] == "method_not_allowed"
        async with s.post(gw.url + "/v1/rerank", json={}) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "unknown_url"


async def test_absurdly_nested_json_is_400_not_a_crash() -> None:
    async with gateway(MOCKS) as gw, aiohttp.ClientSession() as s:
        body = b"[" * 100_000 + b"]" * 100_000
        async with s.post(gw.url + "/v1/chat/completions", data=body) as r:
            assert r.status == 400
            assert "nested too deeply" in (await r.json())["error"]["message"]
        c = client(gw)  # and the gateway goes on
        resp = await c.chat.completions.create(model="m1", messages=user("x"))
        assert resp.choices[0].message.content == "one two three"
