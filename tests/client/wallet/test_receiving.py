"""wait_until_paid: the provider starts work only after its invoice shows paid."""

from __future__ import annotations

import asyncio

import pytest

from client.nostr.errors import InvoiceExpired, InvoiceNotFound, WalletTimeout
from client.wallet.invoices import decode_invoice
from client.wallet.receiving import wait_until_paid
from tests.support.lightning import Clock, Market


async def test_returns_once_the_customer_has_paid(market: Market) -> None:
    provider = market.provider_wallets[0]
    invoice = await provider.make_invoice(7_000, "before", 600)
    h = decode_invoice(invoice).payment_hash
    waiting = asyncio.create_task(wait_until_paid(provider, h, within=30, poll_interval=0.01))
    await market.customer_wallet.pay_invoice(invoice)
    tx = await asyncio.wait_for(waiting, 30)
    assert tx.settled and tx.amount == 7_000


async def test_expired_invoice_stops_the_wait(market: Market, clock: Clock) -> None:
    provider = market.provider_wallets[0]
    invoice = await provider.make_invoice(7_000, "before", 60)
    clock.now += 61
    with pytest.raises(InvoiceExpired):
        await wait_until_paid(provider, decode_invoice(invoice).payment_hash, within=5)


async def test_unpaid_invoice_times_out(market: Market) -> None:
    provider = market.provider_wallets[0]
    invoice = await provider.make_invoice(7_000, "before", 600)
    ticks = iter(range(100))
    with pytest.raises(WalletTimeout):
        await wait_until_paid(
            provider,
            decode_invoice(invoice).payment_hash,
            within=3,
            poll_interval=0,
            clock=lambda: float(next(ticks)),
        )


async def test_unknown_invoice_is_an_error_at_once(market: Market) -> None:
    with pytest.raises(InvoiceNotFound):
        await wait_until_paid(market.provider_wallets[0], "00" * 32, within=5)
