"""SwarmClient(wallet=...) pays by itself: real provider nodes bill with invoices from their own
wallets, the client pays only the agreeing quorum, and paying again is a no-op."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from client.customer.swarm import SwarmClient
from client.nostr.keys import Keys
from provider import ProviderNode
from provider.pricing import Pricing
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.wallet import LedgerWallet
from router.backends import MockBackend

PRICE = Pricing(msats_per_1k_prompt=0, msats_per_1k_completion=0, min_msats=3_000)


async def test_wallet_pays_the_agreeing_providers_once(relay: Relay, tmp_path: Path) -> None:
    with Ledger(tmp_path / "ln.db", clock=time.time) as ledger:
        customer = ledger.create_account("customer", msats=100_000)
        accounts = [ledger.create_account(f"p{i}") for i in range(3)]
        total = ledger.check_conservation()
        answers = ["Paris", "Paris", "Berlin"]
        liar_answered = asyncio.Event()  # the honest answers wait for the liar's: it must dissent
        async with contextlib.AsyncExitStack() as stack:
            nodes = []
            for account, answer in zip(accounts, answers, strict=True):
                backend = MockBackend(f"m{account.id}").with_response(answer).with_usage(5, 1)
                if answer == "Paris":
                    backend = backend.with_gate(liar_answered)
                nodes.append(
                    await stack.enter_async_context(
                        ProviderNode(
                            Keys.generate(),
                            [relay.url],
                            backend,
                            pricing=PRICE,
                            payment="after",
                            wallet=LedgerWallet(ledger, account.id),
                        )
                    )
                )
            wallet = LedgerWallet(ledger, customer.id)
            db = tmp_path / "payments.db"
            async with SwarmClient(Keys.generate(), [relay.url], wallet, payments_db=db) as swarm:
                liar = nodes[2].keys.public_key

                def progress(p) -> None:  # type: ignore[no-untyped-def]
                    if p.kind == "result" and p.provider == liar:
                        liar_answered.set()

                result = await swarm.complete(
                    "capital of France?",
                    quorum=2,
                    max_sats=20,
                    timeout=10,
                    providers_expected=3,
                    on_progress=progress,
                )
                assert result.text == "Paris"
                assert result.dissenting == (liar,)
                assert result.msats_paid == 6_000
                # Settling the same result again pays nothing more.
                await swarm.settle(result, 20)
            # A new client on the same payment ledger finds nothing open and pays nothing.
            async with SwarmClient(Keys.generate(), [relay.url], wallet, payments_db=db):
                pass
        assert [ledger.balance(a.id) for a in accounts] == [3_000, 3_000, 0]
        assert ledger.balance(customer.id) == 94_000
        assert ledger.check_conservation() == total
