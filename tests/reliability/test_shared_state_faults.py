"""Three ``swarm serve`` processes sharing one PostgreSQL (spend) and one Redis (key limits,
breakers, the response cache) under load, while the stores fail and come back. The swarm backend
pays for real: a relay, an NWC wallet service over a SQLite Lightning ledger, and two provider
nodes that bill 2 sats a job after answering.

- Redis dies mid-load: every request is still served; each gateway warns once; limits count per
  process (a key's ``max_parallel`` of 2 lets 2 through on each gateway) and the cache is each
  gateway's own; money is not affected.
- Redis comes back: each gateway says so and shares again by itself (``max_parallel`` holds
  across them, an answer one got is a hit on the others).
- PostgreSQL dies mid-load: a request that may cost money gets 503 ``state_unavailable`` with
  ``Retry-After`` and nothing is paid for it; when it comes back the gateways serve again
  without a restart.
- Throughout: no invoice is paid twice (the wallet service is asked once per invoice), what
  left the customer's wallet is what the shared state holds as spent or pending, and the
  totals in ``/v1/usage`` are what the served requests cost, the same on every gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from client.nostr.keys import Keys
from client.wallet.invoices import decode_invoice
from client.wallet.nip47 import Request
from provider import Limits, Pricing, ProviderNode
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.service import RequestHandler, WalletService
from relay_mock.lightning.wallet import LedgerWallet
from router.backends import MockBackend
from tests.support.fleet import CHAT, Instance, fleet, post, spread, usage
from tests.support.gateway import client, gateway, hold, user
from tests.support.servers import Postgres, Redis

CUSTOMER_MSATS = 10_000_000
HONEST = Pricing(msats_per_1k_prompt=0, msats_per_1k_completion=0, min_msats=2_000)
UNREACHABLE = "is unreachable"
BACK = "answers again"


class CountingHandler(RequestHandler):
    """The wallet service's request handler, counting ``pay_invoice`` requests per invoice."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(ledger)
        self.pays: Counter[str] = Counter()

    def _dispatch(self, account: int, req: Request) -> dict[str, Any]:
        if req.method == "pay_invoice":
            self.pays[decode_invoice(str(req.params["invoice"])).payment_hash] += 1
        return super()._dispatch(account, req)


@dataclass
class Market:
    relay: Relay
    ledger: Ledger
    handler: CountingHandler
    service: WalletService
    customer: int

    @property
    def out_msats(self) -> int:
        return CUSTOMER_MSATS - self.ledger.balance(self.customer)


@pytest.fixture
async def market(tmp_path: Path) -> AsyncIterator[Market]:
    async with contextlib.AsyncExitStack() as stack:
        relay = await stack.enter_async_context(Relay(seed=0))
        ledger = Ledger(tmp_path / "network.db")
        stack.callback(ledger.close)
        handler = CountingHandler(ledger)
        service = await stack.enter_async_context(
            WalletService(ledger, [relay.url], handler=handler)
        )
        customer = ledger.create_account("customer", msats=CUSTOMER_MSATS).id
        for i in range(2):
            node = ProviderNode(
                Keys.generate(),
                [relay.url],
                MockBackend("mock").with_model("m1").with_response("4").with_usage(5, 1),
                pricing=HONEST,
                payment="after",
                wallet=LedgerWallet(ledger, ledger.create_account(f"p{i}").id),
                limits=Limits(rate_per_minute=None, max_concurrent=32, queue_size=256),
                store=tmp_path / f"p{i}.db",
                announce=False,
            )
            await node.start()
            stack.push_async_callback(node.close)
        yield Market(relay, ledger, handler, service, customer)


def config(market: Market, pg_url: str, redis_url: str) -> dict[str, Any]:
    return {
        "refresh_interval": 0,
        "backends": [
            {"name": "paid", "type": "mock", "models": ["m"], "cost_sats": 2},
            {"name": "slow", "type": "mock", "models": ["slow"], "latency_ms": 1500},
        ],
        "swarm": {
            "relays": [market.relay.url],
            "quorum": 2,
            "bid_sats": 10,
            "nwc_uri_env": "SWARM_NWC",
            "models": ["m1"],
            "job_timeout_s": 10,
            "wallet_timeout_s": 5,
            "resolve_interval_s": 0.5,
        },
        "keys": [
            # every request of alice's is counted in Redis (rpm) and reserved in PostgreSQL
            {"name": "alice", "key": "sk-alice", "budget_sats": 100_000, "rpm": 100_000},
            {"name": "carol", "key": "sk-carol", "max_parallel": 2},
        ],
        "cache": {"ttl_s": 300, "max_entries": 1000},
        "state": {"url": pg_url, "redis": redis_url},
    }


