"""Versioned schemas: each store's tables are built by numbered steps, applied in order when the
store opens, and recorded in the database's ``schema_migrations`` table (one row per store and
step), so every process knows which version it is looking at.

::

    SCHEMA = Schema("payments", lock="payments", migrations=(
        Migration(1, "payments by payment hash", "CREATE TABLE IF NOT EXISTS payments (...)"),
        Migration(2, "payments remember their relay", "ALTER TABLE payments ADD COLUMN relay TEXT"),
    ))
    store = open_schema("payments.db", SCHEMA)   # at version 2, whatever it was before

Version 1 of every store is the schema that nostr-swarm created with ``CREATE TABLE IF NOT
EXISTS`` before migrations were versioned, so a file written then opens unchanged: its tables are
there already, step 1 finds them and records version 1. A database at a higher version than the
code knows is refused (:class:`~client.storage.errors.SchemaTooNew`): an older release must not
write to tables a newer one has changed. Migrations run in :meth:`SqlStore.schema_tx`, so
several processes starting at once apply each step exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from .errors import SchemaTooNew, StorageError
from .store import DIALECT, SqlStore, shown

MIGRATIONS_TABLE = "schema_migrations"

_MIGRATIONS_DDL = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    applied_at {{bigint}} NOT NULL,
    PRIMARY KEY (component, version)
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """Step ``version`` of a schema: ``ddl`` (statements with the dialect placeholders) and/or
    ``run``, for what DDL alone cannot say (it gets the store, inside the migration's
    transaction)."""

    version: int
    name: str
    ddl: str = ""
    run: Callable[[SqlStore], None] | None = None


@dataclass(frozen=True, slots=True)
class Schema:
    """A store's tables: ``component`` names its rows in ``schema_migrations``; ``lock`` is the
    table :meth:`SqlStore.tx` locks on PostgreSQL; ``migrations`` are numbered 1, 2, ..."""

    component: str
    lock: str
    migrations: tuple[Migration, ...]

    def __post_init__(self) -> None:
        if not self.component or not self.migrations:
            raise ValueError("a schema needs a component name and at least one migration")
        numbers = [m.version for m in self.migrations]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"{self.component}: migrations must be numbered 1..n, not {numbers}")

    @property
    def version(self) -> int:
        """The version this code brings a database to."""
        return len(self.migrations)


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """What a database holds of one schema, against what this code knows."""

    component: str
    found: int  # 0: nothing recorded (a new database, or a file from before versioned schemas)
    known: int

    @property
    def state(self) -> Literal["current", "behind", "ahead"]:
        if self.found == self.known:
            return "current"
        return "behind" if self.found < self.known else "ahead"


def recorded_version(store: SqlStore, component: str) -> int:
    """The highest step of ``component`` recorded in ``store`` (0 for none). Reads only."""
    if store.kind == "sqlite":
        present = store.execute(
            "SELECT 1 AS present FROM sqlite_master WHERE type = 'table' AND name = ?",
            (MIGRATIONS_TABLE,),
        ).fetchone()
    else:
        present = store.execute(
            "SELECT 1 AS present FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_name = ?",
            (MIGRATIONS_TABLE,),
        ).fetchone()
    if present is None:
        return 0
    row = store.execute(
        f"SELECT COALESCE(MAX(version), 0) AS v FROM {MIGRATIONS_TABLE} WHERE component = ?",
        (component,),
    ).fetchone()
    return int(row["v"]) if row is not None else 0


def status(store: SqlStore, schema: Schema) -> SchemaStatus:
    """Where ``store`` stands for ``schema``, without changing anything."""
    return SchemaStatus(schema.component, recorded_version(store, schema.component), schema.version)


def migrate(store: SqlStore, schema: Schema) -> SchemaStatus:
    """Apply the steps ``store`` lacks, each recorded in ``schema_migrations``, all in one
    transaction; returns the status found before. Raises :class:`SchemaTooNew` for a database
    ahead of the code (and changes nothing)."""
    with store.schema_tx() as db:
        db.script(_MIGRATIONS_DDL)
        found = recorded_version(db, schema.component)
        if found > schema.version:
            raise SchemaTooNew(schema.component, found, schema.version, shown(store.target))
        for step in schema.migrations[found:]:
            if step.ddl:
                db.script(step.ddl)
            if step.run is not None:
                step.run(db)
            db.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (component, version, name, applied_at)"
                " VALUES (?, ?, ?, ?)",
                (schema.component, step.version, step.name, int(time.time())),
            )
    return SchemaStatus(schema.component, found, schema.version)


def add_columns(store: SqlStore, table: str, columns: Sequence[tuple[str, str]]) -> None:
    """Add those of ``columns`` (name, declaration with the dialect placeholders) that
    ``table`` lacks: how a step brings a table written by an earlier release up to the one its
    ``CREATE TABLE`` describes."""
    if store.kind == "sqlite":
        have = {r["name"] for r in store.execute(f"PRAGMA table_info({table})").fetchall()}
    else:
        have = {
            r["column_name"]
            for r in store.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = ?",
                (table,),
            ).fetchall()
        }
    if not have:
        raise StorageError(f"cannot add columns to {table}: there is no such table")
    for name, decl in columns:
        if name not in have:
            typed = decl.format(**DIALECT[store.kind])
            store.execute(f"ALTER TABLE {table} ADD COLUMN {name} {typed}")
