"""The customer's persistent payment ledger: intent before paying, outcome after.

One row per invoice (keyed by payment hash, so an invoice can never be entered twice). States:

- ``intent``  recorded before the wallet is asked to pay; if the process dies now, the row stays
  and the next start resolves it by *looking the invoice up*, never by paying again;
- ``paid``    the wallet returned a preimage that hashes to the payment hash;
- ``failed``  the wallet said no (definitively: nothing left our wallet), so a new attempt is safe;
- ``unknown`` the wallet timed out or went away mid-payment; resolved later like ``intent``.

The ledger is a SQLite file (the default; ``synchronous=FULL``) or a ``postgresql://`` URL that
several processes share (the gateways of one operator). Every write is one statement, its own
committed transaction, so what is stored is what happened. Recording an intent is one
``INSERT ... ON CONFLICT (payment_hash) DO UPDATE ... WHERE state = 'failed'``: the primary key
decides, so of any number of processes recording the same invoice at once exactly one may pay
it (never a read, then a write). A ledger that cannot be written raises (PostgreSQL away:
:class:`~client.storage.errors.StateUnavailable`) before the wallet is asked: no payment is made
whose intent is not recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from client.storage import Migration, Row, Schema, open_schema

from .invoices import Invoice

State = Literal["intent", "paid", "failed", "unknown"]
OPEN_STATES: tuple[State, ...] = ("intent", "unknown")

_V1 = """
CREATE TABLE IF NOT EXISTS payments (
    payment_hash TEXT PRIMARY KEY,
    invoice TEXT NOT NULL,
    job_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    amount_msats {bigint} NOT NULL CHECK (amount_msats > 0),
    state TEXT NOT NULL CHECK (state IN ('intent', 'paid', 'failed', 'unknown')),
    preimage TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    created_at {bigint} NOT NULL,
    updated_at {bigint} NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_job ON payments(job_id);
CREATE INDEX IF NOT EXISTS payments_time ON payments(created_at);
"""

#: The ledger's table, versioned (client.storage.migrations).
SCHEMA = Schema("payments", lock="payments", migrations=(Migration(1, "payments", _V1),))

# The intent, and a new attempt at an invoice whose earlier one definitively failed; nothing for
# an invoice that is paid or whose outcome is open (no row comes back).
_BEGIN = (
    "INSERT INTO payments (payment_hash, invoice, job_id, provider, amount_msats, state,"
    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'intent', ?, ?)"
    " ON CONFLICT (payment_hash) DO UPDATE SET state = 'intent', error = NULL,"
    " attempts = payments.attempts + 1, job_id = excluded.job_id,"
    " provider = excluded.provider, created_at = excluded.created_at,"
    " updated_at = excluded.updated_at WHERE payments.state = 'failed'"
    " RETURNING attempts"
)


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    payment_hash: str
    invoice: str
    job_id: str
    provider: str
    amount_msats: int
    state: State
    preimage: str | None
    error: str | None
    attempts: int
    created_at: int
    updated_at: int


class PaymentLedger:
    """The ledger at ``path``: a SQLite file (several processes of one machine may share it) or
    a ``postgresql://`` URL (several machines). Synchronous: each call is one short statement."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = open_schema(self.path, SCHEMA)

    @property
    def shared(self) -> bool:
        """Whether processes on other machines may share this ledger (PostgreSQL)."""
        return self._db.kind == "postgresql"

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> PaymentLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, payment_hash: str) -> PaymentRecord | None:
        row = self._db.execute(
            "SELECT * FROM payments WHERE payment_hash = ?", (payment_hash,)
        ).fetchone()
        return None if row is None else _record(row)

    def begin(self, invoice: Invoice, *, job_id: str, provider: str, now: int) -> bool:
        """Record the intent to pay. True when the caller may now call the wallet; False when the
        invoice is already paid or has a payment whose outcome is open (do not pay). Raises when
        the intent cannot be recorded: then nothing may be paid."""
        assert invoice.amount_msats is not None
        rows = self._db.execute(
            _BEGIN,
            (
                invoice.payment_hash,
                invoice.bolt11,
                job_id,
                provider,
                invoice.amount_msats,
                now,
                now,
            ),
        ).fetchall()
        return len(rows) == 1

    def mark_paid(
        self, payment_hash: str, preimage: str, now: int, note: str | None = None
    ) -> None:
        """``note``: how the outcome was learned, e.g. a lookup after an unknown outcome."""
        self._set(payment_hash, "paid", now, preimage=preimage, error=note)

    def mark_failed(self, payment_hash: str, error: str, now: int) -> None:
        self._set(payment_hash, "failed", now, error=error)

    def mark_unknown(self, payment_hash: str, error: str, now: int) -> None:
        self._set(payment_hash, "unknown", now, error=error)

    def _set(
        self,
        payment_hash: str,
        state: State,
        now: int,
        *,
        preimage: str | None = None,
        error: str | None = None,
    ) -> None:
        # A paid row never changes again: whatever happens later, the money has left.
        self._db.execute(
            "UPDATE payments SET state = ?, preimage = COALESCE(?, preimage), error = ?,"
            " updated_at = ? WHERE payment_hash = ? AND state != 'paid'",
            (state, preimage, error, now, payment_hash),
        )

    def open_payments(self) -> list[PaymentRecord]:
        """Payments whose outcome is not known (``intent`` or ``unknown``): resolve these."""
        rows = self._db.execute(
            "SELECT * FROM payments WHERE state IN ('intent', 'unknown') ORDER BY created_at"
        ).fetchall()
        return [_record(r) for r in rows]

    def spent_msats(
        self, *, job_id: str | None = None, since: int | None = None, exclude: str | None = None
    ) -> int:
        """Paid plus possibly paid (intent/unknown) msats, made after ``since``: what budgets
        must count."""
        sql = "SELECT COALESCE(SUM(amount_msats), 0) AS t FROM payments WHERE state != 'failed'"
        args: list[object] = []
        if job_id is not None:
            sql += " AND job_id = ?"
            args.append(job_id)
        if since is not None:
            sql += " AND created_at > ?"  # strictly after: a rolling window
            args.append(since)
        if exclude is not None:
            sql += " AND payment_hash != ?"
            args.append(exclude)
        return self._total(sql, args)

    def paid_msats(self, *, job_id: str | None = None) -> int:
        sql = "SELECT COALESCE(SUM(amount_msats), 0) AS t FROM payments WHERE state = 'paid'"
        args: tuple[object, ...] = ()
        if job_id is not None:
            sql += " AND job_id = ?"
            args = (job_id,)
        return self._total(sql, args)

    def _total(self, sql: str, args: Sequence[object]) -> int:
        row = self._db.execute(sql, args).fetchone()
        return int(row["t"]) if row is not None else 0

    def history(
        self, *, limit: int | None = None, job_id: str | None = None
    ) -> list[PaymentRecord]:
        """Newest first."""
        sql = "SELECT * FROM payments"
        args: list[object] = []
        if job_id is not None:
            sql += " WHERE job_id = ?"
            args.append(job_id)
        sql += " ORDER BY updated_at DESC, created_at DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [_record(r) for r in self._db.execute(sql, args).fetchall()]


def _record(row: Row) -> PaymentRecord:
    return PaymentRecord(
        payment_hash=str(row["payment_hash"]),
        invoice=str(row["invoice"]),
        job_id=str(row["job_id"]),
        provider=str(row["provider"]),
        amount_msats=int(row["amount_msats"]),
        state=row["state"],
        preimage=row["preimage"],
        error=row["error"],
        attempts=int(row["attempts"]),
        created_at=int(row["created_at"]),
        updated_at=int(row["updated_at"]),
    )
