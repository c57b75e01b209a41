"""relay_mock: a correct, fast NIP-01 relay for tests, demos and local development, with switches
to misbehave on purpose (latency, drops, disconnects, refused kinds, restarts)."""

from .config import Faults, Limits, RelayInfo
from .core import RelayCore
from .errors import PersistenceError, RelayMockError, RelayNotRunning
from .server import Relay, RelayStats
from .store import EventStore

__all__ = [
    "EventStore",
    "Faults",
    "Limits",
    "PersistenceError",
    "Relay",
    "RelayCore",
    "RelayInfo",
    "RelayMockError",
    "RelayNotRunning",
    "RelayStats",
]
