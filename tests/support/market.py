"""A whole paid swarm on this machine, for the reliability and security tests.

One SQLite :class:`Ledger` plays the Lightning network. Real :class:`ProviderNode`s (payment
``after``, each with its own :class:`LedgerWallet`) serve on real relays; the customer is a real
:class:`SwarmClient` paying through ``SwarmPayHook(Payer(LedgerWallet, PaymentLedger))``.

:meth:`Market.audit` is the money check every test ends with: the ledger conserves money, every
invoice was paid at most once, each job paid only its agreeing providers and only once each, and
what the customer's books say left equals what the providers' accounts received.

    async with Market(tmp_path, [relay.url]) as market:
        node = await market.add_provider(mock("4"))
        ...
        result = await market.ask("2+2?")
        market.audit()
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.customer.swarm import SwarmClient, SwarmResult
from client.net.pool import RelayPool
from client.nostr.keys import Keys
from client.wallet import Payer, PaymentLedger, SwarmPayHook
from provider import Limits, Pricing, ProviderNode
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.wallet import LedgerWallet
from router.backends import MockBackend
from router.backends.base import LmBackend
from tests.reliability.skew import skewed, skewed_clock

MODEL = "m1"
CUSTOMER_MSATS = 10_000_000  # 10,000 sats
# 1 sat per 1k prompt tokens, 10 per 1k completion tokens, at least 2 sats a job.
PRICING = Pricing(msats_per_1k_prompt=1_000, msats_per_1k_completion=10_000, min_msats=2_000)
FAST_BACKOFF = (0.05, 0.2)


def mock(reply: str = "4", *, latency_ms: float = 0.0) -> MockBackend:
    backend = MockBackend("mock").with_model(MODEL).with_response(reply).with_usage(5, 3)
    return backend.with_latency(latency_ms) if latency_ms else backend


def fast_reconnects(pool: RelayPool) -> None:
    """Tests wait for reconnects; the production backoff (seconds) would only slow them down."""
    for conn in pool.relays:
        conn.backoff_min, conn.backoff_max = FAST_BACKOFF


@dataclass
class Seller:
    node: ProviderNode
    account_id: int
    keys: Keys
    store: Path

    @property
    def pubkey(self) -> str:
        return self.keys.public_key


class Market:
    def __init__(
        self,
        tmp: Path,
        relays: Sequence[str],
        *,
        customer_relays: Sequence[str] | None = None,
        inbox: bool = False,
    ) -> None:
        self.tmp = tmp
        self.relays = list(relays)
        self.customer_relays = list(customer_relays or relays)
        self.inbox = inbox
        self.ledger = Ledger(tmp / "network.db")
        self.customer = self.ledger.create_account("customer", msats=CUSTOMER_MSATS)
        self.payments = PaymentLedger(tmp / "payments.db")
        self.payer = Payer(LedgerWallet(self.ledger, self.customer.id), self.payments)
        self.hook = SwarmPayHook(self.payer)
        self.keys = Keys.generate()
        self.sellers: list[Seller] = []
        self.other_accounts: list[int] = []  # e.g. attackers' wallets, audited too
        self.results: list[SwarmResult] = []
        self.errors: list[BaseException] = []
        self._stack = contextlib.AsyncExitStack()
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self.swarm: SwarmClient | None = None
        self.customer_offset = 0.0

    async def __aenter__(self) -> Market:
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._stack.__aexit__(*exc)
        for seller in self.sellers:
            if not seller.node._closed.is_set():
                await seller.node.close()
        for close in self._closers:
            await close()
        self.payments.close()
        self.ledger.close()

    def closing(self, close: Callable[[], Awaitable[None]]) -> None:
        """Call ``close`` after the nodes have stopped (e.g. a backend's HTTP session)."""
        self._closers.append(close)

    # --- parts ---------------------------------------------------------------------------

    async def add_provider(
        self,
        backend: LmBackend,
        *,
        relays: Sequence[str] | None = None,
        limits: Limits | None = None,
        keys: Keys | None = None,
        account_id: int | None = None,
        store: Path | None = None,
        clock_offset: float = 0.0,
        **kw: Any,
    ) -> Seller:
        """Start a paid ProviderNode (payment ``after``) with its own ledger account.
        ``clock_offset``: the node's wall clock is that many seconds off (see skew.py)."""
        n = len(self.sellers)
        if account_id is None:
            account_id = self.ledger.create_account(f"provider{n}").id
        keys = keys or Keys.generate()
        store = store or self.tmp / f"provider{n}.db"
        kw.setdefault("connect_timeout", 3.0)
        node = ProviderNode(
            keys,
            list(relays or self.relays),
            backend,
            pricing=PRICING,
            payment="after",
            wallet=LedgerWallet(self.ledger, account_id),
            limits=limits or Limits(rate_per_minute=None, max_concurrent=8, queue_size=64),
            store=store,
            announce=False,
            clock=skewed_clock(clock_offset),
            **kw,
        )
        await skewed(clock_offset, node.start())
        fast_reconnects(node.pool)
        seller = Seller(node, account_id, keys, store)
        self.sellers.append(seller)
        return seller

    async def open_customer(self, *, clock_offset: float = 0.0, **kw: Any) -> SwarmClient:
        kw.setdefault("connect_timeout", 3.0)
        swarm = SwarmClient(self.keys, self.customer_relays, pay=self.hook, inbox=self.inbox, **kw)
        self.customer_offset = clock_offset
        self.swarm = await skewed(clock_offset, self._stack.enter_async_context(swarm))
        fast_reconnects(self.swarm.pool)
        return self.swarm

    async def ask(self, prompt: str = "2+2?", **kw: Any) -> SwarmResult:
        """One paid completion (quorum 2 of the providers started, 15 s, 100 sats at most)."""
        assert self.swarm is not None, "open_customer() first"
        kw.setdefault("quorum", 2)
        kw.setdefault("timeout", 15)
        kw.setdefault("max_sats", 100)
        kw.setdefault("model", MODEL)
        kw.setdefault("providers_expected", len(self.sellers) or None)
        result = await skewed(self.customer_offset, self.swarm.complete(prompt, **kw))
        self.results.append(result)
        return result

    # --- the money check -------------------------------------------------------------------

    def balance(self, seller: Seller | int) -> int:
        return self.ledger.balance(seller if isinstance(seller, int) else seller.account_id)

    def wallet(self, name: str) -> tuple[int, LedgerWallet]:
        """A new empty account (counted in the audit) and a wallet on it."""
        account = self.ledger.create_account(name).id
        self.other_accounts.append(account)
        return account, LedgerWallet(self.ledger, account)

    def audit(self) -> dict[str, int]:
        """Raise unless the money adds up; returns totals (msats) for the test to check."""
        total = self.ledger.check_conservation()
        assert total == self.ledger.deposits_msats()
        records = self.payments.history()
        paid = [r for r in records if r.state == "paid"]
        # One payment per invoice (the table is keyed by payment hash) and per job and provider.
        per_job_provider = Counter((r.job_id, r.provider) for r in paid)
        assert all(n == 1 for n in per_job_provider.values()), per_job_provider
        by_job = {res.job_id: res for res in self.results}
        for r in paid:
            res = by_job.get(r.job_id)
            if res is not None:  # paid only the agreeing providers of a reached quorum
                assert res.reached and r.provider in res.agreeing, r
        spent = CUSTOMER_MSATS - self.ledger.balance(self.customer.id)
        received = sum(self.balance(s) for s in self.sellers) + sum(
            self.balance(a) for a in self.other_accounts
        )
        assert spent == received == sum(r.amount_msats for r in paid), (spent, received)
        assert spent == sum(res.msats_paid for res in self.results)
        # What the agreeing providers invoiced for the completions we got.
        owed = sum(
            inv.msats
            for res in self.results
            for p, inv in res.invoices.items()
            if p in res.agreeing and inv.bolt11
        )
        return {
            "spent": spent,
            "owed": owed,
            "payments": len(paid),
            "open": len(self.payments.open_payments()),
        }

    async def still_serving(self) -> SwarmResult:
        """Every part is up: one more paid job goes through (call with the faults switched off)."""
        for seller in self.sellers:
            assert not seller.node._closed.is_set()
            assert seller.node._tasks, "the node's background tasks are gone"
        result = await self.ask("Still there?", providers_expected=None)
        assert result.reached
        return result
