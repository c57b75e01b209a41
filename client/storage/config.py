"""The ``state`` settings: where a process keeps its durable state and, optionally, the Redis
that shares its hot counters. One schema for the gateway's ``state:`` block in config.yaml and
the provider's ``[state]`` table in provider.toml; each adds only what is its own."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator

from .opening import sqlite_path
from .store import is_postgres_url


class StateSettings(BaseModel):
    """``url``: ``postgresql://...`` (shared by every process that names it), ``sqlite:///PATH``
    or a plain path (one process), or left out for the process's own default file.
    ``redis``: ``redis://...``, ``rediss://...`` or ``unix://...``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None
    redis: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("state.url must not be empty")
        if not is_postgres_url(value) and not sqlite_path(value):
            raise ValueError(
                f"state.url must be postgresql://..., sqlite:///PATH or a file path, not {value!r}"
            )
        return value

    @field_validator("redis")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"state.redis must be a redis:// URL, not {value!r}")
        return value

    @property
    def shared(self) -> bool:
        """Whether the state is in PostgreSQL, shared with other processes."""
        return self.url is not None and is_postgres_url(self.url)

    def resolve(self, default: str | Path) -> str:
        """The store's target: the PostgreSQL URL, or the SQLite file (``default`` when no
        ``url`` is set)."""
        if self.url is None:
            return str(Path(default).expanduser()) if str(default) != ":memory:" else ":memory:"
        if self.shared:
            return self.url
        path = sqlite_path(self.url)
        assert path is not None  # the validator admitted only these
        return path if path == ":memory:" else str(Path(path).expanduser())
