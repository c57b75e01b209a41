"""The provider's side of a payment: wait until an invoice it issued is paid.

For payment policy ``before`` a provider issues an invoice, asks for payment (``payment-required``
feedback with the ``amount`` tag) and starts work only once :func:`wait_until_paid` returns. It
polls ``lookup_invoice``, which every NIP-47 wallet offers (notifications are optional).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from client.nostr.errors import InvoiceExpired, PaymentFailed, WalletError, WalletTimeout

from .interface import Transaction, Wallet


async def wait_until_paid(
    wallet: Wallet,
    payment_hash: str,
    *,
    within: float,
    poll_interval: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
) -> Transaction:
    """Return the settled transaction; raise InvoiceExpired when the invoice expired unpaid,
    PaymentFailed when the wallet reports it failed, WalletTimeout after ``within`` seconds.
    Transient wallet errors (timeouts, a relay hiccup) are retried until the deadline."""
    deadline = clock() + within
    last_error: WalletError | None = None
    while True:
        try:
            tx = await wallet.lookup_invoice(payment_hash)
        except WalletError as exc:
            if exc.code in ("NOT_FOUND", "UNAUTHORIZED", "RESTRICTED", "NOT_IMPLEMENTED"):
                raise
            last_error = exc
        else:
            if tx.settled:
                return tx
            if tx.state == "expired":
                raise InvoiceExpired(f"invoice {payment_hash[:16]}… expired unpaid")
            if tx.state == "failed":
                raise PaymentFailed(f"invoice {payment_hash[:16]}… failed")
        remaining = deadline - clock()
        if remaining <= 0:
            detail = f" (last wallet error: {last_error})" if last_error else ""
            raise WalletTimeout(f"invoice {payment_hash[:16]}… not paid within {within:g}s{detail}")
        await asyncio.sleep(min(poll_interval, remaining))
