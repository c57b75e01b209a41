"""PostgreSQL's :class:`~client.storage.store.SqlStore`: durable state shared by several
processes on several machines (gateways, a provider fleet).

``client.storage.open_store`` opens it for a ``postgresql://`` URL through the entry point
``nostr_swarm.state_stores: postgresql`` (psycopg, from the ``state`` extra, lives here, not in
``client``). A locking transaction (``tx()``) first takes an exclusive lock on the table named
by ``lock``, so a check and the write after it are one step for every instance (no
read-then-write race); ``tx(lock=False)`` leaves it to row locks. Migrations run under a
transaction-scoped advisory lock (``schema_tx``), so gateways starting together apply each step
once. A connection that breaks raises :class:`~client.storage.errors.StateUnavailable` and is
made again on the next call, so the store recovers by itself when PostgreSQL is back; connecting
runs on a thread of its own, and a call waits for it at most ``RECONNECT_WAIT_S``, so a host that
stopped answering does not hold every caller for libpq's ``connect_timeout``. A connection
the server closed while it sat idle (a restart) is noticed before a statement is sent on it;
a statement that fails mid-way has an unknown outcome, and that raises.
"""

from __future__ import annotations

import re
import select
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from typing import Any

from client.storage import (
    Rows,
    StateUnavailable,
    StorageError,
    StoreKind,
    is_postgres_url,
    shown,
    statements,
)

__all__ = ["PostgresStore", "StateUnavailable", "is_postgres_url"]

_QMARK = re.compile(r"\?")
# Statements run on the caller's thread, an event loop's too: a server that stops answering
# (a dropped route, a frozen host) must cost seconds, not the operating system's minutes.
# libpq's names; a URL that sets one of them (?connect_timeout=10) keeps its own value.
_BOUNDS: dict[str, int] = {
    "connect_timeout": 5,  # seconds to connect
    "keepalives": 1,
    "keepalives_idle": 10,  # an idle connection's silent peer is found in about 25 s
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # ms a sent statement may stay unacknowledged
}
# How long a call waits for a new connection. Connecting runs on a thread of its own: past this,
# the call fails at once (StateUnavailable) and the attempt goes on without it; calls meanwhile
# fail at once too, and the first call after the attempt succeeded uses its connection. A host
# that stopped answering then holds a caller for this long per connect_timeout, not each call.
RECONNECT_WAIT_S = 1.0
# Any constant: every migrator of any store takes this advisory lock, so they queue.
_MIGRATION_LOCK = 0x5357_4152_4D00  # "SWARM\0"


