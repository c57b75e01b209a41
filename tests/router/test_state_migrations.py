"""The gateway's stores under versioned migrations: a state file written before versions existed
(tests/support/state_v1/gateway.sql) and one from the spend book's first schema open with their
money (the spend book's step 2 only adds indexes); a database migrated by a newer release is
refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from client.storage import SchemaTooNew, open_store, recorded_version
from router.gateway.key_db import KeyRecords, digest
from router.spend import SpendBook
from tests.support.state_files import tables, v1_file

PENDING = "bb" * 32


def test_a_v1_state_file_opens_unchanged(tmp_path: Path) -> None:
    path = v1_file("gateway", tmp_path / "gateway.sqlite")
    before = tables(path)
    book = SpendBook(path, clock=lambda: 1_700_000_100)
    keys = KeyRecords(path)
    # The tables are as they were (the spend book's step 2 adds indexes, not columns); only
    # schema_migrations is new: spend at version 2, keys at 1.
    after = tables(path)
    assert {k: v for k, v in after.items() if k != "schema_migrations"} == before
    store = open_store(path, lock="accounts")
    assert recorded_version(store, "spend") == 2 and recorded_version(store, "keys") == 1
    indexes = {
        r["name"] for r in store.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    }
    assert {"holds_open", "pending_hold"} <= indexes
    store.close()
    # The money is where it was: 5 sats spent, 3 sats still pending, the same key.
    st = book.status("key:alice")
    assert (st.spent_msats, st.pending_msats, st.reserved_msats) == (5_000, 3_000, 0)
    assert [p.payment_hash for p in book.pending()] == [PENDING]
    assert book.audit() == []
    assert [(name, spec) for name, _, spec in keys.all()] == [("bob", {"models": ["m"], "rpm": 10})]
    # ... and the book goes on from there.
    with book.reserve(["key:alice"], msats=40_000) as hold:
        assert hold.authorize("cc" * 32, 40_000)
        hold.outcome("cc" * 32, "paid")
    assert book.resolve(PENDING, True)
    assert book.status("key:alice").spent_msats == 48_000 and book.audit() == []
    secret = keys.create("carol", {})
    assert secret is not None and digest(secret) in {d for _, d, _ in keys.all()}
    book.close()
    keys.close()


def test_a_file_from_the_spend_books_first_schema_gains_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE holds (id INTEGER PRIMARY KEY AUTOINCREMENT, msats INTEGER NOT NULL,"
        " usd_nanos INTEGER NOT NULL, charged_msats INTEGER NOT NULL DEFAULT 0,"
        " charged_usd_nanos INTEGER NOT NULL DEFAULT 0, open INTEGER NOT NULL DEFAULT 1,"
        " label TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL);"
    )
    db.close()
    book = SpendBook(path)
    book.ensure("a", budget_msats=5000)
    with book.reserve(["a"], msats=3000, who="key:a", model="m") as hold:
        assert hold.authorize("h", 3000) and not hold.authorize("h2", 1)
    assert "initial_msats" in tables(path)["holds"]
    assert book.audit() == []
    book.close()


def test_a_database_from_a_newer_release_is_refused(store_target: str) -> None:
    SpendBook(store_target).close()
    store = open_store(store_target, lock="accounts")
    store.execute(
        "INSERT INTO schema_migrations (component, version, name, applied_at)"
        " VALUES ('spend', 3, 'from the future', 0)"
    )
    store.close()
    with pytest.raises(SchemaTooNew, match=r"spend store .* schema version 3"):
        SpendBook(store_target)
    KeyRecords(store_target).close()  # another store of the same database is not affected
