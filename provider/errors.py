"""Errors the provider raises. All derive from ``client.nostr.errors.NostrSwarmError``."""

from __future__ import annotations

from client.nostr.errors import NostrSwarmError


class ProviderError(NostrSwarmError):
    """Base of the provider node's own errors."""


class ConfigError(ProviderError, ValueError):
    """A provider configuration (TOML file or environment) that is missing or invalid."""


class StoreError(ProviderError):
    """The provider's SQLite job store could not be opened or written."""