class PostgresStore:
    """``PostgresStore(url, lock="accounts")``: one connection to ``url``."""

    def __init__(self, url: str, *, lock: str) -> None:
        if not is_postgres_url(url):
            raise StorageError(f"not a postgresql:// URL: {shown(url)!r}")
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", lock):
            raise StorageError(f"lock must name a table, not {lock!r}")
        self._target = url
        self.lock = lock
        self._closed = False
        self._pg = self._connect()
        self._attempt: Future[Any] | None = None  # a connection being made in the background
        self._attempt_lock = threading.Lock()

    @property
    def kind(self) -> StoreKind:
        return "postgresql"

    @property
    def target(self) -> str:
        return self._target

    @property
    def closed(self) -> bool:
        return self._closed

    def _connect(self) -> Any:
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError as exc:  # pragma: no cover - an install without the extra
            raise StorageError(
                f"a postgresql:// store needs psycopg (pip install 'nostr-swarm[state]'): {exc}"
            ) from None
        given = psycopg.conninfo.conninfo_to_dict(self._target)
        bounds: dict[str, Any] = {k: v for k, v in _BOUNDS.items() if k not in given}
        try:
            return psycopg.connect(self._target, autocommit=True, row_factory=dict_row, **bounds)
        except psycopg.OperationalError as exc:
            raise StateUnavailable(f"PostgreSQL is unreachable: {exc}") from None

    def close(self) -> None:
        self._closed = True
        self._pg.close()
        with self._attempt_lock:
            attempt, self._attempt = self._attempt, None
        if attempt is not None:  # whatever it brings is closed too
            attempt.add_done_callback(_close_made)

    def script(self, ddl: str) -> None:
        with self._guard(), self._pg.transaction():  # a savepoint inside a caller's transaction
            for stmt in statements(ddl, "postgresql"):
                self._pg.execute(stmt)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        # `%` is psycopg's placeholder character: a literal one is doubled.
        text = _QMARK.sub("%s", sql.replace("%", "%%").replace("MAX(0,", "GREATEST(0,"))
        with self._guard():
            cursor: Rows = self._pg.execute(text, tuple(params))
            return cursor

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Statements run on a live connection; a lost one is StateUnavailable, and the next
        call connects again."""
        import psycopg

        if self._closed:
            raise StorageError(f"the store {shown(self._target)} is closed")
        if self._pg.closed or self._pg.broken:
            self._reconnect()  # raises StateUnavailable while PostgreSQL is still away
        elif self._stale():
            self._ping()
        try:
            yield
        except psycopg.OperationalError as exc:
            if self._pg.closed or self._pg.broken:
                self._drop()
                raise StateUnavailable(f"PostgreSQL went away: {exc}") from None
            # The server is there but could not run it now (a deadlock, a cancelled
            # statement): also a retry later, and the transaction was rolled back.
            raise StateUnavailable(f"PostgreSQL could not run the statement: {exc}") from None

    def _stale(self) -> bool:
        """Whether the server wrote to the connection while it sat idle: a server that goes down
        (a restart) closes it, and the next statement would meet the dead end. A cheap check (no
        round trip); a ping then finds out."""
        from psycopg.pq import TransactionStatus

        if self._pg.info.transaction_status != TransactionStatus.IDLE:
            return False  # inside a transaction: its statements answer for the connection
        try:
            return _readable(self._pg.fileno())
        except (OSError, ValueError):
            return True

    def _ping(self) -> None:
        """Find out before a statement whose outcome would then be unknown, and connect again."""
        import psycopg

        try:
            self._pg.execute("SELECT 1")
        except psycopg.OperationalError:
            self._reconnect()  # raises StateUnavailable while PostgreSQL is still away

    def _drop(self) -> None:
        try:
            self._pg.close()
        except Exception:
            pass

    def _reconnect(self) -> None:
        """Connect again, on a thread of its own; wait at most RECONNECT_WAIT_S for it, and not
        at all while an earlier attempt is still under way. Raises StateUnavailable when there
        is no connection (yet)."""
        self._drop()
        with self._attempt_lock:
            attempt = self._attempt
            if attempt is not None and attempt.done():
                self._attempt = None
                if attempt.exception() is None:  # made while nobody waited: use it
                    self._pg = attempt.result()
                    return
                attempt = None  # it failed: try again now
            wait = 0.0
            if attempt is None:
                attempt = self._attempt = Future()
                threading.Thread(
                    target=self._connect_into, args=(attempt,), name="pg-connect", daemon=True
                ).start()
                wait = RECONNECT_WAIT_S
        try:
            connection = attempt.result(timeout=wait)
        except FutureTimeout:
            raise StateUnavailable(
                f"PostgreSQL at {shown(self._target)} is not answering (still connecting)"
            ) from None
        except BaseException:
            with self._attempt_lock:
                if self._attempt is attempt:
                    self._attempt = None
            raise
        with self._attempt_lock:
            if self._attempt is attempt:
                self._attempt = None
        self._pg = connection

    def _connect_into(self, attempt: Future[Any]) -> None:
        try:
            attempt.set_result(self._connect())
        except BaseException as exc:  # the caller's to raise
            attempt.set_exception(exc)

    @contextmanager
    def tx(self, *, lock: bool = True) -> Iterator[PostgresStore]:
        with self._guard(), self._pg.transaction():
            if lock:
                self._pg.execute(f"LOCK TABLE {self.lock} IN EXCLUSIVE MODE")
            yield self

    @contextmanager
    def schema_tx(self) -> Iterator[PostgresStore]:
        with self._guard(), self._pg.transaction():
            self._pg.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            yield self


def _close_made(attempt: Future[Any]) -> None:
    if attempt.exception() is None:
        attempt.result().close()


def _readable(fd: int) -> bool:
    """Whether ``fd`` has something to read now (poll has no limit on descriptor numbers; a
    gateway with a thousand connections has descriptors past select's)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)  # Windows
    return bool(readable)
