"""Wallets that other installed packages provide, opened by the name configuration gives them.

A package offers a kind of wallet by registering an opener in the ``nostr_swarm.wallets``
entry-point group (pyproject.toml); ``relay_mock`` registers ``ledger``, a wallet on an account of
its local stand-in for the Lightning network (``relay_mock/lightning``). ``client`` is the bottom
layer and imports none of those packages: :func:`open_wallet` finds the opener by name and only
then imports it. provider.toml's ``[payment] ledger = "file"`` and ``swarm wallet balance|history
--db FILE`` open their wallets here.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Protocol

from client.nostr.errors import WalletError

from .interface import Wallet

WALLET_GROUP = "nostr_swarm.wallets"


class WalletOpener(Protocol):
    """What a registered entry point is: ``location`` names the wallet (a file, a URL…);
    ``account`` is an account id, or a name whose account is opened on first use."""

    def __call__(self, location: str, *, account: int | str) -> Wallet: ...


def wallet_kinds() -> list[str]:
    """The kinds of wallet installed, by name."""
    return sorted({ep.name for ep in entry_points(group=WALLET_GROUP)})


def open_wallet(kind: str, location: str, *, account: int | str) -> Wallet:
    """A wallet of ``kind`` (a name in the ``nostr_swarm.wallets`` group). Raises
    :class:`WalletError` (code ``NOT_INSTALLED``) when no installed package offers ``kind``, and
    whatever the opener raises for a bad location or account."""
    found = [ep for ep in entry_points(group=WALLET_GROUP) if ep.name == kind]
    if not found:
        installed = ", ".join(wallet_kinds()) or "none"
        raise WalletError(
            f"no wallet of kind {kind!r} is installed (installed: {installed})",
            code="NOT_INSTALLED",
        )
    try:
        opener: WalletOpener = found[0].load()
    except ImportError as exc:
        raise WalletError(
            f"the {kind!r} wallet cannot be loaded: {exc}", code="NOT_INSTALLED"
        ) from None
    return opener(location, account=account)
