"""The one store interface on SQLite and PostgreSQL: ``?`` placeholders and dict rows, the
dialect's types, transactions that roll back, locking transactions that no other connection
interleaves with, and opening by URL."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from client.storage import (
    SqliteStore,
    SqlStore,
    StateUnavailable,
    StorageError,
    one,
    open_store,
    shown,
    statements,
)
from router.state_db import PostgresStore
from tests.support.servers import Postgres, free_port

DDL = """
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    n {bigint} NOT NULL,
    x {real},
    blob {bytes}
);
CREATE TABLE IF NOT EXISTS events (id {serial}, note TEXT NOT NULL)
"""


def opened(target: str) -> SqlStore:
    store = open_store(target, lock="counters")
    store.script(DDL)
    return store


def test_rows_are_dicts_and_the_wide_types_hold_wide_values(store_target: str) -> None:
    store = opened(store_target)
    assert store.kind == ("postgresql" if "://" in store_target else "sqlite")
    big = 2**40 * 1000  # millisats past any 4-byte integer
    store.execute(
        "INSERT INTO counters (name, n, x, blob) VALUES (?, ?, ?, ?)",
        ("a", big, 1_800_000_000.125, b"\x00\xff"),
    )
    row = store.execute("SELECT * FROM counters WHERE name = ?", ("a",)).fetchone()
    assert row == {"name": "a", "n": big, "x": 1_800_000_000.125, "blob": b"\x00\xff"}
    # `%` is an ordinary character in the SQL whatever the driver's placeholder is.
    assert one(store.execute("SELECT name FROM counters WHERE name LIKE 'a%'"))["name"] == "a"
    ids = [
        one(store.execute("INSERT INTO events (note) VALUES (?) RETURNING id", (n,)))["id"]
        for n in ("first", "second")
    ]
    assert ids[1] > ids[0]
    assert [r["note"] for r in store.execute("SELECT note FROM events ORDER BY id")] == [
        "first",
        "second",
    ]
    with pytest.raises(StorageError, match="no row"):
        one(store.execute("SELECT n FROM counters WHERE name = ?", ("nobody",)))
    store.close()
    assert store.closed


def test_a_transaction_that_raises_leaves_nothing(store_target: str) -> None:
    store = opened(store_target)
    with pytest.raises(RuntimeError), store.tx() as db:
        db.execute("INSERT INTO counters (name, n) VALUES ('gone', 1)")
        raise RuntimeError("after the write")
    with store.tx() as db:
        db.execute("INSERT INTO counters (name, n) VALUES ('kept', 1)")
        # A nested transaction is a savepoint: its failure leaves the outer one's writes.
        with pytest.raises(RuntimeError), db.tx() as inner:
            inner.execute("INSERT INTO counters (name, n) VALUES ('inner', 1)")
            raise RuntimeError("inside")
    names = [r["name"] for r in store.execute("SELECT name FROM counters ORDER BY name")]
    assert names == ["kept"]
    store.close()


def test_locking_transactions_of_many_connections_never_interleave(store_target: str) -> None:
    """Eight connections read a counter and write it back plus one, 25 times each, at once:
    a read-then-write that another could interleave with would lose increments."""
    opened(store_target).execute("INSERT INTO counters (name, n) VALUES ('c', 0)")
    stores = [open_store(store_target, lock="counters") for _ in range(8)]
    start = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def work(store: SqlStore) -> None:
        try:
            start.wait()
            for _ in range(25):
                with store.tx() as db:
                    n = one(db.execute("SELECT n FROM counters WHERE name = 'c'"))["n"]
                    db.execute("UPDATE counters SET n = ? WHERE name = 'c'", (n + 1,))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert one(stores[0].execute("SELECT n FROM counters WHERE name = 'c'"))["n"] == 200
    for s in stores:
        s.close()


def test_opening_by_url(tmp_path: Path, pg_url: str) -> None:
    plain = open_store(tmp_path / "a" / "b.sqlite", lock="t")  # folders are made
    assert isinstance(plain, SqliteStore) and (tmp_path / "a" / "b.sqlite").exists()
    plain.close()
    as_url = open_store(f"sqlite:///{tmp_path}/c.sqlite", lock="t")
    assert as_url.target == f"{tmp_path}/c.sqlite"
    as_url.close()
    pg = open_store(pg_url, lock="t")
    assert isinstance(pg, PostgresStore) and pg.kind == "postgresql"
    pg.close()
    with pytest.raises(StorageError, match="not 'mysql://"):
        open_store("mysql://x@127.0.0.1/db", lock="t")
    with pytest.raises(StateUnavailable, match="PostgreSQL is unreachable"):
        open_store(f"postgresql://x@127.0.0.1:{free_port()}/none", lock="t")
    with pytest.raises(StorageError, match="lock must name a table"):
        open_store(pg_url, lock="t; DROP TABLE x")


def test_what_messages_show_of_a_target() -> None:
    assert shown("postgresql://swarm:s3cret@db.lan:5432/swarm") == "postgresql://db.lan:5432/swarm"
    assert shown("/var/lib/swarm/state.sqlite") == "/var/lib/swarm/state.sqlite"


def test_ddl_placeholders_per_dialect() -> None:
    ddl = "CREATE TABLE t (id {serial}, n {bigint}, x {real}, b {bytes}); -- done\n"
    assert statements(ddl, "sqlite") == [
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER, x REAL, b BLOB)"
    ]
    assert statements(ddl, "postgresql") == [
        "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, n BIGINT, x DOUBLE PRECISION, b BYTEA)"
    ]


def test_postgres_going_away_and_coming_back(postgres: Postgres, pg_url: str) -> None:
    store = opened(pg_url)
    store.execute("INSERT INTO counters (name, n) VALUES ('c', 1)")
    # A restart while the connection sits idle: noticed before the next statement is sent.
    postgres.kill()
    postgres.start()
    store.execute("UPDATE counters SET n = n + 1 WHERE name = 'c'")
    postgres.kill()
    try:
        with pytest.raises(StateUnavailable):
            store.execute("UPDATE counters SET n = n + 1 WHERE name = 'c'")
        with pytest.raises(StateUnavailable, match="unreachable"), store.tx():
            pass  # never reached: no transaction without the server
    finally:
        postgres.start()
    with store.tx() as db:  # back by itself
        db.execute("UPDATE counters SET n = n + 1 WHERE name = 'c'")
    assert one(store.execute("SELECT n FROM counters WHERE name = 'c'"))["n"] == 3
    store.close()
    with pytest.raises(StorageError, match="is closed"):
        store.execute("SELECT 1")


def _silent_server() -> tuple[socket.socket, int]:
    """A TCP port that takes connections and never says a word: a PostgreSQL host that stopped
    answering (its kernel still completes the handshake)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    return server, int(server.getsockname()[1])


