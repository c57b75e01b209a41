"""SQLite persistence: events survive a restart. The store in memory stays the source of truth;
this file mirrors it (insert on store, delete on replace/deletion/expiry) and reloads it on start.

Writes go into an open transaction that the server commits a few milliseconds later, so a burst of
events costs one commit, not one per event.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from client.nostr.errors import InvalidEvent

from .errors import PersistenceError
from .record import Record, parse_record
from .store import EventStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    raw TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_created_at ON events (created_at);
"""


class SqliteEvents:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise PersistenceError(f"cannot open event database {self.path}: {exc}") from None
        self._in_tx = False
        self.dirty = False

    def load_into(self, store: EventStore, now: float) -> int:
        """Replay the stored events (oldest first) through the store's rules; rows the rules now
        drop (expired, superseded, deleted) are removed from the file. Returns how many loaded."""
        stale: list[str] = []
        loaded = 0
        try:
            rows = self._db.execute("SELECT id, raw FROM events ORDER BY created_at, id").fetchall()
        except sqlite3.Error as exc:
            raise PersistenceError(f"{self.path} is not a relay_mock database: {exc}") from None
        for eid, raw in rows:
            try:
                rec = parse_record(json.loads(raw), raw, verify=False)
            except (ValueError, InvalidEvent):
                stale.append(eid)
                continue
            outcome = store.add(rec, now)
            if outcome.stored is None:
                stale.append(eid)
            else:
                loaded += 1
            stale.extend(r.id for r in outcome.removed)
        if stale:
            self.delete_ids(stale)
            self.commit()
        return loaded

    def _begin(self) -> None:
        if not self._in_tx:
            self._db.execute("BEGIN")
            self._in_tx = True
        self.dirty = True

    def save(self, rec: Record) -> None:
        self._begin()
        self._db.execute(
            "INSERT OR IGNORE INTO events (id, created_at, raw) VALUES (?, ?, ?)",
            (rec.id, rec.created_at, rec.raw),
        )

    def delete(self, records: Iterable[Record]) -> None:
        self.delete_ids([r.id for r in records])

    def delete_ids(self, ids: list[str]) -> None:
        self._begin()
        self._db.executemany("DELETE FROM events WHERE id = ?", [(i,) for i in ids])

    def commit(self) -> None:
        if self._in_tx:
            self._db.execute("COMMIT")
            self._in_tx = False
        self.dirty = False

    def close(self) -> None:
        self.commit()
        self._db.close()
