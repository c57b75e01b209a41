"""Durable spend accounts: budgets, reservations ("holds") and payments whose outcome is pending.

Every request that may cost money first takes a :class:`Hold` on each account it is charged to
(an API key, the swarm budget): the most it may cost, checked against every account's budget in
one transaction, so no interleaving of concurrent requests can overspend. While the request runs:

- a swarm payment is *authorized* against the hold before the wallet is asked
  (:meth:`Hold.authorize`): its msats move from the hold to a pending payment, keyed by payment
  hash; a payment the hold cannot cover is refused, so the hold is the request's cap whatever
  the router retries;
- a pending payment is *resolved* when its outcome is known (:meth:`SpendBook.resolve`): paid
  moves it to ``spent``; failed returns it to the hold (or frees it once the hold is closed);
  an outcome that is not known stays pending, counted against every budget, until the wallet
  says what happened, also after a restart;
- a backend's own cost (USD from token prices, sats from a backend that reports them) is charged
  with :meth:`Hold.charge`;
- :meth:`Hold.close` frees what the request did not use. Pending payments outlive their hold.

Amounts are integers: millisats, and USD in nano-dollars (``USD_NANOS`` per dollar). The file is
SQLite (WAL, ``synchronous=FULL``; every change one ``BEGIN IMMEDIATE`` transaction), so what is
on disk is what happened, and a process that dies leaves nothing half-written. On start,
:meth:`SpendBook.recover` closes the holds an earlier process left open (their unused part is
free again; their pending payments stay pending).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from client.nostr.errors import BudgetExceeded
from client.storage import Migration, Schema, SqlStore, add_columns, one, open_schema

USD_NANOS = 1_000_000_000

PendingState = Literal["pending", "paid", "failed"]

_V1 = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    budget_msats {bigint},
    budget_usd_nanos {bigint},
    spent_msats {bigint} NOT NULL DEFAULT 0 CHECK (spent_msats >= 0),
    spent_usd_nanos {bigint} NOT NULL DEFAULT 0 CHECK (spent_usd_nanos >= 0),
    requests {bigint} NOT NULL DEFAULT 0,
    period_s {bigint},
    period_start {bigint} NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS holds (
    id {serial},
    msats {bigint} NOT NULL CHECK (msats >= 0),
    usd_nanos {bigint} NOT NULL CHECK (usd_nanos >= 0),
    initial_msats {bigint} NOT NULL DEFAULT 0,
    charged_msats {bigint} NOT NULL DEFAULT 0,
    charged_usd_nanos {bigint} NOT NULL DEFAULT 0,
    open {bigint} NOT NULL DEFAULT 1,
    label TEXT NOT NULL DEFAULT '',
    who TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    created_at {bigint} NOT NULL
);
CREATE TABLE IF NOT EXISTS hold_accounts (
    hold_id {bigint} NOT NULL REFERENCES holds(id),
    account TEXT NOT NULL REFERENCES accounts(name),
    PRIMARY KEY (hold_id, account)
);
CREATE INDEX IF NOT EXISTS hold_accounts_account ON hold_accounts(account);
CREATE TABLE IF NOT EXISTS pending (
    payment_hash TEXT PRIMARY KEY,
    hold_id {bigint} NOT NULL REFERENCES holds(id),
    msats {bigint} NOT NULL CHECK (msats > 0),
    state TEXT NOT NULL CHECK (state IN ('pending', 'paid', 'failed')),
    created_at {bigint} NOT NULL,
    resolved_at {bigint}
);
CREATE INDEX IF NOT EXISTS pending_state ON pending(state);
"""


# Holds and payments are kept for the record, so an account's history only grows: what a
# request reads (its accounts' open holds and pending payments, a hold's payments) must not grow
# with it. Open holds are the few in flight; the partial index holds only those.
_V2 = """
CREATE INDEX IF NOT EXISTS holds_open ON holds(id) WHERE open = 1;
CREATE INDEX IF NOT EXISTS pending_hold ON pending(hold_id)
"""


