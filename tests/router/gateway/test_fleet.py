"""Gateways sharing one PostgreSQL (spend) and one Redis (key limits, breakers, the response
cache). Three `swarm serve` processes with requests spread over them by the test: no key spends
beyond its budget, an rpm limit holds across the instances, and every instance reports the same
totals. Gateways in this process on one Redis: a breaker that one trips is open on the others
(which refuse without calling the backend), a gateway that starts later reads it, and a
half-open backend gets one probe across all of them. What happens when a store goes away is
tests/reliability/test_shared_state_faults.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from router.gateway.app import Gateway
from router.gateway.config import parse_config
from tests.support.fleet import fleet, spread, usage
from tests.support.gateway import client, gateway, hold, mock_of, user
from tests.support.gateway import config as gateway_config
from tests.support.servers import Redis


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


async def test_three_gateways_share_budgets_limits_and_totals(
    tmp_path: Path, pg_url: str, redis_server: Redis
) -> None:
    async with fleet(tmp_path, config(pg_url, redis_server.url)) as gws:
        urls = [g.url for g in gws]
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


# --- breakers shared through Redis ---------------------------------------------------------------


def breaker_config(tmp: Path, redis_url: str, name: str, **breaker: Any) -> dict[str, Any]:
    """One gateway of the fleet: its own SQLite state, the shared Redis."""
    return {
        "backends": [{"name": "flaky", "type": "mock", "models": ["m"]}],
        "resilience": {"circuit_breaker": breaker},
        "state": {"url": f"sqlite:///{tmp}/{name}.sqlite", "redis": redis_url},
    }


async def listening(*gws: Gateway, times: int = 1) -> None:
    """Each gateway has subscribed (``times`` times) to the others' transitions."""
    for gw in gws:
        assert gw.shared_breakers is not None
        await asyncio.wait_for(gw.shared_breakers.wait_for(subscribed=times), 10)


async def adopted(gw: Gateway, n: int) -> None:
    assert gw.shared_breakers is not None
    await asyncio.wait_for(gw.shared_breakers.wait_for(adopted=n), 10)


async def refused(gw: Gateway) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as err:
        await client(gw).chat.completions.create(model="m", messages=user("q"))
    return err.value


async def test_a_breaker_that_opens_on_one_gateway_is_open_on_all(
    tmp_path: Path, redis_server: Redis
) -> None:
    def cfg(name: str) -> dict[str, Any]:
        return breaker_config(
            tmp_path, redis_server.url, name, failure_threshold=2, reset_timeout_s=30
        )

    async with gateway(cfg("a")) as a, gateway(cfg("b")) as b:
        await listening(a, b)
        mock_of(a, "flaky").fail_next(2)
        for _ in range(2):
            assert (await refused(a)).status_code == 502
        assert a.router.breaker_state("flaky") == "open"
        await adopted(b, 1)
        assert b.router.breaker_state("flaky") == "open"
        err = await refused(b)  # refused at b without asking its backend
        assert err.status_code == 503 and err.code == "backend_unavailable"
        assert 25 <= int(err.response.headers["retry-after"]) <= 30
        assert mock_of(b, "flaky").calls == 0
        assert b.router.metrics()["flaky"].breaker_trips == 0  # a's trip, not b's
        # A gateway that starts later reads the fleet's breakers from Redis.
        async with gateway(cfg("c")) as c:
            await listening(c)
            assert c.router.breaker_state("flaky") == "open"
            assert (await refused(c)).status_code == 503
            assert mock_of(c, "flaky").calls == 0


async def test_a_half_open_backend_gets_one_probe_across_the_gateways(
    tmp_path: Path, redis_server: Redis
) -> None:
    def cfg(name: str) -> dict[str, Any]:
        return breaker_config(
            tmp_path, redis_server.url, name, failure_threshold=1, reset_timeout_s=0
        )

    async with gateway(cfg("a")) as a, gateway(cfg("b")) as b:
        await listening(a, b)
        mock_of(a, "flaky").fail_next(1)
        assert (await refused(a)).status_code == 502
        await adopted(b, 1)  # open everywhere; its reset timeout (0 s) has passed: probe time
        held = hold(a, "flaky")
        probe = asyncio.create_task(
            client(a).chat.completions.create(model="m", messages=user("probe"))
        )
        await held.arrivals(1)  # a's probe is at the backend, holding the fleet's probe
        err = await refused(b)
        assert err.status_code == 503 and err.code == "backend_unavailable"
        assert mock_of(b, "flaky").calls == 0  # b did not send a second probe
        assert b.router.breaker_state("flaky") == "half_open"
        held.gate.set()
        assert (await probe).choices[0].message.content
        await adopted(b, 2)  # a's probe succeeded: closed everywhere
        assert b.router.breaker_state("flaky") == "closed"
        await client(b).chat.completions.create(model="m", messages=user("q"))
        assert mock_of(b, "flaky").calls == 1


async def test_while_redis_is_away_breakers_are_each_gateways_and_then_shared_again(
    tmp_path: Path, redis_server: Redis
) -> None:
    def cfg(name: str) -> dict[str, Any]:
        return breaker_config(
            tmp_path, redis_server.url, name, failure_threshold=1, reset_timeout_s=30
        )

    async with gateway(cfg("a")) as a, gateway(cfg("b")) as b:
        await listening(a, b)
        redis_server.kill()
        mock_of(a, "flaky").fail_next(1)
        assert (await refused(a)).status_code == 502  # a trips its own breaker
        assert a.router.breaker_state("flaky") == "open"
        await client(b).chat.completions.create(model="m", messages=user("q"))
        assert b.router.breaker_state("flaky") == "closed"  # b's is its own meanwhile
        redis_server.start()
        await listening(a, b, times=2)  # they subscribe again by themselves
        mock_of(b, "flaky").fail_next(1)
        assert (await refused(b)).status_code == 502
        await adopted(a, 1)  # shared again: b's trip reaches a
        assert a.router.metrics()["flaky"].breaker_trips == 1  # its own from before
        assert (await refused(a)).status_code == 503
        assert mock_of(a, "flaky").calls == 1


async def test_a_reloaded_gateway_keeps_sharing_its_breakers(
    tmp_path: Path, redis_server: Redis
) -> None:
    def cfg(name: str) -> dict[str, Any]:
        return breaker_config(
            tmp_path, redis_server.url, name, failure_threshold=1, reset_timeout_s=30
        )

    async def reload(gw: Gateway, name: str) -> None:  # a new router, its breakers closed
        await gw.reload(parse_config(gateway_config(cfg(name)), env={}))

    async with gateway(cfg("a")) as a, gateway(cfg("b")) as b:
        await listening(a, b)
        await reload(b, "b")
        mock_of(b, "flaky").fail_next(1)
        assert (await refused(b)).status_code == 502  # the new router's trip is shared
        await adopted(a, 1)
        assert (await refused(a)).status_code == 503
        await reload(a, "a")
        await adopted(a, 2)  # the new router read the fleet's breakers from Redis
        assert a.router.breaker_state("flaky") == "open"
        assert (await refused(a)).status_code == 503
        assert mock_of(a, "flaky").calls == 0
