"""API keys made through the admin API, kept in the gateway's state file so they outlive a
restart. Only each key's SHA-256 is stored: a secret is shown once, when it is made."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from pathlib import Path
from typing import Any

from client.storage import Migration, Schema, open_schema

_V1 = """
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    key_sha256 {bytes} NOT NULL UNIQUE,
    spec TEXT NOT NULL,
    created_at {bigint} NOT NULL,
    rotated_at {bigint}
);
"""

#: The admin-made keys' table, versioned (client.storage.migrations).
SCHEMA = Schema("keys", lock="api_keys", migrations=(Migration(1, "api_keys", _V1),))

#: Fields of a key that the admin API sets (the rest of ApiKeyConfig is the secret).
SPEC_FIELDS = (
    "models",
    "rpm",
    "tpm",
    "max_parallel",
    "budget_sats",
    "budget_usd",
    "budget_period",
)


def new_secret() -> str:
    return "sk-swarm-" + secrets.token_urlsafe(32)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class KeyRecords:
    """The admin-made keys in the gateway's state (its SQLite file or PostgreSQL)."""

    def __init__(self, target: str | Path) -> None:
        self._db = open_schema(target, SCHEMA)

    def close(self) -> None:
        self._db.close()

    def all(self) -> list[tuple[str, bytes, dict[str, Any]]]:
        rows = self._db.execute("SELECT name, key_sha256, spec FROM api_keys ORDER BY name")
        return [(r["name"], bytes(r["key_sha256"]), json.loads(r["spec"])) for r in rows.fetchall()]

    def create(self, name: str, spec: dict[str, Any]) -> str | None:
        """A new key; its secret, or None when the name is taken."""
        secret = new_secret()
        with self._db.tx() as db:
            taken = db.execute("SELECT 1 FROM api_keys WHERE name = ?", (name,)).fetchone()
            if taken is not None:
                return None
            db.execute(
                "INSERT INTO api_keys(name, key_sha256, spec, created_at) VALUES (?, ?, ?, ?)",
                (name, digest(secret), json.dumps(spec), int(time.time())),
            )
        return secret

    def rotate(self, name: str) -> str | None:
        """A new secret for ``name`` (the old one stops working); None if there is no such key."""
        secret = new_secret()
        with self._db.tx() as db:
            cur = db.execute(
                "UPDATE api_keys SET key_sha256 = ?, rotated_at = ? WHERE name = ?",
                (digest(secret), int(time.time()), name),
            )
            return secret if cur.rowcount else None

    def delete(self, name: str) -> bool:
        with self._db.tx() as db:
            return bool(db.execute("DELETE FROM api_keys WHERE name = ?", (name,)).rowcount)