def _v1_columns(db: SqlStore) -> None:
    """Files from before budget periods and per-request attribution lack these columns."""
    add_columns(
        db,
        "holds",
        [
            ("initial_msats", "{bigint} NOT NULL DEFAULT 0"),
            ("who", "TEXT NOT NULL DEFAULT ''"),
            ("model", "TEXT NOT NULL DEFAULT ''"),
        ],
    )
    add_columns(
        db,
        "accounts",
        [("period_s", "{bigint}"), ("period_start", "{bigint} NOT NULL DEFAULT 0")],
    )


#: The spend book's tables, versioned (client.storage.migrations); step 1 is the schema the
#: book had before versioned migrations, and brings files older than that up to it.
SCHEMA = Schema(
    "spend",
    lock="accounts",
    migrations=(
        Migration(1, "accounts, holds and pending payments", _V1, run=_v1_columns),
        Migration(2, "indexes for open holds and a hold's payments", _V2),
    ),
)


def usd_to_nanos(usd: float | None) -> int | None:
    """A USD amount as integer nano-dollars (rounded up: a budget or a cost is never shaved)."""
    if usd is None:
        return None
    return math.ceil(round(usd * USD_NANOS, 3))


class OverBudget(BudgetExceeded):
    """A hold does not fit an account's budget; ``account`` names which."""

    def __init__(self, message: str, account: str) -> None:
        super().__init__(message)
        self.account = account


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """One account's figures (msats and nano-dollars)."""

    name: str
    budget_msats: int | None
    budget_usd_nanos: int | None
    spent_msats: int
    spent_usd_nanos: int
    reserved_msats: int
    reserved_usd_nanos: int
    pending_msats: int
    requests: int

    @property
    def committed_msats(self) -> int:
        """Spent, held by requests in flight, and possibly paid: what a budget must count."""
        return self.spent_msats + self.reserved_msats + self.pending_msats

    @property
    def committed_usd_nanos(self) -> int:
        return self.spent_usd_nanos + self.reserved_usd_nanos

    @property
    def remaining_msats(self) -> int | None:
        if self.budget_msats is None:
            return None
        return max(0, self.budget_msats - self.committed_msats)

    @property
    def remaining_usd_nanos(self) -> int | None:
        if self.budget_usd_nanos is None:
            return None
        return max(0, self.budget_usd_nanos - self.committed_usd_nanos)


@dataclass(frozen=True, slots=True)
class PendingPayment:
    payment_hash: str
    hold_id: int
    msats: int
    state: PendingState
    created_at: int


