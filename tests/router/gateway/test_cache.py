"""The response cache: identical deterministic requests answered once, through the official
openai client; TTL and LRU bounds on the pure cache. Gateways on one Redis share it: an answer
one of them got is a hit on the others, with the same TTL, entry cap and size bound."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import openai
import pytest
import redis

from router.gateway.app import Gateway
from router.gateway.cache import MAX_ENTRY_BYTES, Cached, ResponseCache, cache_key
from router.gateway.shared_cache import MAX_HEADER_BYTES, decode, encode
from tests.support.gateway import HeldMock, client, gateway, mock_of, user
from tests.support.servers import Redis

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


# --- the cache shared through Redis --------------------------------------------------------------


def shared_config(tmp: Path, redis_url: str, name: str, max_entries: int = 100) -> dict[str, Any]:
    """One gateway of a fleet: its own SQLite state, the shared Redis."""
    return {
        **CFG,
        "cache": {"ttl_s": 300, "max_entries": max_entries},
        "state": {"url": f"sqlite:///{tmp}/{name}.sqlite", "redis": redis_url},
    }


async def ask(gw: Gateway, prompt: str = "2+2?", **kw: Any) -> tuple[str, str]:
    raw = await client(gw, "sk-a").chat.completions.with_raw_response.create(
        model="m", messages=user(prompt), **kw
    )
    return raw.headers.get("x-swarm-cache", ""), raw.headers["x-swarm-cost-sats"]


async def test_an_answer_one_gateway_got_is_a_hit_on_another(
    tmp_path: Path, redis_server: Redis
) -> None:
    async with (
        gateway(shared_config(tmp_path, redis_server.url, "a")) as a,
        gateway(shared_config(tmp_path, redis_server.url, "b")) as b,
    ):
        assert await ask(a, temperature=0) == ("miss", "3")
        assert await ask(b, temperature=0) == ("hit", "0")  # a's answer, from Redis
        assert mock_of(a, "paid").calls == 1 and mock_of(b, "paid").calls == 0
        assert b.keys.accounts["alice"].spent_sats == 0  # a hit is free on every gateway
        assert await ask(b, temperature=0.7) == ("", "3")  # sampling: never cached
        assert await ask(a, temperature=0.7) == ("", "3")
        assert mock_of(a, "paid").calls == 2 and mock_of(b, "paid").calls == 1
        r = redis.Redis.from_url(redis_server.url)
        try:
            (entry,) = r.keys("swarm:cache:entry:*")
            assert 290_000 < r.pttl(entry) <= 300_000  # the cache's ttl_s, in Redis
        finally:
            r.close()


async def test_the_shared_cache_keeps_max_entries_least_recently_used(
    tmp_path: Path, redis_server: Redis
) -> None:
    async with (
        gateway(shared_config(tmp_path, redis_server.url, "a", max_entries=2)) as a,
        gateway(shared_config(tmp_path, redis_server.url, "b", max_entries=2)) as b,
    ):
        for prompt in ("one", "two"):
            assert await ask(a, prompt, temperature=0) == ("miss", "3")
        assert await ask(b, "one", temperature=0) == ("hit", "0")  # "one" is used again
        assert await ask(a, "three", temperature=0) == ("miss", "3")  # evicts "two"
        r = redis.Redis.from_url(redis_server.url)
        try:
            assert len(r.keys("swarm:cache:entry:*")) == 2
        finally:
            r.close()
        assert await ask(b, "two", temperature=0) == ("miss", "3")
        assert await ask(b, "three", temperature=0) == ("hit", "0")


def test_stored_entries_are_bounded_and_checked() -> None:
    entry = Cached(b'{"id": 1}', {"x-swarm-backend": "paid"}, stored_at=0.0)
    raw = encode(entry)
    assert raw is not None and decode(raw, 5.0) == Cached(entry.body, entry.headers, 5.0)
    assert encode(Cached(b"x" * (MAX_ENTRY_BYTES + 1), {}, 0.0)) is None  # too large to share
    assert encode(Cached(b"{}", {"h": "v" * MAX_HEADER_BYTES}, 0.0)) is None
    for bad in (b"no headers", b'["a list"]\n{}', b'{"h": 1}\n{}', b"\xff\n{}"):
        with pytest.raises(ValueError):
            decode(bad, 0.0)
