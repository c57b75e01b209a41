"""One SQL connection for durable state, SQLite or PostgreSQL, behind the few calls the spend
book and the key records make: ``execute`` (``?`` placeholders, rows as dicts), ``tx`` (one
transaction that other processes cannot interleave with) and ``script`` (DDL).

SQLite is the embedded default (one process; ``BEGIN IMMEDIATE`` serializes writers across
processes on one machine). PostgreSQL lets several gateways on several machines share one state:
a transaction takes an exclusive lock on the table named by ``lock`` first, so a check and the
write after it are one step for every instance (no read-then-write race). The schema text uses
``{serial}``, ``{bigint}`` and ``{bytes}`` where the two differ.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_DDL = {
    "sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "bigint": "INTEGER", "bytes": "BLOB"},
    "postgresql": {"serial": "BIGSERIAL PRIMARY KEY", "bigint": "BIGINT", "bytes": "BYTEA"},
}
_QMARK = re.compile(r"\?")


class StateUnavailable(ConnectionError):
    """The state database cannot be reached (PostgreSQL down): nothing that moves money may
    go on until it is back."""


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


class Database:
    """``Database(path_or_url, lock="accounts")``: a SQLite file (or ``:memory:``) or a
    ``postgresql://`` URL."""

    def __init__(self, target: str | Path, *, lock: str) -> None:
        self.target = str(target)
        self.lock = lock
        self.kind = "postgresql" if is_postgres_url(self.target) else "sqlite"
        self.closed = False
        if self.kind == "postgresql":
            self._pg = self._connect_pg()
        else:
            if self.target != ":memory:":
                Path(self.target).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.target, isolation_level=None, timeout=10.0, check_same_thread=False
            )
            db.row_factory = sqlite3.Row
            if self.target != ":memory:":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self._sqlite = db

    def _connect_pg(self) -> Any:
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError as exc:  # pragma: no cover - an install without the extra
            raise StateUnavailable(
                f"state.url is PostgreSQL but psycopg is not installed: {exc}"
            ) from None
        try:
            return psycopg.connect(self.target, autocommit=True, row_factory=dict_row)
        except psycopg.OperationalError as exc:
            raise StateUnavailable(f"PostgreSQL is unreachable: {exc}") from None

    def close(self) -> None:
        self.closed = True
        if self.kind == "postgresql":
            self._pg.close()
        else:
            self._sqlite.close()

    def script(self, ddl: str) -> None:
        text = ddl.format(**_DDL[self.kind])
        if self.kind == "postgresql":
            with self._pg.transaction():
                for stmt in (s.strip() for s in text.split(";")):
                    if stmt:
                        self._pg.execute(stmt)
        else:
            self._sqlite.executescript(text)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self.kind == "sqlite":
            return self._sqlite.execute(sql, tuple(params))
        return self._run_pg(_QMARK.sub("%s", sql.replace("MAX(0,", "GREATEST(0,")), params)

    def _ensure(self) -> None:
        """A connection lost earlier is made again before it is used (PostgreSQL came back)."""
        if self._pg.closed or self._pg.broken:
            try:
                self._pg.close()
            except Exception:
                pass
            self._pg = self._connect_pg()  # raises StateUnavailable while it is still away

    def _run_pg(self, sql: str, params: Sequence[Any]) -> Any:
        import psycopg

        self._ensure()
        try:
            return self._pg.execute(sql, tuple(params))
        except psycopg.OperationalError as exc:
            self._reconnect()
            raise StateUnavailable(f"PostgreSQL went away: {exc}") from None

    def _reconnect(self) -> None:
        try:
            self._pg.close()
        except Exception:
            pass
        try:
            self._pg = self._connect_pg()
        except StateUnavailable:
            pass  # the next call tries again

    @contextmanager
    def tx(self) -> Iterator[Database]:
        """One transaction no other process interleaves with."""
        if self.kind == "sqlite":
            self._sqlite.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._sqlite.execute("ROLLBACK")
                raise
            self._sqlite.execute("COMMIT")
            return
        import psycopg

        self._ensure()
        try:
            with self._pg.transaction():
                self._pg.execute(f"LOCK TABLE {self.lock} IN EXCLUSIVE MODE")
                yield self
        except psycopg.OperationalError as exc:
            self._reconnect()
            raise StateUnavailable(f"PostgreSQL went away: {exc}") from None
