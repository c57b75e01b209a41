"""The gateway's money limits through the official openai client: token caps, every price field
charged, and concurrent requests that hold their most before they are sent."""

from __future__ import annotations

import asyncio

import openai
import pytest

from tests.support.gateway import HeldMock, client, gateway, user

CONFIG = {
    "backends": [
        {"name": "capped", "type": "mock", "models": ["small"], "max_tokens": 64},
        {
            "name": "flat",
            "type": "mock",
            "models": ["flat"],
            "usage": [20, 100],
            "cost_per_1k_tokens_usd": 0.01,
        },
    ],
    "server": {"max_tokens": 1000, "default_max_tokens": 256},
    "keys": [{"name": "alice", "key": "sk-alice", "budget_usd": 0.005}],
}


async def test_max_tokens_above_the_gateway_or_backend_limit_is_400() -> None:
    async with gateway(CONFIG) as gw:
        c = client(gw, "sk-alice")
        with pytest.raises(openai.BadRequestError) as e:
            await c.chat.completions.create(model="flat", messages=user("x"), max_tokens=1001)
        assert e.value.param == "max_tokens" and "limit 1000" in e.value.message
        with pytest.raises(openai.BadRequestError) as e:
            await c.chat.completions.create(model="small", messages=user("x"), max_tokens=65)
        assert "limit 64 of the backends serving 'small'" in e.value.message
        ok = await c.chat.completions.create(model="small", messages=user("x"), max_tokens=64)
        assert ok.choices[0].message.content


async def test_a_flat_price_per_token_is_charged_and_ends_a_usd_budget() -> None:
    async with gateway(CONFIG) as gw:
        c = client(gw, "sk-alice")
        raw = await c.chat.completions.with_raw_response.create(
            model="flat", messages=user("x"), max_tokens=100
        )
        assert raw.headers["x-swarm-cost-usd"] == "0.00120000"  # 120 tokens at $0.01 per 1k
        assert gw.keys.accounts["alice"].spent_usd == pytest.approx(0.0012)
        for _ in range(2):
            await c.chat.completions.create(model="flat", messages=user("x"), max_tokens=100)
        # $0.0036 spent: the next one may cost up to (97 + 100) tokens, which would not fit
        with pytest.raises(openai.RateLimitError) as e:
            await c.chat.completions.create(model="flat", messages=user("x"), max_tokens=100)
        assert "($0.003600 spent)" in e.value.message


async def test_concurrent_requests_hold_their_most_before_they_are_sent() -> None:
    cfg = {
        "backends": [{"name": "held", "type": "mock", "models": ["m"], "cost_sats": 5}],
        "keys": [{"name": "alice", "key": "sk-alice", "budget_sats": 12}],
    }
    async with gateway(cfg) as gw:
        held = HeldMock("held").with_models("m").with_cost(sats=5)
        gw.router._states["held"].backend.inner = held  # type: ignore[attr-defined]
        c = client(gw, "sk-alice")
        tasks = [
            asyncio.create_task(c.chat.completions.create(model="m", messages=user("x")))
            for _ in range(5)
        ]
        await held.arrivals(2)  # two hold 5 sats each; the other three are refused at once
        while sum(t.done() for t in tasks) < 3:
            pending = [t for t in tasks if not t.done()]
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        refused = [t for t in tasks if t.done()]
        assert len(refused) == 3
        assert all(isinstance(t.exception(), openai.RateLimitError) for t in refused)
        assert gw.keys.accounts["alice"].reserved_sats == 10
        held.gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(not isinstance(r, BaseException) for r in results) == 2
        assert gw.keys.accounts["alice"].spent_sats == 10
        assert gw.keys.accounts["alice"].reserved_sats == 0
