"""The one interface every durable store is written against: :class:`SqlStore`.

A store runs SQL with ``?`` placeholders and gets rows as dicts (``execute``), groups statements
in a transaction that other processes cannot interleave with (``tx``), and creates its tables
with ``script``. DDL names the few types that differ between the two databases with
placeholders, so one text serves both:

==============  ===================================  =====================
placeholder     SQLite                               PostgreSQL
==============  ===================================  =====================
``{serial}``    ``INTEGER PRIMARY KEY AUTOINCREMENT``  ``BIGSERIAL PRIMARY KEY``
``{bigint}``    ``INTEGER``                          ``BIGINT``
``{real}``      ``REAL``                             ``DOUBLE PRECISION``
``{bytes}``     ``BLOB``                             ``BYTEA``
==============  ===================================  =====================

(PostgreSQL's ``INTEGER`` is 4 bytes and its ``REAL`` 4-byte floating point: millisats and Unix
times need the wider types.)

Two implementations: :class:`client.storage.sqlite.SqliteStore` (the embedded default, here) and
``router.state_db.PostgresStore`` (several processes on several machines; it lives in ``router``
with its driver, psycopg, so ``client`` installs without it). :func:`client.storage.open_store`
picks one by URL.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol

StoreKind = Literal["sqlite", "postgresql"]
Row = dict[str, Any]

DIALECT: dict[StoreKind, dict[str, str]] = {
    "sqlite": {
        "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "bigint": "INTEGER",
        "real": "REAL",
        "bytes": "BLOB",
    },
    "postgresql": {
        "serial": "BIGSERIAL PRIMARY KEY",
        "bigint": "BIGINT",
        "real": "DOUBLE PRECISION",
        "bytes": "BYTEA",
    },
}


class Rows(Protocol):
    """What :meth:`SqlStore.execute` returns (a DB-API cursor whose rows are dicts)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Row | None: ...

    def fetchall(self) -> list[Row]: ...

    def __iter__(self) -> Iterator[Row]: ...


class SqlStore(Protocol):
    """A connection to one SQL database, SQLite or PostgreSQL. Not for concurrent use from
    several threads at once (each store object is one connection)."""

    @property
    def kind(self) -> StoreKind: ...

    @property
    def target(self) -> str:
        """The SQLite file (or ``:memory:``) or the PostgreSQL URL."""
        ...

    @property
    def closed(self) -> bool: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """One statement with ``?`` placeholders; outside :meth:`tx` it commits at once. A
        statement with ``RETURNING`` completes when its rows are fetched: fetch them."""
        ...

    def tx(self, *, lock: bool = True) -> AbstractContextManager[SqlStore]:
        """One transaction: committed when the block ends, rolled back when it raises.

        ``lock=True``: no other process's locking transaction on this store interleaves with it
        (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: the store's table locked ``EXCLUSIVE``), so a
        check and the write after it are one step. ``lock=False``: its statements lock only the
        rows they change (PostgreSQL; SQLite serializes every writer anyway)."""
        ...

    def schema_tx(self) -> AbstractContextManager[SqlStore]:
        """The transaction migrations run in: one migrator at a time per database, whether or
        not the store's tables exist yet; DDL in it commits or rolls back with the rest."""
        ...

    def script(self, ddl: str) -> None:
        """Statements separated by ``;`` with the dialect placeholders (``{bigint}``, ...), run
        as one transaction (or inside the caller's). No ``;`` inside a statement or a comment."""
        ...

    def close(self) -> None: ...


def one(rows: Rows) -> Row:
    """The row a statement must give (an aggregate, an ``INSERT ... RETURNING``)."""
    row = rows.fetchone()
    if row is None:
        from .errors import StorageError

        raise StorageError("the statement gave no row")
    return row


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def shown(target: str) -> str:
    """A store's target for messages and logs: a URL without its user and password."""
    if "://" in target and "@" in target:
        scheme, rest = target.split("://", 1)
        return f"{scheme}://{rest.rsplit('@', 1)[1]}"
    return target


def statements(ddl: str, kind: StoreKind) -> list[str]:
    """``ddl`` in ``kind``'s types, one statement per item."""
    text = ddl.format(**DIALECT[kind])
    out = []
    for chunk in text.split(";"):
        code = [line for line in chunk.splitlines() if not line.strip().startswith("--")]
        if "".join(code).strip():
            out.append(chunk.strip())
    return out
