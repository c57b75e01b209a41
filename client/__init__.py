"""nostr-swarm client: the Nostr protocol core and the customer side of the swarm."""

from __future__ import annotations

from . import errors, nip04, nip19, nip44
from .event import Event
from .filter import Filter
from .keys import Keys

__version__ = "0.1.0"

__all__ = ["Event", "Filter", "Keys", "__version__", "errors", "nip04", "nip19", "nip44"]