def _outcome_of_opening(url: str) -> BaseException | None:
    """What opening ``url`` raised, from a thread the test can stop waiting for."""
    result: list[BaseException | None] = []

    def open_it() -> None:
        try:
            PostgresStore(url, lock="counters").close()
            result.append(None)
        except BaseException as exc:  # the outcome is the test's to judge
            result.append(exc)

    worker = threading.Thread(target=open_it, daemon=True)
    worker.start()
    worker.join(30)  # unbounded, it would wait for the operating system: minutes
    assert result, "opening a store on a silent host did not come back"
    return result[0]


def test_a_host_that_never_answers_is_unavailable_within_the_connect_bound() -> None:
    server, port = _silent_server()
    with server:
        outcome = _outcome_of_opening(f"postgresql://postgres@127.0.0.1:{port}/x")
    assert isinstance(outcome, StateUnavailable)
    assert "unreachable" in str(outcome)


def test_a_url_keeps_its_own_connect_timeout(pg_url: str) -> None:
    store = PostgresStore(pg_url + "?connect_timeout=17", lock="counters")
    try:
        # The server's view of the session is unchanged; what libpq was told is in the DSN.
        assert "connect_timeout=17" in store._pg.info.dsn
        assert "tcp_user_timeout=10000" in store._pg.info.dsn
    finally:
        store.close()
