"""Stores as earlier releases left them, and a fixture that gives a test both kinds of store.

``tests/support/state_v1/*.sql`` are dumps of SQLite files that nostr-swarm wrote before its
schemas were versioned (each store created its tables with ``CREATE TABLE IF NOT EXISTS``);
:func:`v1_file` replays one into a real file, so a test can open it with today's code.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

V1 = Path(__file__).parent / "state_v1"


def v1_file(name: str, path: Path) -> Path:
    """The v1 ``name`` store (gateway, payments, reputation, jobs) written to ``path``, in WAL
    mode as the code of then left it."""
    db = sqlite3.connect(path)
    db.executescript((V1 / f"{name}.sql").read_text())
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    return path


def tables(path: Path) -> dict[str, str]:
    """Every table's CREATE statement in a SQLite file (what a migration must leave alone)."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        db.close()
    return {name: sql for name, sql in rows if not name.startswith("sqlite_")}


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store of each kind: a SQLite file, and an empty PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "state.sqlite")
    url: str = request.getfixturevalue("pg_url")
    return url
