"""The provider's memory (SQLite, or PostgreSQL for a fleet): which jobs it has answered, so a
job seen again on another relay, after a restart or by another node of the fleet is never worked
twice, and what it has earned.

Each call is one short synchronous transaction (well under a millisecond with WAL), so the node
calls it straight from the event loop. A job row is claimed once (primary key, one
``INSERT ... ON CONFLICT DO NOTHING``) before anything is published for it; the claim is the
dedupe. With a ``postgresql://`` target several nodes under one key share the table: the claim
carries the node's ``owner`` id and a lease the owner renews while it works; a job whose lease
ran out is taken over by one other node (a conditional ``UPDATE``, never a read-then-write).

Writes about a job are fenced by its owner: :meth:`JobStore.update` and
:meth:`JobStore.record_result` change a row only while this store's ``owner`` holds it, and say
whether they did, so a node that lost a job to another one learns it at its next write. The
signed result event is recorded (once per job) before it is published: a node that takes the
job over publishes that same event again instead of answering a second time.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.storage import (
    Migration,
    Schema,
    SqliteStore,
    SqlStore,
    StorageError,
    add_columns,
    is_postgres_url,
    open_schema,
)

from .errors import StoreError

Clock = Callable[[], float]

# received -> (awaiting_payment ->) queued/processing -> (held ->) publishing -> done | failed;
# or refused at once. ``held``: a commit-reveal result recorded, waiting for the reveal call;
# ``publishing``: the recorded result is to be published.
STATES = (
    "received",
    "awaiting_payment",
    "queued",
    "processing",
    "held",
    "publishing",
    "done",
    "failed",
    "refused",
)
OPEN_STATES = ("received", "awaiting_payment", "queued", "processing", "held", "publishing")
LEASE_S = 30.0
# What update() may set (the owner, the lease and the result event have their own calls).
_FIELDS = frozenset(
    (
        "model",
        "prompt_tokens",
        "completion_tokens",
        "quote_msats",
        "amount_msats",
        "payment_hash",
        "bolt11",
        "paid",
        "reason",
        "latency_ms",
        "request",
    )
)

_V1 = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    created_at {bigint} NOT NULL,
    received_at {real} NOT NULL,
    updated_at {real} NOT NULL,
    state TEXT NOT NULL,
    model TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    quote_msats {bigint},
    amount_msats {bigint} NOT NULL DEFAULT 0,
    payment_hash TEXT,
    paid INTEGER NOT NULL DEFAULT 0,  -- 1 paid, 0 not (yet), -1 invoice expired unpaid
    reason TEXT,
    latency_ms {real},
    request TEXT,
    owner TEXT,  -- the node working the job (a fleet shares the table)
    lease_until {real}  -- renewed by the owner while working, then free for another node
);
CREATE INDEX IF NOT EXISTS jobs_received ON jobs(received_at);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_unpaid ON jobs(payment_hash) WHERE paid = 0;
"""


def _v1_columns(db: SqlStore) -> None:
    """Files from before fleets lack the claim's owner and lease."""
    add_columns(db, "jobs", [("owner", "TEXT"), ("lease_until", "{real}")])


#: The job store's table, versioned (client.storage.migrations); step 1 is the schema the store
#: had before versioned migrations, and brings files older than that up to it.
def _v2_result_event(db: SqlStore) -> None:
    """The signed result event (JSON), recorded before it is published: a node taking the job
    over publishes it again (same id) rather than answering twice. And the invoice (BOLT11) the
    job asked for: a node taking over a job that waits for its payment asks again with it."""
    add_columns(db, "jobs", [("result_event", "TEXT"), ("bolt11", "TEXT")])


SCHEMA = Schema(
    "jobs",
    lock="jobs",
    migrations=(
        Migration(1, "jobs", _V1, run=_v1_columns),
        Migration(2, "recorded result event and invoice", run=_v2_result_event),
    ),
)


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
    result_event: str | None = None  # the signed result, recorded before it was published
    bolt11: str | None = None  # the invoice of payment_hash
    owner: str | None = None  # the node holding the job (a fleet shares the table)


@dataclass(frozen=True, slots=True)
class Earnings:
    """Millisats billed (invoices issued with results or payment requests) and received."""

    jobs_done: int
    billed_msats: int
    paid_msats: int


