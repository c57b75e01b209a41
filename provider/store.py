"""The provider's memory (SQLite): which jobs it has answered, so a job seen again on another
relay or after a restart is never worked twice, and what it has earned.

Each call is one short synchronous transaction (well under a millisecond with WAL), so the node
calls it straight from the event loop. A job row is claimed once (primary key) before anything is
published for it; the claim is the dedupe.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import StoreError

Clock = Callable[[], float]

# received -> (awaiting_payment ->) queued/processing -> done | failed; or refused at once.
STATES = ("received", "awaiting_payment", "queued", "processing", "done", "failed", "refused")
OPEN_STATES = ("received", "awaiting_payment", "queued", "processing")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    state TEXT NOT NULL,
    model TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    quote_msats INTEGER,
    amount_msats INTEGER NOT NULL DEFAULT 0,
    payment_hash TEXT,
    paid INTEGER NOT NULL DEFAULT 0,  -- 1 paid, 0 not (yet), -1 invoice expired unpaid
    reason TEXT,
    latency_ms REAL,
    request TEXT
);
CREATE INDEX IF NOT EXISTS jobs_received ON jobs(received_at);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_unpaid ON jobs(payment_hash) WHERE paid = 0;
"""


@dataclass(frozen=True, slots=True)
class JobRow:
    id: str
    customer: str
    created_at: int
    state: str
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    quote_msats: int | None
    amount_msats: int
    payment_hash: str | None
    paid: bool  # False also when the invoice expired unpaid
    reason: str | None
    latency_ms: float | None
    request: str | None


@dataclass(frozen=True, slots=True)
class Earnings:
    """Millisats billed (invoices issued with results or payment requests) and received."""

    jobs_done: int
    billed_msats: int
    paid_msats: int


class JobStore:
    """SQLite job ledger at ``path`` (``":memory:"`` for a throwaway one).

    ``on_write``: called after each write that opened a transaction, with :meth:`commit` left to
    the caller (the node commits once per event-loop turn, so a burst of jobs costs one commit,
    not one per write). Without it every write commits at once.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock = time.time,
        on_write: Callable[[], None] | None = None,
    ) -> None:
        self.path = str(path)
        self._clock = clock
        self.on_write = on_write
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
            self._db.row_factory = sqlite3.Row
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL under WAL survives a process crash; a power cut may lose the last claims,
            # which only risks answering a job twice, never paying twice.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open job store {self.path}: {exc}") from exc

    def close(self) -> None:
        self.commit()
        self._db.close()

    def commit(self) -> None:
        """Commit the writes deferred by ``on_write`` (no-op when there are none)."""
        if self._db.in_transaction:
            self._db.execute("COMMIT")

    def _write(self, sql: str, params: Sequence[object]) -> sqlite3.Cursor:
        if self.on_write is not None and not self._db.in_transaction:
            self._db.execute("BEGIN")
            self.on_write()
        return self._db.execute(sql, params)

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- jobs ----------------------------------------------------------------------------

    def claim(self, job_id: str, customer: str, created_at: int) -> bool:
        """Record a job as ours to answer; False if it was claimed before (seen already)."""
        now = self._clock()
        cur = self._write(
            "INSERT OR IGNORE INTO jobs (id, customer, created_at, received_at, updated_at, state)"
            " VALUES (?, ?, ?, ?, ?, 'received')",
            (job_id, customer, created_at, now, now),
        )
        return cur.rowcount == 1

    def seen(self, job_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row is not None

    def update(self, job_id: str, state: str, **fields: object) -> None:
        """Set the state and any of: model, prompt_tokens, completion_tokens, quote_msats,
        amount_msats, payment_hash, paid, reason, latency_ms, request."""
        if state not in STATES:
            raise StoreError(f"unknown job state {state!r}")
        allowed = set(JobRow.__slots__) - {"id", "customer", "created_at", "state"}  # type: ignore[attr-defined]
        bad = set(fields) - allowed
        if bad:
            raise StoreError(f"unknown job fields {sorted(bad)}")
        cols = ["state = ?", "updated_at = ?", *(f"{k} = ?" for k in fields)]
        values = [state, self._clock(), *fields.values(), job_id]
        self._write(f"UPDATE jobs SET {', '.join(cols)} WHERE id = ?", values)

    def get(self, job_id: str) -> JobRow | None:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row(row) if row is not None else None

    def jobs(self, *, state: str | None = None, limit: int = 100) -> list[JobRow]:
        """Newest first."""
        if state is None:
            rows = self._db.execute(
                "SELECT * FROM jobs ORDER BY received_at DESC LIMIT ?", (limit,)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE state = ? ORDER BY received_at DESC LIMIT ?",
                (state, limit),
            ).fetchall()
        return [_row(r) for r in rows]

    def open_jobs(self) -> list[JobRow]:
        """Jobs left unfinished (a crash, or a shutdown that was cut short), oldest first."""
        marks = ",".join("?" * len(OPEN_STATES))
        rows = self._db.execute(
            f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY received_at", OPEN_STATES
        ).fetchall()
        return [_row(r) for r in rows]

    def unpaid_invoices(self) -> list[tuple[str, str]]:
        """(job id, payment hash) of issued invoices not yet seen paid."""
        rows = self._db.execute(
            "SELECT id, payment_hash FROM jobs WHERE paid = 0 AND payment_hash IS NOT NULL"
        ).fetchall()
        return [(r["id"], r["payment_hash"]) for r in rows]

    def mark_paid(self, job_id: str) -> None:
        self._write(
            "UPDATE jobs SET paid = 1, updated_at = ? WHERE id = ?", (self._clock(), job_id)
        )

    def mark_expired(self, job_id: str) -> None:
        """The job's invoice expired unpaid: stop watching it."""
        self._write(
            "UPDATE jobs SET paid = -1, updated_at = ? WHERE id = ? AND paid = 0",
            (self._clock(), job_id),
        )

    def earnings(self) -> Earnings:
        row = self._db.execute(
            "SELECT COUNT(*) FILTER (WHERE state = 'done') AS done,"
            " COALESCE(SUM(amount_msats) FILTER (WHERE payment_hash IS NOT NULL"
            " AND (state = 'done' OR paid = 1)), 0) AS billed,"
            " COALESCE(SUM(amount_msats) FILTER (WHERE paid = 1), 0) AS paid FROM jobs"
        ).fetchone()
        return Earnings(int(row["done"]), int(row["billed"]), int(row["paid"]))

    def prune(self, older_than_s: float) -> int:
        """Forget finished jobs received more than ``older_than_s`` ago (unpaid invoices stay).
        Old jobs cannot come back: intake only takes jobs from the node's start onwards."""
        cutoff = self._clock() - older_than_s
        marks = ",".join("?" * len(OPEN_STATES))
        cur = self._write(
            f"DELETE FROM jobs WHERE received_at < ? AND state NOT IN ({marks})"
            " AND NOT (paid = 0 AND payment_hash IS NOT NULL)",
            (cutoff, *OPEN_STATES),
        )
        return cur.rowcount


def _row(r: sqlite3.Row) -> JobRow:
    return JobRow(
        id=r["id"],
        customer=r["customer"],
        created_at=int(r["created_at"]),
        state=r["state"],
        model=r["model"],
        prompt_tokens=int(r["prompt_tokens"]),
        completion_tokens=int(r["completion_tokens"]),
        quote_msats=r["quote_msats"],
        amount_msats=int(r["amount_msats"]),
        payment_hash=r["payment_hash"],
        paid=r["paid"] == 1,
        reason=r["reason"],
        latency_ms=r["latency_ms"],
        request=r["request"],
    )
