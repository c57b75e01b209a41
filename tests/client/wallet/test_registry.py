"""Wallets by name: `open_wallet` finds the kinds installed packages register (relay_mock's local
ledger is ``ledger``) without client importing them; an unknown kind is a typed error."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.nostr.errors import WalletError, WalletUnauthorized
from client.wallet import Wallet, open_wallet, wallet_kinds
from client.wallet.interface import Transaction


def test_the_local_ledger_is_installed_as_a_kind() -> None:
    assert "ledger" in wallet_kinds()


async def test_a_named_account_is_opened_once_and_an_id_must_exist(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sqlite")
    async with open_wallet("ledger", path, account="provider") as first:
        invoice = await first.make_invoice(1_000, "x")
    async with open_wallet("ledger", path, account="provider") as again:
        [tx] = await again.list_transactions(unpaid=True)
        assert tx.invoice == invoice and tx.type == "incoming" and tx.state == "pending"
        assert await again.get_balance() == 0
    async with open_wallet("ledger", path, account=1) as by_id:
        assert len(await by_id.list_transactions(unpaid=True)) == 1
    with pytest.raises(WalletUnauthorized, match="no account 7"):
        open_wallet("ledger", path, account=7)


def test_an_unknown_kind_is_a_typed_error() -> None:
    with pytest.raises(WalletError, match="no wallet of kind 'lnd' is installed") as e:
        open_wallet("lnd", "localhost:10009", account=1)
    assert e.value.code == "NOT_INSTALLED" and "ledger" in str(e.value)


async def test_a_wallet_without_history_says_so() -> None:
    class Minimal(Wallet):
        async def pay_invoice(self, invoice: str) -> str:
            return ""

        async def make_invoice(
            self, msats: int, description: str = "", expiry: int | None = None
        ) -> str:
            return ""

        async def lookup_invoice(self, payment_hash: str) -> Transaction:
            raise WalletError("none")

        async def get_balance(self) -> int:
            return 0

    with pytest.raises(WalletError, match="Minimal keeps no transaction history") as e:
        await Minimal().list_transactions()
    assert e.value.code == "NOT_IMPLEMENTED"
