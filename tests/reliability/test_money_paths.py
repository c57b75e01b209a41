"""The money path as a property: random programs of requests and faults, with the books checked
after every step.

The path is the real one: HTTP to the gateway -> LmRouter -> SwarmBackend -> SwarmClient ->
Payer -> NwcWallet -> relay_mock -> the NWC wallet service -> a SQLite Lightning ledger. Four
real ProviderNodes sell on the relay; two of them collude and quote 5,000 sats for an answer that
is otherwise right. A program mixes concurrent requests on one API key (bids and quorums above
and below the operator's limits), wallets that answer later than the client waits or not at
all, relays that drop messages, gateway deadlines that cut requests off mid-job, and gateway
restarts on the same state file. After every step:

- what left the customer's wallet is at most every cap: the key's budget, the swarm's budget,
  and no request's hold paid (or may have paid) more than it reserved;
- no invoice was paid twice (one payment per job and provider, one per hash);
- every msat that left the wallet is charged or still held as pending, on the key and on the
  swarm budget, and nothing is charged that did not leave;
- the Lightning ledger conserves money.

200 programs in the default run, 10,000 with ``-m fuzz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.nostr.event import Event
from client.nostr.keys import Keys
from client.wallet import PaymentLedger
from provider import Limits, Pricing, ProviderNode
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.service import WalletService
from relay_mock.lightning.wallet import LedgerWallet
from router.backends import MockBackend
from router.gateway.app import Gateway
from router.gateway.config import parse_config

KEY_BUDGET_SATS = 40
SWARM_BUDGET_SATS = 60
BID_SATS = 10
WALLET_TIMEOUT_S = 0.3
CUSTOMER_MSATS = 10_000_000
HONEST = Pricing(msats_per_1k_prompt=0, msats_per_1k_completion=0, min_msats=2_000)
GREEDY = Pricing(msats_per_1k_prompt=0, msats_per_1k_completion=0, min_msats=5_000_000)


class FaultyWalletService(WalletService):
    """The NWC service with two switches at the far edge: answers that arrive late (after the
    client stopped waiting) and answers that never arrive. The payment itself is made either
    way: that is what leaves a customer not knowing."""

    delay_s = 0.0
    lose = False

    async def _publish(self, response: Event) -> None:
        if self.lose:
            return
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # a slow wallet, on purpose
        await super()._publish(response)


@dataclass
class World:
    """What lives across programs: the relay, the Lightning ledger, the wallet service and the
    providers. Each program gets its own customer account, state file and gateway."""

    loop: asyncio.AbstractEventLoop
    tmp: Path
    relay: Relay
    ledger: Ledger
    service: FaultyWalletService
    nodes: list[ProviderNode]
    counter: Iterator[int] = field(default_factory=itertools.count)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    loop = asyncio.new_event_loop()
    tmp = tmp_path_factory.mktemp("money")
    stack = contextlib.AsyncExitStack()

    async def start() -> World:
        relay = await stack.enter_async_context(Relay(seed=0))
        ledger = Ledger(tmp / "network.db")
        service = await stack.enter_async_context(FaultyWalletService(ledger, [relay.url]))
        nodes = []
        for i, pricing in enumerate([HONEST, HONEST, GREEDY, GREEDY]):
            account = ledger.create_account(f"provider{i}").id
            backend = MockBackend("mock").with_model("m1").with_response("4").with_usage(5, 1)
            node = ProviderNode(
                Keys.generate(),
                [relay.url],
                backend,
                pricing=pricing,
                payment="after",
                wallet=LedgerWallet(ledger, account),
                limits=Limits(rate_per_minute=None, max_concurrent=16, queue_size=256),
                store=tmp / f"provider{i}.db",
                announce=False,
                connect_timeout=3.0,
            )
            await node.start()
            nodes.append(node)
        return World(loop, tmp, relay, ledger, service, nodes)

    w = loop.run_until_complete(start())
    yield w

    async def stop() -> None:
        for node in w.nodes:
            await node.close()
        await stack.aclose()
        w.ledger.close()

    loop.run_until_complete(stop())
    loop.close()


# --- programs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    concurrent: int
    quorum: int | None
    bid: int | None


@dataclass(frozen=True)
class WalletDelay:
    seconds: float


@dataclass(frozen=True)
class WalletLose:
    lose: bool


@dataclass(frozen=True)
class RelayDrop:
    rate: float


@dataclass(frozen=True)
class Restart:
    pass


@dataclass(frozen=True)
class Resolve:
    pass


steps = st.one_of(
    st.builds(
        Ask,
        concurrent=st.integers(1, 4),
        quorum=st.sampled_from([None, 1, 2, 3, 6]),
        bid=st.sampled_from([None, 1, 3, 10, 11, 5000]),
    ),
    st.builds(WalletDelay, seconds=st.sampled_from([0.0, 0.05, 2 * WALLET_TIMEOUT_S])),
    st.builds(WalletLose, lose=st.booleans()),
    st.builds(RelayDrop, rate=st.sampled_from([0.0, 0.0, 0.03])),
    st.just(Restart()),
    st.just(Resolve()),
)
programs = st.tuples(
    st.sampled_from([0.4, 1.0, 5.0]),  # the gateway's whole-request deadline
    st.sampled_from([0.05, 60.0]),  # the router's per-attempt timeout (the swarm owns its own)
    st.lists(steps, min_size=1, max_size=6),
)


class Program:
    """One program's customer, gateway and books."""

    def __init__(self, w: World, request_timeout_s: float, attempt_timeout_s: float) -> None:
        n = next(w.counter)
        self.w = w
        self.dir = w.tmp / f"run{n}"
        self.dir.mkdir()
        self.account = w.ledger.create_account(f"customer{n}", msats=CUSTOMER_MSATS).id
        uri = w.service.connection_uri(self.account)
        self.config = parse_config(
            {
                "backends": [
                    {
                        "type": "swarm",
                        "name": "swarm",
                        "timeout_s": attempt_timeout_s,  # a router timer the swarm must not obey
                        "relays": [w.relay.url],
                        "quorum": 2,
                        "bid_sats": BID_SATS,
                        "budget_sats": SWARM_BUDGET_SATS,
                        "job_timeout_s": 1.0,
                        "wallet_timeout_s": WALLET_TIMEOUT_S,
                        "resolve_interval_s": 0.2,
                        "nwc_uri": uri,
                        "secret_key": Keys.generate().secret_hex,
                        "payment_ledger": str(self.dir / "payments.db"),
                        "models": ["m1"],
                    }
                ],
                "keys": [{"name": "alice", "key": "sk-alice", "budget_sats": KEY_BUDGET_SATS}],
                "state": {"url": f"sqlite:///{self.dir / 'state.sqlite'}"},
                "resilience": {
                    "request_timeout_s": request_timeout_s,
                    "retry": {"max_attempts": 3},
                },
                "server": {"port": 0},
                "refresh_interval": 0,
            },
            env={},
        )
        self.gw: Gateway | None = None
        self.statuses: Counter[int] = Counter()

    async def start(self) -> None:
        self.gw = Gateway(self.config)
        await self.gw.start()

    async def stop(self) -> None:
        if self.gw is not None:
            await self.gw.stop(grace_s=5.0)
            self.gw = None

    async def ask(self, step: Ask) -> None:
        assert self.gw is not None
        msgs = [{"role": "user", "content": "2+2?"}]
        body: dict[str, Any] = {"model": "swarm/m1", "messages": msgs}
        if step.quorum is not None:
            body["quorum"] = step.quorum
        if step.bid is not None:
            body["bid_sats"] = step.bid
        url = self.gw.url + "/v1/chat/completions"
        headers = {"Authorization": "Bearer sk-alice"}
        async with aiohttp.ClientSession() as s:

            async def one() -> None:
                async with s.post(url, json=body, headers=headers) as r:
                    await r.read()
                    self.statuses[r.status] += 1
                    if step.bid is not None and step.bid > BID_SATS:
                        assert r.status == 400  # the operator's limit binds the caller
                    if step.quorum == 6:
                        assert r.status == 400

            await asyncio.gather(*(one() for _ in range(step.concurrent)))

    async def run(self, step: object) -> None:
        w = self.w
        if isinstance(step, Ask):
            await self.ask(step)
        elif isinstance(step, WalletDelay):
            w.service.delay_s = step.seconds
        elif isinstance(step, WalletLose):
            w.service.lose = step.lose
        elif isinstance(step, RelayDrop):
            w.relay.faults.drop_rate = step.rate
        elif isinstance(step, Restart):
            await self.stop()
            await self.start()
        elif isinstance(step, Resolve):
            assert self.gw is not None
            await self.gw.resolve_pending()

    # --- the books ---------------------------------------------------------------------------

    def audit(self) -> None:
        w = self.w
        assert w.ledger.check_conservation() == w.ledger.deposits_msats()
        out = CUSTOMER_MSATS - w.ledger.balance(self.account)
        assert out <= KEY_BUDGET_SATS * 1000, out
        assert out <= SWARM_BUDGET_SATS * 1000, out
        with PaymentLedger(self.dir / "payments.db") as payments:
            records = payments.history()
        paid = [r for r in records if r.state == "paid"]
        per_job_provider = Counter((r.job_id, r.provider) for r in paid)
        assert all(n == 1 for n in per_job_provider.values()), per_job_provider
        # Money that left but that the customer's books do not hold as paid or open: none.
        open_or_paid = sum(r.amount_msats for r in records if r.state != "failed")
        assert out <= open_or_paid, (out, open_or_paid)
        gw = self.gw
        assert gw is not None
        book = gw.book
        assert not book.audit(), book.audit()
        for account in ("key:alice", "swarm:swarm"):
            status = book.status(account)
            # every msat that left is charged or held as pending; nothing charged that did not
            assert status.spent_msats <= out <= status.spent_msats + status.pending_msats, (
                account,
                status,
                out,
            )

    async def settle(self) -> None:
        """Faults off, payments in flight finished, unknown outcomes looked up: then spend is
        exactly what left the wallet."""
        w = self.w
        w.service.delay_s = 0.0
        w.service.lose = False
        w.relay.faults.reset()
        await self.stop()
        await self.start()
        assert self.gw is not None
        out = CUSTOMER_MSATS - w.ledger.balance(self.account)
        # Each round asks the wallet once (0.3 s timeout): a busy machine may need a few.
        for _ in range(20):
            await self.gw.resolve_pending()
            if self.gw.book.status("key:alice").spent_msats == out:
                break
        self.audit()
        for account in ("key:alice", "swarm:swarm"):
            status = self.gw.book.status(account)
            assert status.spent_msats == out
            assert status.reserved_msats == 0
        # What stays pending never reached the wallet (its request was lost on the way): it is
        # released once the wallet has said "not found" for the grace period.
        left = {t.payment_hash for t in w.ledger.transactions(self.account)}
        assert not {p.payment_hash for p in self.gw.book.pending()} & left


async def run_program(
    w: World, request_timeout_s: float, attempt_timeout_s: float, program: list[object]
) -> None:
    p = Program(w, request_timeout_s, attempt_timeout_s)
    await p.start()
    try:
        for step in program:
            await p.run(step)
            p.audit()
        await p.settle()
    finally:
        w.service.delay_s = 0.0
        w.service.lose = False
        w.relay.faults.reset()
        await p.stop()


SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}


@settings(max_examples=200, **SETTINGS)  # type: ignore[arg-type]
@given(program=programs)
def test_money_never_overpaid_never_twice_always_charged(
    world: World, program: tuple[float, float, list[object]]
) -> None:
    world.loop.run_until_complete(run_program(world, *program))


@pytest.mark.fuzz
@settings(max_examples=10_000, **SETTINGS)  # type: ignore[arg-type]
@given(program=programs)
def test_money_paths_fuzz(world: World, program: tuple[float, float, list[object]]) -> None:
    world.loop.run_until_complete(run_program(world, *program))