class SpendBook:
    """The accounts in one SQLite file (``":memory:"`` for a book that lives with the process)
    or in PostgreSQL (a ``postgresql://`` URL), shared by every gateway that names it."""

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = str(path)
        self._db = open_schema(self.path, SCHEMA)
        self._clock = clock

    @property
    def closed(self) -> bool:
        return self._db.closed

    @property
    def shared(self) -> bool:
        """Whether other processes on other machines may share this book (PostgreSQL)."""
        return self._db.kind == "postgresql"

    def close(self) -> None:
        self._db.close()

    def _now(self) -> int:
        return int(self._clock())

    def _tx(self) -> AbstractContextManager[SqlStore]:
        return self._db.tx()

    # --- accounts ------------------------------------------------------------------------------

    def ensure(
        self,
        name: str,
        *,
        budget_msats: int | None = None,
        budget_usd_nanos: int | None = None,
        period_s: int | None = None,
    ) -> None:
        """Create the account if it is new; set its budgets (from the configuration) either way.
        What it spent stays. With ``period_s`` the budgets start again every period (counted
        from when the account was first made); what is in flight stays held."""
        budgets = (("budget_msats", budget_msats), ("budget_usd_nanos", budget_usd_nanos))
        for label, value in budgets:
            if value is not None and (type(value) is not int or value < 0):
                raise ValueError(f"{label} must be a non-negative integer, not {value!r}")
        if period_s is not None and (type(period_s) is not int or period_s <= 0):
            raise ValueError(f"period_s must be a positive integer, not {period_s!r}")
        with self._tx() as db:
            db.execute(
                "INSERT INTO accounts(name, budget_msats, budget_usd_nanos, period_s,"
                " period_start) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET budget_msats = excluded.budget_msats,"
                " budget_usd_nanos = excluded.budget_usd_nanos, period_s = excluded.period_s",
                (name, budget_msats, budget_usd_nanos, period_s, self._now()),
            )

    def _roll(self, db: SqlStore, name: str) -> None:
        """Start a new budget period if the current one is over (spent goes back to 0)."""
        row = db.execute(
            "SELECT period_s, period_start FROM accounts WHERE name = ?", (name,)
        ).fetchone()
        if row is None or not row["period_s"]:
            return
        now, start, period = self._now(), row["period_start"], row["period_s"]
        if now < start + period:
            return
        db.execute(
            "UPDATE accounts SET spent_msats = 0, spent_usd_nanos = 0, period_start = ?"
            " WHERE name = ?",
            (now - (now - start) % period, name),
        )

    def status(self, name: str) -> AccountStatus:
        # A read takes no lock (every request reads before it reserves); only an account whose
        # budget period is over is rolled, in a transaction of its own.
        if self._period_over(name):
            with self._tx() as db:
                self._roll(db, name)
        return self._status(self._db, name)

    def _period_over(self, name: str) -> bool:
        row = self._db.execute(
            "SELECT period_s, period_start FROM accounts WHERE name = ?", (name,)
        ).fetchone()
        if row is None or not row["period_s"]:
            return False
        return bool(self._now() >= row["period_start"] + row["period_s"])

    def statuses(self) -> list[AccountStatus]:
        names = [r["name"] for r in self._db.execute("SELECT name FROM accounts ORDER BY name")]
        return [self.status(n) for n in names]

    @staticmethod
    def _status(db: SqlStore, name: str) -> AccountStatus:
        row = db.execute("SELECT * FROM accounts WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise KeyError(f"no spend account {name!r}")
        held = one(
            db.execute(
                "SELECT COALESCE(SUM(h.msats), 0) AS m, COALESCE(SUM(h.usd_nanos), 0) AS u"
                " FROM holds h WHERE h.open = 1 AND (SELECT 1 FROM hold_accounts a"
                " WHERE a.hold_id = h.id AND a.account = ?) IS NOT NULL",
                (name,),
            )
        )
        pending = one(
            db.execute(
                "SELECT COALESCE(SUM(p.msats), 0) AS m FROM pending p"
                " WHERE p.state = 'pending' AND (SELECT 1 FROM hold_accounts a"
                " WHERE a.hold_id = p.hold_id AND a.account = ?) IS NOT NULL",
                (name,),
            )
        )
        return AccountStatus(
            name=name,
            budget_msats=row["budget_msats"],
            budget_usd_nanos=row["budget_usd_nanos"],
            spent_msats=row["spent_msats"],
            spent_usd_nanos=row["spent_usd_nanos"],
            reserved_msats=int(held["m"]),
            reserved_usd_nanos=int(held["u"]),
            pending_msats=int(pending["m"]),
            requests=row["requests"],
        )

    def available_msats(self, accounts: Sequence[str]) -> int | None:
        """The most a new hold on all of ``accounts`` may take (None: no sats budget applies)."""
        left = [self.status(a).remaining_msats for a in accounts]
        caps = [x for x in left if x is not None]
        return min(caps) if caps else None

    # --- holds ---------------------------------------------------------------------------------

    def reserve(
        self,
        accounts: Sequence[str],
        *,
        msats: int = 0,
        usd_nanos: int = 0,
        label: str = "",
        who: str = "",
        model: str = "",
    ) -> Hold:
        """Hold ``msats`` and ``usd_nanos`` on every account, or raise :class:`OverBudget` (an
        account whose budget is already used up refuses even an empty hold)."""
        if type(msats) is not int or msats < 0 or type(usd_nanos) is not int or usd_nanos < 0:
            raise ValueError("a hold is a non-negative integer of msats and nano-dollars")
        names = list(dict.fromkeys(accounts))
        with self._tx() as db:
            for name in names:
                self._roll(db, name)
                st = self._status(db, name)
                _fits(st, msats, usd_nanos)
            cur = db.execute(
                "INSERT INTO holds(msats, usd_nanos, initial_msats, label, who, model,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (msats, usd_nanos, msats, label, who, model[:256], self._now()),
            )
            hold_id = int(one(cur)["id"])
            for name in names:
                db.execute(
                    "INSERT INTO hold_accounts(hold_id, account) VALUES (?, ?)", (hold_id, name)
                )
                db.execute("UPDATE accounts SET requests = requests + 1 WHERE name = ?", (name,))
        return Hold(self, hold_id, tuple(names), msats)

    def _authorize(self, hold_id: int, payment_hash: str, msats: int) -> bool:
        if type(msats) is not int or msats <= 0:
            return False
        with self._tx() as db:
            known = db.execute(
                "SELECT hold_id, state FROM pending WHERE payment_hash = ?", (payment_hash,)
            ).fetchone()
            if known is not None:
                # The same invoice again (a retry after a timeout): already counted once. It is
                # only this hold's to pay if this hold authorized it.
                return bool(known["hold_id"] == hold_id and known["state"] != "failed")
            row = db.execute("SELECT msats, open FROM holds WHERE id = ?", (hold_id,)).fetchone()
            if row is None or not row["open"] or row["msats"] < msats:
                return False
            db.execute("UPDATE holds SET msats = msats - ? WHERE id = ?", (msats, hold_id))
            db.execute(
                "INSERT INTO pending(payment_hash, hold_id, msats, state, created_at)"
                " VALUES (?, ?, ?, 'pending', ?)",
                (payment_hash, hold_id, msats, self._now()),
            )
        return True

    def resolve(self, payment_hash: str, paid: bool) -> bool:
        """Record a pending payment's outcome; False when it was not pending (unknown hash, or
        resolved before)."""
        with self._tx() as db:
            row = db.execute(
                "SELECT hold_id, msats, state FROM pending WHERE payment_hash = ?", (payment_hash,)
            ).fetchone()
            if row is None or row["state"] != "pending":
                return False
            hold_id, msats = row["hold_id"], row["msats"]
            db.execute(
                "UPDATE pending SET state = ?, resolved_at = ? WHERE payment_hash = ?",
                ("paid" if paid else "failed", self._now(), payment_hash),
            )
            if paid:
                self._spend(db, hold_id, msats, 0)
            else:  # nothing left the wallet: the hold may use it again while it is open
                db.execute(
                    "UPDATE holds SET msats = msats + ? WHERE id = ? AND open = 1",
                    (msats, hold_id),
                )
        return True

    @staticmethod
    def _spend(db: SqlStore, hold_id: int, msats: int, usd_nanos: int) -> None:
        db.execute(
            "UPDATE holds SET charged_msats = charged_msats + ?,"
            " charged_usd_nanos = charged_usd_nanos + ? WHERE id = ?",
            (msats, usd_nanos, hold_id),
        )
        db.execute(
            "UPDATE accounts SET spent_msats = spent_msats + ?,"
            " spent_usd_nanos = spent_usd_nanos + ?"
            " WHERE name IN (SELECT account FROM hold_accounts WHERE hold_id = ?)",
            (msats, usd_nanos, hold_id),
        )

    def _charge(self, hold_id: int, msats: int, usd_nanos: int) -> None:
        if type(msats) is not int or msats < 0 or type(usd_nanos) is not int or usd_nanos < 0:
            raise ValueError("a charge is a non-negative integer of msats and nano-dollars")
        if not msats and not usd_nanos:
            return
        with self._tx() as db:
            self._spend(db, hold_id, msats, usd_nanos)
            # What is charged comes out of the hold (a cost above the hold is charged in full)
            db.execute(
                "UPDATE holds SET msats = MAX(0, msats - ?), usd_nanos = MAX(0, usd_nanos - ?)"
                " WHERE id = ?",
                (msats, usd_nanos, hold_id),
            )

    def _close(self, hold_id: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE holds SET open = 0, msats = 0, usd_nanos = 0 WHERE id = ?", (hold_id,)
            )

    def _hold_figures(self, hold_id: int) -> tuple[int, int, int, int]:
        """(charged msats, pending msats, charged nano-dollars, free msats) of one hold."""
        row = one(
            self._db.execute(
                "SELECT charged_msats, charged_usd_nanos, msats FROM holds WHERE id = ?",
                (hold_id,),
            )
        )
        pend = one(
            self._db.execute(
                "SELECT COALESCE(SUM(msats), 0) AS m FROM pending WHERE hold_id = ?"
                " AND state = 'pending'",
                (hold_id,),
            )
        )
        return row["charged_msats"], int(pend["m"]), row["charged_usd_nanos"], row["msats"]

    # --- recovery ------------------------------------------------------------------------------

    def pending(self) -> list[PendingPayment]:
        rows = self._db.execute(
            "SELECT * FROM pending WHERE state = 'pending' ORDER BY created_at"
        ).fetchall()
        return [
            PendingPayment(r["payment_hash"], r["hold_id"], r["msats"], r["state"], r["created_at"])
            for r in rows
        ]

    def recover(self, older_than_s: float | None = None) -> int:
        """Close holds an earlier process left open; returns how many. Their pending payments
        stay pending until resolved. A book only this process uses closes every open hold (call
        it at start, before serving); a shared one closes only holds older than
        ``older_than_s``, which no live request of any instance can still be using."""
        sql = "UPDATE holds SET open = 0, msats = 0, usd_nanos = 0 WHERE open = 1"
        args: tuple[object, ...] = ()
        if older_than_s is not None:
            sql += " AND created_at < ?"
            args = (self._now() - int(older_than_s),)
        with self._tx() as db:
            return int(db.execute(sql, args).rowcount)

    def audit(self) -> list[str]:
        """What does not add up, if anything: no hold paid (or may have paid) more than it
        reserved, and every account's spent equals the payments and charges of its holds."""
        problems: list[str] = []
        rows = self._db.execute(
            "SELECT h.id, h.initial_msats, h.charged_msats, h.label,"
            " COALESCE((SELECT SUM(msats) FROM pending p WHERE p.hold_id = h.id"
            " AND p.state IN ('paid', 'pending')), 0) AS out FROM holds h"
        ).fetchall()
        for r in rows:
            if r["out"] > r["initial_msats"]:
                problems.append(
                    f"hold {r['id']} ({r['label']}) paid or may have paid {r['out']} msats "
                    f"of {r['initial_msats']} reserved"
                )
        for st in self.statuses():
            if st.budget_msats is not None and st.spent_msats + st.pending_msats > st.budget_msats:
                problems.append(
                    f"{st.name}: {st.spent_msats} spent + {st.pending_msats} pending msats is "
                    f"above its budget of {st.budget_msats}"
                )
        return problems

    def spend_by(self) -> list[tuple[str, str, int, int, int, int]]:
        """Spend per (who, model): (who, model, requests, msats spent, msats pending,
        nano-dollars spent), from every hold."""
        rows = self._db.execute(
            "SELECT h.who, h.model, COUNT(*) AS n, SUM(h.charged_msats) AS m,"
            " SUM(h.charged_usd_nanos) AS u,"
            " SUM(COALESCE((SELECT SUM(p.msats) FROM pending p WHERE p.hold_id = h.id"
            " AND p.state = 'pending'), 0)) AS pend"
            " FROM holds h GROUP BY h.who, h.model ORDER BY h.who, h.model"
        ).fetchall()
        return [
            (r["who"], r["model"], int(r["n"]), int(r["m"]), int(r["pend"]), int(r["u"]))
            for r in rows
        ]

    def totals(self) -> tuple[int, int]:
        """(msats spent on swarm payments, msats still pending), over every hold: for audits."""
        paid = one(
            self._db.execute(
                "SELECT COALESCE(SUM(msats), 0) AS m FROM pending WHERE state = 'paid'"
            )
        )
        pend = one(
            self._db.execute(
                "SELECT COALESCE(SUM(msats), 0) AS m FROM pending WHERE state = 'pending'"
            )
        )
        return int(paid["m"]), int(pend["m"])


def _fits(st: AccountStatus, msats: int, usd_nanos: int) -> None:
    if st.budget_msats is not None:
        if st.committed_msats >= st.budget_msats or st.committed_msats + msats > st.budget_msats:
            raise OverBudget(
                f"'{st.name}' has {max(0, st.budget_msats - st.committed_msats) // 1000} of its "
                f"{st.budget_msats // 1000} sats left ({st.spent_msats // 1000} spent, "
                f"{(st.reserved_msats + st.pending_msats) // 1000} held by requests in flight "
                f"or payments not yet resolved); this request may cost up to {msats // 1000} sats",
                st.name,
            )
    if st.budget_usd_nanos is not None:
        used = st.committed_usd_nanos
        if used >= st.budget_usd_nanos or used + usd_nanos > st.budget_usd_nanos:
            raise OverBudget(
                f"'{st.name}' has ${max(0, st.budget_usd_nanos - used) / USD_NANOS:.6f} of its "
                f"${st.budget_usd_nanos / USD_NANOS:.6f} left "
                f"(${st.spent_usd_nanos / USD_NANOS:.6f} spent); this request may cost up to "
                f"${usd_nanos / USD_NANOS:.6f}",
                st.name,
            )


class Hold:
    """One request's reservation. Also the :class:`client.wallet.PaymentGate` its swarm
    payments pass through."""

    __slots__ = ("_closed", "accounts", "book", "id", "reserved_msats")

    def __init__(
        self, book: SpendBook, hold_id: int, accounts: tuple[str, ...], msats: int
    ) -> None:
        self.book = book
        self.id = hold_id
        self.accounts = accounts
        self.reserved_msats = msats
        self._closed = False

    # PaymentGate
    def authorize(self, payment_hash: str, msats: int) -> bool:
        return self.book._authorize(self.id, payment_hash, msats)

    def outcome(self, payment_hash: str, status: str) -> None:
        if status == "paid":
            self.book.resolve(payment_hash, True)
        elif status in ("failed", "refused"):
            self.book.resolve(payment_hash, False)
        # "unknown": stays pending until the wallet is asked again

    def charge(self, *, msats: int = 0, usd_nanos: int = 0) -> None:
        self.book._charge(self.id, msats, usd_nanos)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.book._close(self.id)

    @property
    def paid_msats(self) -> int:
        return self.book._hold_figures(self.id)[0]

    @property
    def pending_msats(self) -> int:
        return self.book._hold_figures(self.id)[1]

    @property
    def charged_usd_nanos(self) -> int:
        return self.book._hold_figures(self.id)[2]

    @property
    def free_msats(self) -> int:
        return self.book._hold_figures(self.id)[3]

    def __enter__(self) -> Hold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Hold({self.id}, {self.accounts}, {self.reserved_msats} msats)"
