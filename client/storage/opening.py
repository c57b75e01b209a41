"""Every durable store opens here, by URL: a SQLite path (or ``sqlite:///PATH``) or a
``postgresql://`` URL.

PostgreSQL's implementation is not in ``client`` (whose install has no database driver): a
package registers it in the ``nostr_swarm.state_stores`` entry-point group under the name
``postgresql`` (``router.state_db:PostgresStore``, with the ``state`` extra's psycopg).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

from .errors import StorageError
from .migrations import Schema, migrate
from .sqlite import SqliteStore, Synchronous
from .store import SqlStore, is_postgres_url

STORE_GROUP = "nostr_swarm.state_stores"


class StoreOpener(Protocol):
    """What a registered entry point is: ``lock`` names the table :meth:`SqlStore.tx` locks."""

    def __call__(self, target: str, *, lock: str) -> SqlStore: ...


def sqlite_path(target: str | Path) -> str | None:
    """The file a SQLite target names (``sqlite:///PATH`` or a plain path), None for a URL of
    another kind."""
    text = str(target)
    if text.startswith("sqlite:///"):
        return text[len("sqlite:///") :]
    return None if "://" in text else text


def open_store(target: str | Path, *, lock: str, synchronous: Synchronous = "FULL") -> SqlStore:
    """A connection to ``target``. ``lock``: the table ``tx()`` locks on PostgreSQL;
    ``synchronous``: SQLite's durability (see :class:`SqliteStore`). Raises
    :class:`StorageError` for a URL of another kind or PostgreSQL without its driver, and
    :class:`~client.storage.errors.StateUnavailable` when PostgreSQL does not answer."""
    text = str(target)
    if is_postgres_url(text):
        return _opener("postgresql")(text, lock=lock)
    path = sqlite_path(text)
    if path is None:
        raise StorageError(
            f"a store is a SQLite path, sqlite:///PATH or postgresql://..., not {text!r}"
        )
    return SqliteStore(path, synchronous=synchronous)


def open_schema(
    target: str | Path, schema: Schema, *, synchronous: Synchronous = "FULL"
) -> SqlStore:
    """:func:`open_store`, then ``schema``'s migrations: the store at the code's version."""
    store = open_store(target, lock=schema.lock, synchronous=synchronous)
    try:
        migrate(store, schema)
    except BaseException:
        store.close()
        raise
    return store


def _opener(kind: str) -> StoreOpener:
    found = [ep for ep in entry_points(group=STORE_GROUP) if ep.name == kind]
    if not found:
        raise StorageError(
            f"no {kind} store is installed: install nostr-swarm with the state extra "
            "(pip install 'nostr-swarm[state]')"
        )
    try:
        opener: StoreOpener = found[0].load()
    except ImportError as exc:
        raise StorageError(
            f"the {kind} store cannot be loaded ({exc}): install nostr-swarm with the state "
            "extra (pip install 'nostr-swarm[state]')"
        ) from None
    return opener