MOCK = {"model": "m", "messages": CHAT, "max_tokens": 8}
SWARM = {"model": "swarm/m1", "messages": [{"role": "user", "content": "2+2?"}]}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    swarm: bool = False  # asked the swarm (paid through the wallet)

    @property
    def cost_msats(self) -> int:
        """What the request cost (swarm: exact msats; a backend's cost: whole sats)."""
        exact = self.headers.get("x-swarm-cost-msats")
        if exact is not None:
            return int(exact)
        return int(self.headers.get("x-swarm-cost-sats", "0")) * 1000

    @property
    def pending_msats(self) -> int:
        return int(self.headers.get("x-swarm-pending-msats", "0"))


@dataclass
class Load:
    """Workers sending alice's mock and swarm requests round robin over the gateways."""

    urls: list[str]
    answers: list[Answer] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, workers: int = 6) -> None:
        async with aiohttp.ClientSession() as s:

            async def worker(w: int) -> None:
                i = w
                while not self._stop.is_set():
                    body = SWARM if i % 3 == 0 else MOCK
                    url = self.urls[i % len(self.urls)]
                    status, headers, data = await post(s, url, body, "sk-alice")
                    async with self._changed:
                        self.answers.append(Answer(status, headers, data, body is SWARM))
                        self._changed.notify_all()
                    i += workers

            await asyncio.gather(*(worker(w) for w in range(workers)))

    async def until(self, done: Callable[[list[Answer]], bool]) -> None:
        async with asyncio.timeout(60), self._changed:
            await self._changed.wait_for(lambda: done(self.answers))

    async def more(self, n: int) -> None:
        """Wait for ``n`` more answers than there are now."""
        seen = len(self.answers)
        await self.until(lambda answers: len(answers) >= seen + n)

    def stop(self) -> None:
        self._stop.set()


@contextlib.asynccontextmanager
async def loaded(gws: list[Instance]) -> AsyncIterator[Load]:
    load = Load([g.url for g in gws])
    task = asyncio.create_task(load.run())
    try:
        yield load
    finally:
        load.stop()
        await task


async def cache_status(url: str, prompt: str, served: list[Answer]) -> str:
    """Ask a deterministic question: was it a cache ``hit`` or a ``miss``?"""
    body = {**MOCK, "messages": [{"role": "user", "content": prompt}], "temperature": 0}
    async with aiohttp.ClientSession() as s:
        answer = Answer(*await post(s, url, body, "sk-alice"))
    assert answer.status == 200
    served.append(answer)
    return answer.headers.get("x-swarm-cache", "")


async def log_says(gws: list[Instance], text: str) -> None:
    """Wait until every gateway's log says ``text`` (a subprocess's log is a file: read it
    until it does)."""
    deadline = time.monotonic() + 30
    while not all(text in g.log() for g in gws):
        assert time.monotonic() < deadline, [g.log() for g in gws]
        await asyncio.sleep(0.1)


