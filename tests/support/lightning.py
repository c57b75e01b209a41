"""Fixtures for the payment tests: an injected clock, a ledger file, funded accounts, and a wallet
wrapper that counts calls and can fail before or after the real payment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from client.wallet.interface import Transaction, Wallet
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.wallet import LedgerWallet

START = 1_800_000_000


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs (not an Exception, so no handler
    in the code under test can swallow it)."""


class SpyWallet(Wallet):
    """Wraps a real wallet; counts payments; optionally raises before or after the real payment."""

    def __init__(self, inner: Wallet) -> None:
        self.inner = inner
        self.pay_calls = 0
        self.lookup_calls = 0
        self.fail_before: BaseException | None = None
        self.fail_after: BaseException | None = None
        self.fail_lookup: BaseException | None = None
        self.preimage_override: str | None = None

    async def pay_invoice(self, invoice: str) -> str:
        self.pay_calls += 1
        if self.fail_before is not None:
            raise self.fail_before
        preimage = await self.inner.pay_invoice(invoice)
        if self.fail_after is not None:
            raise self.fail_after
        return self.preimage_override or preimage

    async def make_invoice(
        self, msats: int, description: str = "", expiry: int | None = None
    ) -> str:
        return await self.inner.make_invoice(msats, description, expiry)

    async def lookup_invoice(self, payment_hash: str) -> Transaction:
        self.lookup_calls += 1
        if self.fail_lookup is not None:
            raise self.fail_lookup
        return await self.inner.lookup_invoice(payment_hash)

    async def get_balance(self) -> int:
        return await self.inner.get_balance()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(tmp_path: Path, clock: Clock) -> Iterator[Ledger]:
    with Ledger(tmp_path / "network.db", clock=clock) as led:
        yield led


class Market:
    """A customer with 1,000 sats and three providers with empty accounts, all on one ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.customer = ledger.create_account("customer", msats=1_000_000)
        self.providers = [ledger.create_account(f"provider{i}") for i in range(3)]
        self.customer_wallet = SpyWallet(LedgerWallet(ledger, self.customer.id))
        self.provider_wallets = [LedgerWallet(ledger, p.id) for p in self.providers]
        self.total = ledger.check_conservation()

    def balance(self, account_id: int) -> int:
        return self.ledger.balance(account_id)


@pytest.fixture
def market(ledger: Ledger) -> Market:
    return Market(ledger)
