"""Wallets and payments in sats.

- :class:`Wallet`: the interface (``pay_invoice``, ``make_invoice``, ``lookup_invoice``,
  ``get_balance``); :class:`Transaction` is what ``lookup_invoice`` returns.
- :class:`NwcWallet`: a NIP-47 client for any Nostr Wallet Connect wallet (:mod:`.nip47`).
- BOLT11: :func:`make_invoice`, :func:`decode_invoice`, :func:`check_invoice`, :class:`Invoice`.
- Customer side: :class:`PaymentGuard` (pure checks), :class:`PaymentLedger` (intent/outcome on
  disk), :class:`Payer` (``pay``, ``pay_quorum``, ``resolve_open``), :class:`SwarmPayHook`
  (SwarmClient's ``pay`` hook).
- Provider side: :func:`wait_until_paid`.
- Wallets other packages offer, by name: :func:`open_wallet` (:mod:`.registry`). The local
  stand-in for the Lightning network (a ledger, a wallet on it, the NWC service behind
  ``swarm wallet serve``) is :mod:`relay_mock.lightning`, beside the local relay; it registers
  the ``ledger`` kind.

Errors are the typed ones in :mod:`client.nostr.errors` (``InvoiceError``, ``WrongNetwork``,
``InvoiceExpired``, ``BudgetExceeded``, ``WalletError``, ``PaymentFailed``, ``InsufficientBalance``,
``InvoiceNotFound``, ``WalletUnauthorized``, ``WalletTimeout``, ``WalletUnavailable``).
"""

from __future__ import annotations

from client.nostr.errors import (
    BudgetExceeded,
    InsufficientBalance,
    InvoiceError,
    InvoiceExpired,
    InvoiceNotFound,
    PaymentError,
    PaymentFailed,
    WalletError,
    WalletTimeout,
    WalletUnauthorized,
    WalletUnavailable,
    WrongNetwork,
)

from .guard import Bill, Budget, PaymentGuard
from .interface import Transaction, Wallet
from .invoices import Invoice, check_invoice, decode_invoice, make_invoice
from .nwc import NwcWallet
from .payment_ledger import PaymentLedger, PaymentRecord
from .payments import Payer, PaymentOutcome, QuorumPayment
from .receiving import wait_until_paid
from .registry import open_wallet, wallet_kinds
from .swarm_payment import SwarmPayHook

__all__ = [
    "Bill",
    "Budget",
    "BudgetExceeded",
    "InsufficientBalance",
    "Invoice",
    "InvoiceError",
    "InvoiceExpired",
    "InvoiceNotFound",
    "NwcWallet",
    "Payer",
    "PaymentError",
    "PaymentFailed",
    "PaymentGuard",
    "PaymentLedger",
    "PaymentOutcome",
    "PaymentRecord",
    "QuorumPayment",
    "SwarmPayHook",
    "Transaction",
    "Wallet",
    "WalletError",
    "WalletTimeout",
    "WalletUnauthorized",
    "WalletUnavailable",
    "WrongNetwork",
    "check_invoice",
    "decode_invoice",
    "make_invoice",
    "open_wallet",
    "wait_until_paid",
    "wallet_kinds",
]
