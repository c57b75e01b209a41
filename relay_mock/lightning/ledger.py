"""The local ledger that plays the Lightning network for tests, demos and development (SQLite).

Accounts hold exact integer msat balances. Invoices are real signed BOLT11 strings (see
:mod:`.invoices`); paying one moves its amount from the payer's account to the payee's in a single
SQLite transaction, so money is never created or lost: the sum of balances always equals the sum of
deposits (:meth:`Ledger.check_conservation`). An invoice is settled at most once (a unique index
enforces it); paying it again from the same account returns the first payment, from another
account fails. Several processes may share one file (WAL, busy timeout, ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from client.nostr.errors import (
    InsufficientBalance,
    InvoiceError,
    InvoiceNotFound,
    PaymentFailed,
    WalletError,
    WalletUnauthorized,
)
from client.nostr.keys import Keys
from client.wallet import invoices
from client.wallet.interface import Transaction

Clock = Callable[[], float]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    balance_msats INTEGER NOT NULL CHECK (balance_msats >= 0),
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deposits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    amount_msats INTEGER NOT NULL CHECK (amount_msats > 0),
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS connections (
    client_pubkey TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    created_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS invoices (
    payment_hash TEXT PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    bolt11 TEXT NOT NULL,
    amount_msats INTEGER NOT NULL CHECK (amount_msats > 0),
    description TEXT,
    description_hash TEXT,
    preimage TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'settled', 'expired')),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    settled_at INTEGER
);
CREATE TABLE IF NOT EXISTS payments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    payment_hash TEXT NOT NULL,
    bolt11 TEXT NOT NULL,
    amount_msats INTEGER NOT NULL CHECK (amount_msats > 0),
    fees_msats INTEGER NOT NULL DEFAULT 0,
    preimage TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    settled_at INTEGER NOT NULL
);
-- An invoice is paid once, ever: the database refuses a second payment row for it.
CREATE UNIQUE INDEX IF NOT EXISTS payments_once ON payments(payment_hash);
"""


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    name: str
    balance_msats: int
    created_at: int


@dataclass(frozen=True, slots=True)
class Payment:
    """A settled payment from ``account_id``; ``repeated`` when it was already paid before."""

    account_id: int
    payment_hash: str
    amount_msats: int
    fees_msats: int
    preimage: str
    settled_at: int
    repeated: bool = False


