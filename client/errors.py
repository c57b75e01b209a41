"""The public home of every error nostr-swarm raises on the Nostr side (``from client.errors
import QuorumNotReached``); they are defined in :mod:`client.nostr.errors`, the bottom layer."""

from client.nostr.errors import *  # noqa: F403
from client.nostr.errors import __all__ as __all__