class JobStore:
    """Job ledger at ``path``: a SQLite file (``":memory:"`` for a throwaway one) or a
    ``postgresql://`` URL shared by a fleet of nodes under one key.

    ``on_write`` (SQLite): called after each write that opened a transaction, with
    :meth:`commit` left to the caller (the node commits once per event-loop turn, so a burst of
    jobs costs one commit, not one per write). Without it every write commits at once. On
    PostgreSQL every write commits at once, since other nodes must see a claim immediately.

    ``owner``: this node's id in the fleet (default: host, process id and a random part, so
    an operator can tell which machine holds a job); ``lease_s``: how long a claim holds
    without :meth:`renew`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock = time.time,
        on_write: Callable[[], None] | None = None,
        owner: str | None = None,
        lease_s: float = LEASE_S,
    ) -> None:
        if lease_s <= 0:
            raise StoreError(f"lease_s must be positive, not {lease_s!r}")
        self.path = str(path)
        self._clock = clock
        self.on_write = on_write
        self.owner = owner or f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.lease_s = lease_s
        #: True when other nodes may share this store (PostgreSQL).
        self.shared = is_postgres_url(self.path)
        self._pg: SqlStore | None = None
        try:
            # NORMAL under WAL survives a process crash; a power cut may lose the last claims,
            # which only risks answering a job twice, never paying twice.
            store = open_schema(self.path, SCHEMA, synchronous="NORMAL")
        except (sqlite3.Error, OSError, StorageError) as exc:
            raise StoreError(f"cannot open job store {_safe(self.path)}: {exc}") from exc
        if isinstance(store, SqliteStore):
            self._db = store.connection
        else:
            self._pg = store

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            return
        self.commit()
        self._db.close()

    def commit(self) -> None:
        """Commit the writes deferred by ``on_write`` (no-op when there are none)."""
        if self._pg is None and self._db.in_transaction:
            self._db.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[object] = ()) -> Any:
        if self._pg is not None:
            return self._pg.execute(sql, params)
        return self._db.execute(sql, params)

    def _write(self, sql: str, params: Sequence[object]) -> Any:
        if self._pg is not None:
            return self._pg.execute(sql, params)  # autocommit: one statement, one transaction
        if self.on_write is not None and not self._db.in_transaction:
            self._db.execute("BEGIN")
            self.on_write()
        return self._db.execute(sql, params)

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- jobs ----------------------------------------------------------------------------

    def claim(
        self, job_id: str, customer: str, created_at: int, *, request: str | None = None
    ) -> bool:
        """Record a job as ours to answer; False if it was claimed before (seen already, by
        this node or another of the fleet). ``request``: the job's event JSON, kept so another
        node can take the job over if this one dies."""
        now = self._clock()
        cur = self._write(
            "INSERT INTO jobs (id, customer, created_at, received_at, updated_at, state,"
            " request, owner, lease_until) VALUES (?, ?, ?, ?, ?, 'received', ?, ?, ?)"
            " ON CONFLICT (id) DO NOTHING",
            (job_id, customer, created_at, now, now, request, self.owner, now + self.lease_s),
        )
        return cur.rowcount == 1

    def renew(self, job_ids: Sequence[str]) -> set[str]:
        """Extend this node's leases on ``job_ids`` (the jobs it is working); returns the ones
        it still owns (a job another node took over is not among them)."""
        if not job_ids:
            return set()
        marks = ",".join("?" * len(job_ids))
        cur = self._write(
            f"UPDATE jobs SET lease_until = ? WHERE owner = ? AND id IN ({marks}) RETURNING id",
            (self._clock() + self.lease_s, self.owner, *job_ids),
        )
        return {row["id"] for row in cur.fetchall()}

    def orphans(self, limit: int = 50) -> list[JobRow]:
        """Open jobs of other nodes whose lease ran out (their node died), oldest first."""
        marks = ",".join("?" * len(OPEN_STATES))
        rows = self._read(
            f"SELECT * FROM jobs WHERE state IN ({marks}) AND lease_until < ?"
            " AND owner <> ? ORDER BY received_at LIMIT ?",
            (*OPEN_STATES, self._clock(), self.owner, limit),
        ).fetchall()
        return [_row(r) for r in rows]

    def take_over(self, job_id: str) -> JobRow | None:
        """Make an orphaned job ours: the row as taken over (what to go on from), for exactly
        one of the nodes that try, None for the others (the condition and the write are one
        statement, under the row's lock)."""
        now = self._clock()
        marks = ",".join("?" * len(OPEN_STATES))
        cur = self._write(
            f"UPDATE jobs SET owner = ?, lease_until = ?, updated_at = ? WHERE id = ?"
            f" AND lease_until < ? AND state IN ({marks}) RETURNING *",
            (self.owner, now + self.lease_s, now, job_id, now, *OPEN_STATES),
        )
        row = cur.fetchone()
        return _row(row) if row is not None else None

    def seen(self, job_id: str) -> bool:
        row = self._read("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row is not None

    def update(self, job_id: str, state: str, **fields: object) -> bool:
        """Set the state and any of: model, prompt_tokens, completion_tokens, quote_msats,
        amount_msats, payment_hash, bolt11, paid, reason, latency_ms, request. Only while this
        store's owner holds the job: False when another node took it over (nothing is
        written)."""
        if state not in STATES:
            raise StoreError(f"unknown job state {state!r}")
        bad = set(fields) - _FIELDS
        if bad:
            raise StoreError(f"unknown job fields {sorted(bad)}")
        cols = ["state = ?", "updated_at = ?", *(f"{k} = ?" for k in fields)]
        values = [state, self._clock(), *fields.values(), job_id, self.owner]
        cur = self._write(f"UPDATE jobs SET {', '.join(cols)} WHERE id = ? AND owner = ?", values)
        return bool(cur.rowcount == 1)

    def record_result(self, job_id: str, event: str, state: str, **fields: object) -> bool:
        """Record the job's signed result event (JSON) before it is published, with the state
        (``publishing``, or ``held`` for a commit-reveal result) and :meth:`update`'s fields.
        True for the one write that records it; False when another node owns the job or a
        result is recorded already (a job has one result, whichever node publishes it)."""
        if state not in ("publishing", "held"):
            raise StoreError(f"a recorded result is publishing or held, not {state!r}")
        bad = set(fields) - _FIELDS
        if bad:
            raise StoreError(f"unknown job fields {sorted(bad)}")
        cols = ["state = ?", "updated_at = ?", "result_event = ?", *(f"{k} = ?" for k in fields)]
        values = [state, self._clock(), event, *fields.values(), job_id, self.owner]
        cur = self._write(
            f"UPDATE jobs SET {', '.join(cols)} WHERE id = ? AND owner = ?"
            " AND result_event IS NULL",
            values,
        )
        return bool(cur.rowcount == 1)

    def adopt(self) -> list[JobRow]:
        """Make every open job this store's own and return them, oldest first: a node alone on
        its store (SQLite) takes up what its last run left open."""
        marks = ",".join("?" * len(OPEN_STATES))
        self._write(
            f"UPDATE jobs SET owner = ?, lease_until = ? WHERE state IN ({marks})",
            (self.owner, self._clock() + self.lease_s, *OPEN_STATES),
        )
        return self.open_jobs()

    def get(self, job_id: str) -> JobRow | None:
        row = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row(row) if row is not None else None

    def jobs(self, *, state: str | None = None, limit: int = 100) -> list[JobRow]:
        """Newest first."""
        if state is None:
            rows = self._read(
                "SELECT * FROM jobs ORDER BY received_at DESC LIMIT ?", (limit,)
            ).fetchall()
        else:
            rows = self._read(
                "SELECT * FROM jobs WHERE state = ? ORDER BY received_at DESC LIMIT ?",
                (state, limit),
            ).fetchall()
        return [_row(r) for r in rows]

    def open_jobs(self) -> list[JobRow]:
        """Jobs left unfinished (a crash, or a shutdown that was cut short), oldest first."""
        marks = ",".join("?" * len(OPEN_STATES))
        rows = self._read(
            f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY received_at", OPEN_STATES
        ).fetchall()
        return [_row(r) for r in rows]

    def unpaid_invoices(self) -> list[tuple[str, str]]:
        """(job id, payment hash) of issued invoices not yet seen paid."""
        rows = self._read(
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
        row = self._read(
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


def _safe(target: str) -> str:
    """A store target for messages: a PostgreSQL URL without its password."""
    if "@" in target and is_postgres_url(target):
        scheme, rest = target.split("://", 1)
        return f"{scheme}://…@{rest.rsplit('@', 1)[1]}"
    return target


def _row(r: Any) -> JobRow:
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
        result_event=r["result_event"],
        bolt11=r["bolt11"],
        owner=r["owner"],
    )