class Ledger:
    """An SQLite ledger. Synchronous (each call is one short transaction)."""

    def __init__(
        self, path: str | Path, *, network: str | None = None, clock: Clock = time.time
    ) -> None:
        self.path = str(path)
        self._clock = clock
        self._db = sqlite3.connect(
            self.path, isolation_level=None, timeout=10.0, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        # WAL + NORMAL: a committed payment survives the process dying (only power loss may lose
        # the last commits); this ledger stands in for a network, not for the customer's books.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)  # idempotent (IF NOT EXISTS); commits by itself
        with self._tx():
            stored = self._setting("network")
            if stored is None:
                stored = invoices.network_name(network or invoices.DEFAULT_NETWORK)
                self._set_setting("network", stored)
            elif network is not None and invoices.network_name(network) != stored:
                raise WalletError(
                    f"ledger {self.path} is on {stored}, not {network}", code="INTERNAL"
                )
            for key in ("node_secret", "service_secret"):
                if self._setting(key) is None:
                    self._set_setting(key, Keys.generate().secret_hex)
        self.network: str = stored
        self.node_keys = Keys.from_secret(self._setting("node_secret") or "")
        self.service_keys = Keys.from_secret(self._setting("service_secret") or "")
        self._node_pubkey: str | None = None

    # --- plumbing -----------------------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now(self) -> int:
        return int(self._clock())

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so read-check-write sequences cannot interleave
        # with another process's.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    def _setting(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def _set_setting(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))

    @property
    def node_pubkey(self) -> str:
        """The compressed (33-byte) key that signs this ledger's invoices, as invoices carry it."""
        if self._node_pubkey is None:
            probe = invoices.make_invoice(
                self.node_keys.secret_hex,
                amount_msats=1000,
                created_at=self.now(),
                network=self.network,
            )
            self._node_pubkey = probe.invoice.payee
        return self._node_pubkey

    # --- accounts -----------------------------------------------------------------------

    def create_account(self, name: str = "", *, msats: int = 0) -> Account:
        """A new account, funded with ``msats`` (a deposit from outside the ledger) when > 0."""
        _check_amount(msats, allow_zero=True)
        now = self.now()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO accounts (name, balance_msats, created_at) VALUES (?, 0, ?)",
                (name, now),
            )
            account_id = int(cur.lastrowid or 0)
            if msats:
                self._deposit(db, account_id, msats, now)
        return self.account(account_id)

    def deposit(self, account_id: int, msats: int) -> int:
        """Add money from outside (the only way the total grows); returns the new balance."""
        _check_amount(msats)
        with self._tx() as db:
            self._require_account(db, account_id)
            self._deposit(db, account_id, msats, self.now())
        return self.balance(account_id)

    def _deposit(self, db: sqlite3.Connection, account_id: int, msats: int, now: int) -> None:
        db.execute(
            "INSERT INTO deposits (account_id, amount_msats, created_at) VALUES (?, ?, ?)",
            (account_id, msats, now),
        )
        db.execute(
            "UPDATE accounts SET balance_msats = balance_msats + ? WHERE id = ?",
            (msats, account_id),
        )

    def account(self, account_id: int) -> Account:
        row = self._require_account(self._db, account_id)
        return Account(
            int(row["id"]), str(row["name"]), int(row["balance_msats"]), int(row["created_at"])
        )

    def accounts(self) -> list[Account]:
        rows = self._db.execute("SELECT * FROM accounts ORDER BY id").fetchall()
        return [
            Account(int(r["id"]), str(r["name"]), int(r["balance_msats"]), int(r["created_at"]))
            for r in rows
        ]

    def balance(self, account_id: int) -> int:
        return self.account(account_id).balance_msats

    def _require_account(self, db: sqlite3.Connection, account_id: int) -> sqlite3.Row:
        row = db.execute("SELECT * FROM accounts WHERE id = ?", (account_id,)).fetchone()
        if row is None:
            raise WalletUnauthorized(f"no account {account_id}")
        return row

    # --- connections (NWC client keys) --------------------------------------------------

    def add_connection(self, account_id: int, client_pubkey: str) -> None:
        """Let the NWC client with this public key act on ``account_id``."""
        with self._tx() as db:
            self._require_account(db, account_id)
            db.execute(
                "INSERT INTO connections (client_pubkey, account_id, created_at) VALUES (?, ?, ?)",
                (client_pubkey, account_id, self.now()),
            )

    def new_connection(self, account_id: int) -> Keys:
        """Fresh client keys for ``account_id``; only the public key is stored (NIP-47)."""
        keys = Keys.generate()
        self.add_connection(account_id, keys.public_key)
        return keys

    def revoke_connection(self, client_pubkey: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE connections SET revoked = 1 WHERE client_pubkey = ?", (client_pubkey,)
            )

    def account_for_client(self, client_pubkey: str) -> int | None:
        row = self._db.execute(
            "SELECT account_id FROM connections WHERE client_pubkey = ? AND revoked = 0",
            (client_pubkey,),
        ).fetchone()
        return None if row is None else int(row["account_id"])

    # --- invoices -----------------------------------------------------------------------

    def make_invoice(
        self,
        account_id: int,
        msats: int,
        description: str = "",
        expiry: int | None = None,
        *,
        description_hash: str | None = None,
    ) -> Transaction:
        """Issue a signed invoice payable to ``account_id``."""
        _check_amount(msats)
        now = self.now()
        made = invoices.make_invoice(
            self.node_keys.secret_hex,
            amount_msats=msats,
            description=description,
            expiry=invoices.DEFAULT_EXPIRY if expiry is None else expiry,
            created_at=now,
            network=self.network,
            description_hash=description_hash,
        )
        inv = made.invoice
        with self._tx() as db:
            self._require_account(db, account_id)
            db.execute(
                "INSERT INTO invoices (payment_hash, account_id, bolt11, amount_msats, description,"
                " description_hash, preimage, state, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                (
                    inv.payment_hash,
                    account_id,
                    inv.bolt11,
                    msats,
                    inv.description,
                    inv.description_hash,
                    made.preimage,
                    inv.created_at,
                    inv.expires_at,
                ),
            )
        return self.lookup(account_id, inv.payment_hash)

    def pay_invoice(self, account_id: int, bolt11: str, amount_msats: int | None = None) -> Payment:
        """Settle a ledger invoice from ``account_id``. Idempotent per account; never twice."""
        now = self.now()
        inv = invoices.check_invoice(
            bolt11, network=self.network, now=float("-inf"), require_amount=False
        )
        with self._tx() as db:
            self._require_account(db, account_id)
            done = db.execute(
                "SELECT * FROM payments WHERE payment_hash = ?", (inv.payment_hash,)
            ).fetchone()
            if done is not None:
                if int(done["account_id"]) != account_id:
                    raise PaymentFailed("invoice is already paid")
                return _payment(done, repeated=True)
            row = db.execute(
                "SELECT * FROM invoices WHERE payment_hash = ?", (inv.payment_hash,)
            ).fetchone()
            if row is None or inv.payee != self.node_pubkey or row["bolt11"] != inv.bolt11:
                raise PaymentFailed("no route: the invoice is not from this ledger")
            if int(row["account_id"]) == account_id:
                raise PaymentFailed("an account cannot pay its own invoice")
            if row["state"] == "expired" or now >= int(row["expires_at"]):
                db.execute(
                    "UPDATE invoices SET state = 'expired' WHERE payment_hash = ?",
                    (inv.payment_hash,),
                )
                raise PaymentFailed("invoice expired")
            amount = int(row["amount_msats"])
            if amount_msats is not None and amount_msats != amount:
                raise PaymentFailed(
                    f"amount {amount_msats} msats differs from the invoice's {amount}"
                )
            payer = self._require_account(db, account_id)
            if int(payer["balance_msats"]) < amount:
                raise InsufficientBalance(
                    f"balance {int(payer['balance_msats'])} msats is less than {amount} msats"
                )
            db.execute(
                "UPDATE accounts SET balance_msats = balance_msats - ? WHERE id = ?",
                (amount, account_id),
            )
            db.execute(
                "UPDATE accounts SET balance_msats = balance_msats + ? WHERE id = ?",
                (amount, row["account_id"]),
            )
            db.execute(
                "UPDATE invoices SET state = 'settled', settled_at = ? WHERE payment_hash = ?",
                (now, inv.payment_hash),
            )
            db.execute(
                "INSERT INTO payments (account_id, payment_hash, bolt11, amount_msats, fees_msats,"
                " preimage, created_at, settled_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
                (account_id, inv.payment_hash, inv.bolt11, amount, row["preimage"], now, now),
            )
        return Payment(account_id, inv.payment_hash, amount, 0, str(row["preimage"]), now)

    def lookup(self, account_id: int, payment_hash: str) -> Transaction:
        """The account's payment or invoice with this hash (others' are invisible)."""
        self.expire_invoices()
        paid = self._db.execute(
            "SELECT * FROM payments WHERE payment_hash = ? AND account_id = ?",
            (payment_hash, account_id),
        ).fetchone()
        if paid is not None:
            return _outgoing(paid, self._invoice_row(payment_hash))
        row = self._db.execute(
            "SELECT * FROM invoices WHERE payment_hash = ? AND account_id = ?",
            (payment_hash, account_id),
        ).fetchone()
        if row is None:
            raise InvoiceNotFound(f"no invoice or payment {payment_hash[:16]}… for this account")
        return _incoming(row)

    def _invoice_row(self, payment_hash: str) -> sqlite3.Row | None:
        return self._db.execute(
            "SELECT * FROM invoices WHERE payment_hash = ?", (payment_hash,)
        ).fetchone()

    def expire_invoices(self) -> int:
        """Mark pending invoices past their expiry as expired; returns how many changed."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE invoices SET state = 'expired' WHERE state = 'pending' AND expires_at <= ?",
                (self.now(),),
            )
        return cur.rowcount

    def transactions(
        self,
        account_id: int,
        *,
        since: int = 0,
        until: int | None = None,
        limit: int | None = None,
        offset: int = 0,
        unpaid: bool = False,
        type: str | None = None,
    ) -> list[Transaction]:
        """Newest first, as NIP-47 ``list_transactions`` returns them."""
        self.expire_invoices()
        until = self.now() if until is None else until
        out: list[Transaction] = []
        if type in (None, "outgoing"):
            for r in self._db.execute(
                "SELECT * FROM payments WHERE account_id = ? AND created_at BETWEEN ? AND ?",
                (account_id, since, until),
            ):
                out.append(_outgoing(r, self._invoice_row(str(r["payment_hash"]))))
        if type in (None, "incoming"):
            for r in self._db.execute(
                "SELECT * FROM invoices WHERE account_id = ? AND created_at BETWEEN ? AND ?",
                (account_id, since, until),
            ):
                if unpaid or r["state"] == "settled":
                    out.append(_incoming(r))
        out.sort(key=lambda t: (t.created_at, t.settled_at or 0), reverse=True)
        return out[offset : None if limit is None else offset + limit]

    # --- the money invariant -------------------------------------------------------------

    def total_msats(self) -> int:
        row = self._db.execute(
            "SELECT COALESCE(SUM(balance_msats), 0) AS t FROM accounts"
        ).fetchone()
        return int(row["t"])

    def deposits_msats(self) -> int:
        row = self._db.execute(
            "SELECT COALESCE(SUM(amount_msats), 0) AS t FROM deposits"
        ).fetchone()
        return int(row["t"])

    def check_conservation(self) -> int:
        """Raise unless balances sum to deposits (nothing created or lost); returns the total."""
        total, deposited = self.total_msats(), self.deposits_msats()
        if total != deposited:
            raise WalletError(
                f"ledger out of balance: accounts hold {total}, deposits were {deposited}"
            )
        return total


def _check_amount(msats: object, *, allow_zero: bool = False) -> None:
    if (
        isinstance(msats, bool)
        or not isinstance(msats, int)
        or msats < 0
        or (msats == 0 and not allow_zero)
    ):
        raise InvoiceError(f"amount must be a positive whole number of msats, got {msats!r}")


def _payment(row: sqlite3.Row, *, repeated: bool = False) -> Payment:
    return Payment(
        int(row["account_id"]),
        str(row["payment_hash"]),
        int(row["amount_msats"]),
        int(row["fees_msats"]),
        str(row["preimage"]),
        int(row["settled_at"]),
        repeated,
    )


def _incoming(row: sqlite3.Row) -> Transaction:
    settled = row["state"] == "settled"
    return Transaction(
        type="incoming",
        state=row["state"],
        invoice=row["bolt11"],
        description=row["description"],
        description_hash=row["description_hash"],
        preimage=row["preimage"] if settled else None,
        payment_hash=row["payment_hash"],
        amount=int(row["amount_msats"]),
        fees_paid=0,
        created_at=int(row["created_at"]),
        expires_at=int(row["expires_at"]),
        settled_at=row["settled_at"],
    )


def _outgoing(row: sqlite3.Row, invoice: sqlite3.Row | None) -> Transaction:
    return Transaction(
        type="outgoing",
        state="settled",
        invoice=row["bolt11"],
        description=invoice["description"] if invoice is not None else None,
        description_hash=invoice["description_hash"] if invoice is not None else None,
        preimage=row["preimage"],
        payment_hash=row["payment_hash"],
        amount=int(row["amount_msats"]),
        fees_paid=int(row["fees_msats"]),
        created_at=int(row["created_at"]),
        expires_at=int(invoice["expires_at"]) if invoice is not None else None,
        settled_at=int(row["settled_at"]),
    )
