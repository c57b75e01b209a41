"""What the durable stores raise: a store that cannot be reached, a schema this code cannot use."""

from __future__ import annotations

from client.nostr.errors import NostrSwarmError


class StorageError(NostrSwarmError):
    """A durable store cannot be opened or used as asked (an unknown URL scheme, a driver that
    is not installed, a schema this code does not know)."""


class StateUnavailable(StorageError, ConnectionError):
    """The state database cannot be reached (PostgreSQL down): nothing that moves money may go
    on until it is back."""


class SchemaTooNew(StorageError):
    """The database holds a newer schema than this code knows (a newer release migrated it):
    this code refuses it rather than read or write tables it does not understand."""

    def __init__(self, component: str, found: int, known: int, where: str) -> None:
        super().__init__(
            f"the {component} store in {where} is at schema version {found}, but this code "
            f"knows versions up to {known}: run the newer nostr-swarm that migrated it, or "
            "point this one at another database"
        )
        self.component = component
        self.found = found
        self.known = known
