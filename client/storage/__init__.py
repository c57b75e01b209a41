"""Durable state behind one interface: :class:`SqlStore` (``execute`` with ``?`` placeholders and
dict rows, ``tx``, ``script`` with the dialect placeholders), its SQLite implementation, versioned
migrations, and :func:`open_schema`, which opens any store by URL::

    from client.storage import Migration, Schema, open_schema

    SCHEMA = Schema("notes", lock="notes", migrations=(
        Migration(1, "notes", "CREATE TABLE IF NOT EXISTS notes (id TEXT PRIMARY KEY, n {bigint})"),
    ))
    store = open_schema("notes.sqlite", SCHEMA)     # or "postgresql://user@host/db"
    store.execute("INSERT INTO notes VALUES (?, ?)", ("a", 1))
    store.execute("SELECT n FROM notes WHERE id = ?", ("a",)).fetchone()   # {'n': 1}

Every store of nostr-swarm opens this way: the customer's payment ledger
(``client.wallet.payment_ledger``) and reputation ledger (``client.customer.reputation``), the
gateway's spend book and key records, the provider's job store. This layer sits beside
``client.net`` and ``client.dvm``, above ``client.nostr`` only; PostgreSQL's implementation is
``router.state_db.PostgresStore`` (found through an entry point, see :mod:`.opening`).
"""

from __future__ import annotations

from .errors import SchemaTooNew, StateUnavailable, StorageError
from .migrations import (
    MIGRATIONS_TABLE,
    Migration,
    Schema,
    SchemaStatus,
    add_columns,
    migrate,
    recorded_version,
    status,
)
from .opening import STORE_GROUP, StoreOpener, open_schema, open_store, sqlite_path
from .sqlite import SqliteStore, Synchronous
from .store import (
    DIALECT,
    Row,
    Rows,
    SqlStore,
    StoreKind,
    is_postgres_url,
    one,
    shown,
    statements,
)

__all__ = [
    "DIALECT",
    "MIGRATIONS_TABLE",
    "STORE_GROUP",
    "Migration",
    "Row",
    "Rows",
    "Schema",
    "SchemaStatus",
    "SchemaTooNew",
    "SqlStore",
    "SqliteStore",
    "StateUnavailable",
    "StorageError",
    "StoreKind",
    "StoreOpener",
    "Synchronous",
    "add_columns",
    "is_postgres_url",
    "migrate",
    "one",
    "open_schema",
    "open_store",
    "recorded_version",
    "shown",
    "sqlite_path",
    "statements",
    "status",
]
