"""Errors raised by relay_mock (all derive from the project's base error)."""

from __future__ import annotations

from client.nostr.errors import NostrSwarmError


class RelayMockError(NostrSwarmError):
    """Base of relay_mock's own errors."""


class RelayNotRunning(RelayMockError):
    """The relay was asked for its URL or to serve while it is not listening."""


class PersistenceError(RelayMockError):
    """The SQLite file cannot be opened or holds something that is not an event store."""
