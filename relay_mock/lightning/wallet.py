"""`LedgerWallet`: a `Wallet` on one account of a local :class:`Ledger`, in process (no relay).

For tests and single-process demos; over Nostr the same account is reached with `NwcWallet`.
"""

from __future__ import annotations

from client.wallet.interface import Transaction, Wallet
from relay_mock.lightning.ledger import Ledger


class LedgerWallet(Wallet):
    def __init__(self, ledger: Ledger, account_id: int) -> None:
        self.ledger = ledger
        self.account_id = account_id

    async def pay_invoice(self, invoice: str) -> str:
        return self.ledger.pay_invoice(self.account_id, invoice).preimage

    async def make_invoice(
        self, msats: int, description: str = "", expiry: int | None = None
    ) -> str:
        tx = self.ledger.make_invoice(self.account_id, msats, description, expiry)
        assert tx.invoice is not None
        return tx.invoice

    async def lookup_invoice(self, payment_hash: str) -> Transaction:
        return self.ledger.lookup(self.account_id, payment_hash)

    async def get_balance(self) -> int:
        return self.ledger.balance(self.account_id)