async def test_redis_then_postgres_die_under_load_and_come_back(
    tmp_path: Path, market: Market, pg_url: str, redis_server: Redis, postgres: Postgres
) -> None:
    nwc = market.service.connection_uri(market.customer)  # one wallet for every gateway
    cfg = config(market, pg_url, redis_server.url)
    served: list[Answer] = []
    async with fleet(tmp_path, cfg, n=3, env={"SWARM_NWC": nwc}) as gws:
        urls = [g.url for g in gws]
        slow = {**MOCK, "model": "slow"}
        # carol's max_parallel of 2 holds across the three (her 6 requests are at once)
        assert sorted(await spread(urls, "sk-carol", 6, slow)) == [200] * 2 + [429] * 4

        # --- Redis dies mid-load --------------------------------------------------------------
        async with loaded(gws) as load:
            await load.more(20)
            redis_server.kill()
            await log_says(gws, UNREACHABLE)
            await load.more(30)
        served += load.answers
        assert {a.status for a in load.answers} == {200}, [a.body for a in load.answers]
        assert all(g.log().count(UNREACHABLE) == 1 for g in gws)  # one warning per outage
        # limits per process: max_parallel 2 lets 2 through on each of the three
        assert sorted(await spread(urls, "sk-carol", 6, slow)) == [200] * 6
        # the cache is each gateway's own
        assert await cache_status(urls[0], "away", served) == "miss"
        assert await cache_status(urls[1], "away", served) == "miss"
        assert await cache_status(urls[1], "away", served) == "hit"

        # --- Redis comes back: shared again by itself -----------------------------------------
        redis_server.start()
        await log_says(gws, BACK)
        assert sorted(await spread(urls, "sk-carol", 6, slow)) == [200] * 2 + [429] * 4
        assert await cache_status(urls[2], "back", served) == "miss"
        assert await cache_status(urls[0], "back", served) == "hit"

        # --- PostgreSQL dies mid-load ---------------------------------------------------------
        async with loaded(gws) as load:
            await load.more(20)
            postgres.kill()
            try:
                await load.until(lambda answers: sum(a.status == 503 for a in answers) >= 20)
            finally:
                postgres.start()
            await load.until(lambda answers: answers[-1].status == 200)
            await load.more(10)
        served += load.answers
        refused = [a for a in load.answers if a.status != 200]
        assert {a.status for a in refused} == {503}, [a.body for a in refused]
        for a in refused:  # a clear refusal
            assert a.body["error"]["code"] == "state_unavailable"
            assert a.headers["Retry-After"] == "5"
        # back without a restart: every gateway serves money-moving requests again
        async with aiohttp.ClientSession() as s:
            again = [
                Answer(*await post(s, u, body, "sk-alice"), swarm=body is SWARM)
                for u in urls
                for body in (MOCK, SWARM)
            ]
        assert [a.status for a in again] == [200] * 6, [a.body for a in again]
        served += again

        # --- the books ------------------------------------------------------------------------
        assert max(market.handler.pays.values()) == 1  # no invoice was paid twice
        ok = [a for a in served if a.status == 200]
        costs = sum(a.cost_msats for a in ok if not a.swarm)

        def settled(report: dict[str, Any]) -> bool:
            state = report["state"]
            charged = state["spent_msats"] - report["swarm"]["swarm"]["spent_msats"]
            return not state["pending_msats"] and charged == costs

        # Payments of unknown outcome are resolved, and the charges that waited for the store
        # are made, by the gateways themselves (every second or so): wait for them.
        deadline = time.monotonic() + 30
        while not settled(report := await usage(urls[0], "sk-alice")):
            assert time.monotonic() < deadline, (report, costs)
            await asyncio.sleep(0.2)
        reports = [await usage(u, "sk-alice") for u in urls]
        assert len({tuple(sorted(r["state"].items())) for r in reports}) == 1  # same everywhere
        state, swarm = reports[0]["state"], reports[0]["swarm"]["swarm"]
        assert reports[0]["key"]["spent_msats"] == state["spent_msats"]
        # every msat that left the wallet is spent in the shared state, and nothing else is
        assert swarm["spent_msats"] == market.out_msats > 0
        # no lost spend: what the backend's answers cost is charged, to the msat, also for the
        # requests the store's death caught between their answer and their charge
        assert state["spent_msats"] - swarm["spent_msats"] == costs
        # the swarm answers' payments are in the wallet's total; the rest paid for requests
        # answered 503 because the store died before they could record what they paid
        said = sum(a.cost_msats + a.pending_msats for a in ok if a.swarm)
        cut_off = sum(a.swarm for a in refused)
        assert said <= market.out_msats <= said + cut_off * 2 * 2_000


async def test_a_request_answered_as_postgres_dies_is_charged_when_it_is_back(
    pg_url: str, postgres: Postgres
) -> None:
    cfg = {
        "backends": [{"name": "paid", "type": "mock", "models": ["m"], "cost_sats": 2}],
        "keys": [{"name": "alice", "key": "sk-alice", "budget_sats": 100}],
        "state": {"url": pg_url},
    }
    async with gateway(cfg) as gw:
        held = hold(gw, "paid").with_cost(sats=2)
        asked = asyncio.create_task(
            client(gw, "sk-alice").chat.completions.with_raw_response.create(
                model="m", messages=user("q")
            )
        )
        await held.arrivals(1)  # reserved, at the backend
        postgres.kill()
        try:
            held.gate.set()
            answer = await asked  # answered: its charge waits for the store
            assert answer.headers["x-swarm-cost-sats"] == "2"
        finally:
            postgres.start()
        deadline = time.monotonic() + 10
        while (status := gw.book.status("key:alice")).spent_msats != 2_000:
            assert time.monotonic() < deadline, status  # the gateway retries every second
            await asyncio.sleep(0.1)
        assert status.reserved_msats == 0  # and its hold is closed: nothing stays reserved
