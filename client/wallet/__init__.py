"""Wallets and payments in sats: the `Wallet` interface, BOLT11 invoices, the local ledger."""

from __future__ import annotations

from .interface import Transaction, Wallet
from .invoices import Invoice, check_invoice, decode_invoice, make_invoice

__all__ = ["Invoice", "Transaction", "Wallet", "check_invoice", "decode_invoice", "make_invoice"]
