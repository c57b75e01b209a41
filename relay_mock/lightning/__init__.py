"""A local stand-in for the Lightning network, like the relay beside it: a SQLite ledger of
accounts that settles real BOLT11 invoices between them (:class:`Ledger`), a ``Wallet`` on one of
its accounts in process (:class:`LedgerWallet`), and the NIP-47 wallet service that serves its
accounts over any relay (:class:`WalletService`, ``swarm wallet serve``).

Nothing above relay_mock imports it; it plugs in by entry point (pyproject.toml): `swarm wallet`'s
``serve``, ``new-account`` and ``accounts`` (:mod:`.cli`), and the ``ledger`` wallet kind that
``client.wallet.open_wallet`` opens (:func:`open_ledger_wallet`).
"""

from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.service import WalletService, connection_uri
from relay_mock.lightning.wallet import LedgerWallet, open_ledger_wallet

__all__ = ["Ledger", "LedgerWallet", "WalletService", "connection_uri", "open_ledger_wallet"]
