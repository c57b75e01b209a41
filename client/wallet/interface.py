"""The `Wallet` interface every wallet implements (NWC client, in-process ledger wallet, fakes).

Amounts are exact integer millisats. A wallet raises the typed errors from
:mod:`client.nostr.errors`: ``PaymentFailed``, ``InsufficientBalance``, ``InvoiceNotFound``,
``WalletUnauthorized``, ``WalletTimeout`` / ``WalletUnavailable`` (outcome unknown), or
``WalletError`` with a code.
"""

from __future__ import annotations

import abc
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from client.nostr.errors import WalletError

TxState = Literal["pending", "settled", "accepted", "expired", "failed"]
TxType = Literal["incoming", "outgoing"]


class Transaction(BaseModel):
    """A NIP-47 transaction: an invoice we issued (incoming) or a payment we made (outgoing)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: TxType
    state: TxState | None = None
    invoice: str | None = None
    description: str | None = None
    description_hash: str | None = None
    preimage: str | None = None
    payment_hash: str
    amount: int = Field(ge=0)  # msats
    fees_paid: int = Field(default=0, ge=0)  # msats
    created_at: int = 0
    expires_at: int | None = None
    settled_at: int | None = None

    @property
    def settled(self) -> bool:
        """Paid. Older NIP-47 wallets omit ``state``; then ``settled_at`` says it."""
        if self.state is not None:
            return self.state == "settled"
        return self.settled_at is not None

    def to_nip47(self) -> dict[str, object]:
        return self.model_dump(exclude_none=True)


class Wallet(abc.ABC):
    """A Lightning wallet as the swarm uses it. Use as an async context manager or call close()."""

    @abc.abstractmethod
    async def pay_invoice(self, invoice: str) -> str:
        """Pay a BOLT11 invoice; return the preimage (hex) that proves payment."""

    @abc.abstractmethod
    async def make_invoice(
        self, msats: int, description: str = "", expiry: int | None = None
    ) -> str:
        """Issue an invoice for ``msats``; return the BOLT11 string."""

    @abc.abstractmethod
    async def lookup_invoice(self, payment_hash: str) -> Transaction:
        """The state of an invoice we issued or a payment we made (raises InvoiceNotFound)."""

    @abc.abstractmethod
    async def get_balance(self) -> int:
        """Spendable balance in msats."""

    async def list_transactions(
        self, *, limit: int | None = None, unpaid: bool = False, type: TxType | None = None
    ) -> list[Transaction]:
        """Payments and invoices, newest first (NIP-47 ``list_transactions``); ``unpaid``
        includes invoices not paid yet. Optional: a wallet without a history raises."""
        raise WalletError(
            f"{self.__class__.__name__} keeps no transaction history", code="NOT_IMPLEMENTED"
        )

    async def close(self) -> None:  # noqa: B027 - optional hook, most wallets hold nothing
        """Release connections (no-op by default)."""

    async def __aenter__(self) -> Wallet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
