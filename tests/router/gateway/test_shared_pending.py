"""A payment one gateway authorized and then lost track of (it crashed, or its answer never
came) is resolved by another gateway sharing the state: through the wallet, never by guessing
from its own payment ledger, which does not know the payment."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

import router.gateway.app as app_module
from client.wallet.invoices import decode_invoice
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.service import WalletService
from router.gateway.app import Gateway
from router.gateway.config import parse_config
from router.spend import SpendBook


async def test_another_gateways_payment_is_resolved_through_the_wallet(
    tmp_path: Path, pg_url: str, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "_NO_RECORD_GRACE_S", -1.0)  # no waiting in a test
    with Ledger(tmp_path / "network.db") as ledger:
        customer = ledger.create_account("customer", msats=100_000).id
        seller = ledger.create_account("seller").id
        paid = ledger.make_invoice(seller, 3_000, "paid").invoice
        never = ledger.make_invoice(seller, 4_000, "never sent").invoice
        assert paid is not None and never is not None
        async with contextlib.AsyncExitStack() as stack:
            service = await stack.enter_async_context(WalletService(ledger, [relay.url]))
            # "Gateway A": authorizes both in the shared book, pays one, then is gone.
            book = SpendBook(pg_url)
            book.ensure("swarm:swarm")
            hold = book.reserve(["swarm:swarm"], msats=10_000)
            for inv in (paid, never):
                decoded = decode_invoice(inv)
                assert hold.authorize(decoded.payment_hash, decoded.amount_msats or 0)
            ledger.pay_invoice(customer, paid)
            book.close()  # its hold stays open, as after a crash
            # "Gateway B": same state, same wallet, its own (empty) payment ledger.
            cfg = parse_config(
                {
                    "swarm": {
                        "relays": [relay.url],
                        "nwc_uri": service.connection_uri(customer),
                        "payment_ledger": str(tmp_path / "b-payments.db"),
                        "wallet_timeout_s": 5,
                    },
                    "state": {"url": pg_url},
                    "server": {"port": 0},
                    "refresh_interval": 0,
                },
                env={},
            )
            gw = Gateway(cfg)
            await gw.start()
            try:
                await gw.resolve_pending()
                st = gw.book.status("swarm:swarm")
                assert st.spent_msats == 3_000  # paid by A: charged, not released
                assert st.pending_msats == 0  # the one never sent: released
            finally:
                await gw.stop(grace_s=1)
