"""The embedded store: one SQLite file (WAL), shared by the processes of one machine."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Literal

from .store import Row, Rows, StoreKind, statements

Synchronous = Literal["FULL", "NORMAL"]


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {col[0]: value for col, value in zip(cursor.description, row, strict=True)}


class SqliteStore:
    """A :class:`~client.storage.store.SqlStore` on a SQLite file (``":memory:"`` for one that
    lives with the process). ``synchronous``: ``FULL`` (the default: a committed write survives
    a power cut) or ``NORMAL`` (under WAL it survives a process crash only; for stores where a
    lost last write costs work, never money)."""

    def __init__(self, path: str | Path, *, synchronous: Synchronous = "FULL") -> None:
        self._target = str(path)
        if self._target != ":memory:":
            Path(self._target).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self._target, isolation_level=None, timeout=10.0, check_same_thread=False
        )
        try:
            db.row_factory = _dict_row
            if self._target != ":memory:":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
        except BaseException:
            db.close()
            raise
        #: The sqlite3 connection (autocommit mode), for a store that batches its own commits.
        self.connection = db
        self._closed = False
        self._savepoints = itertools.count()

    @property
    def kind(self) -> StoreKind:
        return "sqlite"

    @property
    def target(self) -> str:
        return self._target

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self.connection.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        return self.connection.execute(sql, tuple(params))

    @contextmanager
    def tx(self, *, lock: bool = True) -> Iterator[SqliteStore]:
        # BEGIN IMMEDIATE whatever `lock` says: a deferred transaction that reads, then writes,
        # can fail with SQLITE_BUSY where an immediate one waits its turn.
        del lock
        db = self.connection
        if db.in_transaction:  # inside another transaction: a savepoint, as PostgreSQL does
            name = f"sp{next(self._savepoints)}"
            db.execute(f"SAVEPOINT {name}")
            try:
                yield self
            except BaseException:
                db.execute(f"ROLLBACK TO {name}")
                db.execute(f"RELEASE {name}")
                raise
            db.execute(f"RELEASE {name}")
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def schema_tx(self) -> AbstractContextManager[SqliteStore]:
        return self.tx()  # BEGIN IMMEDIATE already admits one writer per file

    def script(self, ddl: str) -> None:
        with self.tx():
            for stmt in statements(ddl, "sqlite"):
                self.connection.execute(stmt)
