"""The provider's durable state for ``swarm state migrate|check --provider-config provider.toml``
(the command is the router's; it finds this through the ``nostr_swarm.state_sources`` entry
point, since router does not import provider)."""

from __future__ import annotations

from client.storage import Schema

from .config import load_config
from .store import SCHEMA


def state_stores(config_path: str) -> list[tuple[str, tuple[Schema, ...]]]:
    """The stores a node with this provider.toml keeps: its job store (``[state] url``, else
    ``node.store``), as (target, schemas). Raises ``provider.errors.ConfigError`` (a
    ValueError) for a file that cannot be read or is not a valid configuration."""
    cfg = load_config(config_path)
    return [(cfg.store_target, (SCHEMA,))]
