"""`swarm ask --nwc URI` pays the agreeing providers over Nostr Wallet Connect."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from pathlib import Path

from client.cli import main
from client.nostr.keys import Keys
from provider import ProviderNode
from provider.pricing import Pricing
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.service import WalletService
from relay_mock.lightning.wallet import LedgerWallet
from router.backends import MockBackend


async def test_swarm_ask_with_nwc_pays_the_quorum(relay: Relay, tmp_path: Path) -> None:
    with Ledger(tmp_path / "ln.db", clock=time.time) as ledger:
        customer = ledger.create_account("customer", msats=50_000)
        accounts = [ledger.create_account(f"p{i}") for i in range(2)]
        async with contextlib.AsyncExitStack() as stack:
            service = await stack.enter_async_context(WalletService(ledger, [relay.url]))
            for account in accounts:
                await stack.enter_async_context(
                    ProviderNode(
                        Keys.generate(),
                        [relay.url],
                        MockBackend(f"m{account.id}").with_response("4").with_usage(3, 1),
                        pricing=Pricing(min_msats=2_000),
                        payment="after",
                        wallet=LedgerWallet(ledger, account.id),
                    )
                )
            argv = [
                "ask", "2+2?", "--relay", relay.url, "--quorum", "2", "--timeout", "10",
                "--max-sats", "10", "--nwc", service.connection_uri(customer.id),
                "--payments-db", str(tmp_path / "payments.db"), "--json", "--quiet",
            ]  # fmt: skip
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = await asyncio.to_thread(main, argv)
        outcome = json.loads(out.getvalue())
        assert code == 0 and outcome["text"] == "4"
        assert outcome["msats_paid"] == 4_000
        assert [ledger.balance(a.id) for a in accounts] == [2_000, 2_000]
        assert ledger.balance(customer.id) == 46_000
