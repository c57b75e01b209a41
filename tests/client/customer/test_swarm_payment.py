"""The full loop over relay_mock: a customer (SwarmClient + NWC wallet) asks three providers (each
with its own NWC wallet) for a completion; two agree, one lies. The two honest ones are paid
exactly their quotes, the liar nothing, and the ledger's total is the same before and after."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from client.customer.swarm import SwarmClient
from client.dvm.nip90 import Amount, build_feedback, build_result, parse_request
from client.net.pool import RelayPool
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from client.wallet.guard import Bill
from client.wallet.nwc import NwcWallet
from client.wallet.payment_ledger import PaymentLedger
from client.wallet.payments import Payer
from client.wallet.swarm_payment import SwarmPayHook, bills_from
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.service import WalletService


def test_bills_take_the_lowest_amount_a_provider_named_as_its_quote() -> None:
    invoices = {
        "a": Amount(30_000, "lnbcrt-a"),
        "b": Amount(20_000, "lnbcrt-b"),
        "c": Amount(10_000, None),  # no BOLT11: nothing to pay
    }
    bills = bills_from(invoices, {"a": 25_000, "b": 22_000})
    assert bills == {"a": Bill("lnbcrt-a", 25_000), "b": Bill("lnbcrt-b", 20_000)}


class Provider:
    """A minimal NIP-90 provider for this test: quotes in feedback, invoices from its own NWC
    wallet, answers with ``text`` once ``go`` is set."""

    def __init__(
        self, url: str, wallet: NwcWallet, text: str, quote_msats: int, go: asyncio.Event
    ) -> None:
        self.keys = Keys.generate()
        self.url = url
        self.wallet = wallet
        self.text = text
        self.quote = quote_msats
        self.go = go
        self.answered = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pool = RelayPool([url], keys=self.keys)

    async def __aenter__(self) -> Provider:
        await self._pool.start()
        sub = self._pool.subscribe(Filter(kinds=[5050]))
        await sub.wait_eose()
        self._task = asyncio.create_task(self._serve(sub))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._pool.close()

    async def _serve(self, sub: AsyncIterator) -> None:
        async for event in sub:
            req = parse_request(event, keys=self.keys)
            await self._pool.publish(
                build_feedback(self.keys, req, "processing", amount_msats=self.quote)
            )
            invoice = await self.wallet.make_invoice(self.quote, f"job {req.event.id[:8]}", 600)
            await self.go.wait()
            await self._pool.publish(
                build_result(self.keys, req, self.text, amount_msats=self.quote, bolt11=invoice)
            )
            self.answered.set()


@pytest.fixture
def live_ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "network.db", clock=time.time) as led:
        yield led


async def test_customer_pays_the_agreeing_quorum_and_not_the_liar(
    relay: Relay, live_ledger: Ledger, tmp_path: Path
) -> None:
    async with WalletService(live_ledger, [relay.url]) as service:
        customer_acc = live_ledger.create_account("customer", msats=500_000)
        accounts = [live_ledger.create_account(f"provider{i}") for i in range(3)]
        total = live_ledger.check_conservation()
        wallets = [NwcWallet(service.connection_uri(a.id), timeout=5) for a in accounts]
        liar_done = asyncio.Event()
        now = asyncio.Event()
        now.set()
        async with contextlib.AsyncExitStack() as stack:
            for w in wallets:
                await stack.enter_async_context(w)
            # The liar answers first, so its invoice is in hand when the quorum is decided.
            liar = await stack.enter_async_context(
                Provider(relay.url, wallets[2], "5", 30_000, now)
            )
            honest = [
                await stack.enter_async_context(
                    Provider(relay.url, wallets[0], "4", 21_000, liar_done)
                ),
                await stack.enter_async_context(
                    Provider(relay.url, wallets[1], "4", 25_000, liar_done)
                ),
            ]
            customer_wallet = await stack.enter_async_context(
                NwcWallet(service.connection_uri(customer_acc.id), timeout=5)
            )
            hook = SwarmPayHook(Payer(customer_wallet, PaymentLedger(tmp_path / "payments.db")))
            swarm = await stack.enter_async_context(
                SwarmClient(Keys.generate(), [relay.url], pay=hook)
            )
            waiter = asyncio.create_task(liar.answered.wait())
            waiter.add_done_callback(lambda _t: liar_done.set())
            result = await swarm.complete(
                "What is 2+2?", quorum=2, max_sats=100, timeout=10, providers_expected=3
            )

        assert result.text == "4"
        assert set(result.agreeing) == {p.keys.public_key for p in honest}
        assert result.dissenting == (liar.keys.public_key,)
        paid = hook.outcomes[result.job_id]
        assert paid.by_provider_msats() == {
            honest[0].keys.public_key: 21_000,
            honest[1].keys.public_key: 25_000,
        }
        assert paid.outcomes[liar.keys.public_key].status == "skipped"
        assert result.msats_paid == 46_000
        balances = [live_ledger.balance(a.id) for a in accounts]
        assert balances == [21_000, 25_000, 0]
        assert live_ledger.balance(customer_acc.id) == 500_000 - 46_000
        assert live_ledger.check_conservation() == total
