"""The response cache: identical deterministic requests answered once, through the official
openai client; TTL and LRU bounds on the pure cache."""

from __future__ import annotations

import asyncio

import openai
import pytest

from router.gateway.cache import Cached, ResponseCache, cache_key
from tests.support.gateway import HeldMock, client, gateway, user

CFG = {
    "backends": [{"name": "paid", "type": "mock", "models": ["m"], "cost_sats": 3}],
    "keys": [{"name": "alice", "key": "sk-a", "budget_sats": 100}],
    "cache": {"ttl_s": 300, "max_entries": 100},
}


async def test_identical_deterministic_requests_are_answered_once_and_cost_nothing() -> None:
    async with gateway(CFG) as gw:
        held = HeldMock("paid").with_models("m").with_cost(sats=3)
        gw.router._states["paid"].backend.inner = held  # type: ignore[attr-defined]
        c = client(gw, "sk-a")

        async def ask(**kw: object) -> tuple[str, str]:
            raw = await c.chat.completions.with_raw_response.create(
                model="m",
                messages=user("2+2?"),
                **kw,  # type: ignore[arg-type]
            )
            return raw.headers.get("x-swarm-cache", ""), raw.headers["x-swarm-cost-sats"]

        together = [asyncio.create_task(ask(temperature=0)) for _ in range(5)]
        await held.arrivals(1)
        held.gate.set()
        answers = await asyncio.gather(*together)
        assert held.calls == 1  # five identical requests, one upstream call
        assert sorted(answers) == [("hit", "0")] * 4 + [("miss", "3")]
        assert await ask(temperature=0) == ("hit", "0")
        assert await ask(seed=7) == ("miss", "3")  # a seed is deterministic too
        assert await ask(temperature=0.7) == ("", "3")  # sampling: never cached
        assert await ask(temperature=0.7) == ("", "3")
        assert held.calls == 4
        assert gw.keys.accounts["alice"].spent_sats == 3 * held.calls  # hits are free


def test_cache_bounds_and_keys() -> None:
    cache = ResponseCache(ttl_s=10, max_entries=2)
    body = {"model": "m", "messages": [], "temperature": 0}
    k1 = cache_key("/v1/chat/completions", "m", body)
    assert k1 is not None
    assert cache_key("/v1/chat/completions", "m", {**body, "stream": True}) is None
    assert cache_key("/v1/chat/completions", "m", {**body, "temperature": 1}) is None
    assert cache_key("/v1/completions", "m", body) != k1
    assert cache_key("/v1/chat/completions", "m2", body) != k1
    entry = Cached(b"{}", {}, stored_at=100.0)
    for k in ("a", "b", "c"):
        cache._entries[k] = entry
        cache.finish(k, entry)
    assert list(cache._entries) == ["b", "c"]  # the least recently used went
    assert cache.get("b", now=105.0) is entry
    assert cache.get("b", now=111.0) is None  # past its ttl
    cache.finish("big", Cached(b"x" * (2 << 20), {}, 100.0))
    assert cache.get("big", now=100.0) is None  # too large to keep


async def test_a_failed_answer_is_not_cached() -> None:
    async with gateway(CFG) as gw:
        mock = gw.router._states["paid"].backend.inner  # type: ignore[attr-defined]
        mock.fail_next(1)
        c = client(gw, "sk-a")
        with pytest.raises(openai.APIStatusError):
            await c.chat.completions.create(model="m", messages=user("q"), temperature=0)
        ok = await c.chat.completions.with_raw_response.create(
            model="m", messages=user("q"), temperature=0
        )
        assert ok.headers["x-swarm-cache"] == "miss"
