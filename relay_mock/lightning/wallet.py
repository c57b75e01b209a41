"""`LedgerWallet`: a `Wallet` on one account of a local :class:`Ledger`, in process (no relay).

For tests and single-process demos; over Nostr the same account is reached with `NwcWallet`.
:func:`open_ledger_wallet` is the ``ledger`` kind of ``client.wallet.open_wallet`` (registered in
pyproject.toml's ``nostr_swarm.wallets`` group): provider.toml's ``[payment] ledger`` and
``swarm wallet balance|history --db`` open their wallets through it.
"""

from __future__ import annotations

from client.wallet.interface import Transaction, TxType, Wallet
from relay_mock.lightning.ledger import Ledger


class LedgerWallet(Wallet):
    """``close_ledger``: close the ledger with the wallet (it was opened for this wallet)."""

    def __init__(self, ledger: Ledger, account_id: int, *, close_ledger: bool = False) -> None:
        self.ledger = ledger
        self.account_id = account_id
        self._close_ledger = close_ledger

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

    async def list_transactions(
        self, *, limit: int | None = None, unpaid: bool = False, type: TxType | None = None
    ) -> list[Transaction]:
        return self.ledger.transactions(self.account_id, limit=limit, unpaid=unpaid, type=type)

    async def close(self) -> None:
        if self._close_ledger:
            self.ledger.close()


def open_ledger_wallet(location: str, *, account: int | str) -> LedgerWallet:
    """A wallet on the ledger file ``location``: on account id ``account``, or on the account
    named ``account`` (opened, empty, when there is none yet). Raises ``WalletUnauthorized``
    for an account id the ledger does not have."""
    ledger = Ledger(location)
    try:
        if isinstance(account, int):
            account_id = ledger.account(account).id
        else:
            named = [a for a in ledger.accounts() if a.name == account]
            account_id = named[0].id if named else ledger.create_account(account).id
    except BaseException:
        ledger.close()
        raise
    return LedgerWallet(ledger, account_id, close_ledger=True)
