"""Versioned migrations on SQLite and PostgreSQL: a fresh database gets every step, an older one
only those it lacks, a newer one is refused, a step that fails leaves nothing, and processes that
start together apply each step once."""

from __future__ import annotations

import threading

import pytest

from client.storage import (
    Migration,
    Schema,
    SchemaTooNew,
    SqlStore,
    StorageError,
    add_columns,
    migrate,
    open_schema,
    open_store,
    recorded_version,
    status,
)

NOTES_V1 = Migration(1, "notes", "CREATE TABLE IF NOT EXISTS notes (id TEXT PRIMARY KEY)")
NOTES_V2 = Migration(2, "notes have a size", "ALTER TABLE notes ADD COLUMN size {bigint}")


def schema(*steps: Migration) -> Schema:
    return Schema("notes", lock="notes", migrations=steps)


def versions(store: SqlStore, component: str = "notes") -> list[tuple[int, str]]:
    rows = store.execute(
        "SELECT version, name FROM schema_migrations WHERE component = ? ORDER BY version",
        (component,),
    ).fetchall()
    return [(r["version"], r["name"]) for r in rows]


def test_a_fresh_database_gets_every_step_recorded(store_target: str) -> None:
    store = open_schema(store_target, schema(NOTES_V1, NOTES_V2))
    assert versions(store) == [(1, "notes"), (2, "notes have a size")]
    store.execute("INSERT INTO notes (id, size) VALUES (?, ?)", ("a", 3_000_000_000))
    assert status(store, schema(NOTES_V1, NOTES_V2)).state == "current"
    store.close()


def test_an_older_database_gets_only_the_steps_it_lacks(store_target: str) -> None:
    ran: list[int] = []
    v1 = Migration(1, "notes", NOTES_V1.ddl, run=lambda db: ran.append(1))
    open_schema(store_target, schema(v1)).close()
    store = open_store(store_target, lock="notes")
    store.execute("INSERT INTO notes (id) VALUES ('kept')")
    later = schema(v1, Migration(2, "sizes", NOTES_V2.ddl, run=lambda db: ran.append(2)))
    st = status(store, later)
    assert (st.found, st.known, st.state) == (1, 2, "behind")
    assert migrate(store, later).found == 1
    assert ran == [1, 2]  # step 1 is not run again
    assert migrate(store, later).found == 2 and ran == [1, 2]  # nothing left to do
    assert [r["id"] for r in store.execute("SELECT id FROM notes")] == ["kept"]
    store.close()


def test_a_database_newer_than_the_code_is_refused(store_target: str) -> None:
    open_schema(store_target, schema(NOTES_V1, NOTES_V2)).close()
    with pytest.raises(SchemaTooNew) as caught:
        open_schema(store_target, schema(NOTES_V1))
    assert (caught.value.found, caught.value.known) == (2, 1)
    assert "schema version 2" in str(caught.value) and "up to 1" in str(caught.value)
    store = open_store(store_target, lock="notes")
    assert status(store, schema(NOTES_V1)).state == "ahead"
    assert recorded_version(store, "notes") == 2  # refusing changed nothing
    store.close()


def test_a_failing_step_leaves_the_database_as_it_was(store_target: str) -> None:
    def broken(db: SqlStore) -> None:
        db.execute("INSERT INTO notes (id) VALUES ('half')")
        raise RuntimeError("step 2 fails halfway")

    open_schema(store_target, schema(NOTES_V1)).close()
    failing = schema(
        NOTES_V1, Migration(2, "extra table", "CREATE TABLE extra (x TEXT)", run=broken)
    )
    with pytest.raises(RuntimeError):
        open_schema(store_target, failing)
    store = open_store(store_target, lock="notes")
    assert recorded_version(store, "notes") == 1
    assert store.execute("SELECT id FROM notes").fetchall() == []
    store.execute("CREATE TABLE extra (x TEXT)")  # it was never made
    store.close()


def test_schemas_of_one_database_keep_their_own_versions(store_target: str) -> None:
    other = Schema(
        "tags", lock="tags", migrations=(Migration(1, "tags", "CREATE TABLE tags (t TEXT)"),)
    )
    open_schema(store_target, schema(NOTES_V1, NOTES_V2)).close()
    store = open_schema(store_target, other)
    assert versions(store, "tags") == [(1, "tags")] and len(versions(store)) == 2
    assert recorded_version(store, "nothing") == 0
    store.close()


def test_processes_starting_together_apply_each_step_once(store_target: str) -> None:
    """Six openers (six processes of a fleet) migrate one fresh database at the same moment."""
    opened: list[SqlStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_one() -> None:
        try:
            start.wait()
            opened.append(open_schema(store_target, schema(NOTES_V1, NOTES_V2)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(opened) == 6
    assert versions(opened[0]) == [(1, "notes"), (2, "notes have a size")]
    for s in opened:
        s.close()


def test_add_columns_adds_only_what_is_missing(store_target: str) -> None:
    store = open_store(store_target, lock="t")
    store.script("CREATE TABLE t (a TEXT)")
    add_columns(store, "t", [("a", "TEXT"), ("b", "{bigint} NOT NULL DEFAULT 0")])
    add_columns(store, "t", [("b", "{bigint} NOT NULL DEFAULT 0")])  # there already: nothing
    store.execute("INSERT INTO t (a) VALUES ('x')")
    assert store.execute("SELECT a, b FROM t").fetchall() == [{"a": "x", "b": 0}]
    with pytest.raises(StorageError, match="no such table"):
        add_columns(store, "absent", [("c", "TEXT")])
    store.close()


def test_a_schema_must_number_its_steps_from_one() -> None:
    with pytest.raises(ValueError, match=r"numbered 1\.\.n"):
        Schema("x", lock="x", migrations=(NOTES_V2,))
    with pytest.raises(ValueError, match=r"numbered 1\.\.n"):
        Schema("x", lock="x", migrations=(NOTES_V1, NOTES_V1))
    with pytest.raises(ValueError, match="at least one"):
        Schema("x", lock="x", migrations=())
