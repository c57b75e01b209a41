"""nostr-swarm client: the Nostr protocol core and the customer side of the swarm.

The protocol core (keys, events, filters, NIP-19/44/04, wire messages, NIP-90, quorum) has no
I/O. The relay pool, the swarm client and the wallets sit on top; they are imported on first use
so that ``import client`` (and ``swarm --version``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import errors, nip04, nip19, nip44
from .event import Event
from .filter import Filter
from .keys import Keys

__version__ = "0.1.0"

_LAZY = {
    "RelayPool": "pool",
    "Subscription": "pool",
    "SwarmClient": "swarm",
    "SwarmResult": "swarm",
    "Progress": "swarm",
    "ProviderState": "swarm",
    "Timings": "swarm",
    "JobCollector": "swarm",
    "Quorum": "quorum",
    "Vote": "quorum",
    "Decision": "quorum",
    "JobSpec": "nip90",
    "Job": "nip90",
    "JobRequest": "nip90",
    "JobResult": "nip90",
    "JobFeedback": "nip90",
    "Amount": "nip90",
    "CopyPolicy": "sealing",
    "SealingMode": "sealing",
    "SEALING_MODES": "sealing",
    "ProviderDirectory": "directory",
    "DirectoryWatcher": "directory",
    "ProviderInfo": "directory",
    "discover": "directory",
    "ReputationLedger": "reputation",
    "Selector": "selection",
    "BestReputation": "selection",
    "Cheapest": "selection",
    "Fastest": "selection",
    "Explore": "selection",
    "Broadcast": "selection",
    "AccessList": "selection",
    "QuorumMembership": "selection",
}
_LAZY_MODULES = (
    "nip90", "quorum", "pool", "swarm", "wallet", "messages", "sealing", "directory",
    "reputation", "selection",
)  # fmt: skip

if TYPE_CHECKING:
    from .directory import DirectoryWatcher, ProviderDirectory, ProviderInfo, discover
    from .nip90 import Amount, Job, JobFeedback, JobRequest, JobResult, JobSpec
    from .pool import RelayPool, Subscription
    from .quorum import Decision, Quorum, Vote
    from .reputation import ReputationLedger
    from .sealing import SEALING_MODES, CopyPolicy, SealingMode
    from .selection import (
        AccessList,
        BestReputation,
        Broadcast,
        Cheapest,
        Explore,
        Fastest,
        QuorumMembership,
        Selector,
    )
    from .swarm import JobCollector, Progress, ProviderState, SwarmClient, SwarmResult, Timings


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'client' has no attribute {name!r}")


__all__ = [
    "SEALING_MODES",
    "AccessList",
    "Amount",
    "BestReputation",
    "Broadcast",
    "Cheapest",
    "CopyPolicy",
    "Decision",
    "DirectoryWatcher",
    "Event",
    "Explore",
    "Fastest",
    "Filter",
    "Job",
    "JobCollector",
    "JobFeedback",
    "JobRequest",
    "JobResult",
    "JobSpec",
    "Keys",
    "Progress",
    "ProviderDirectory",
    "ProviderInfo",
    "ProviderState",
    "Quorum",
    "QuorumMembership",
    "RelayPool",
    "ReputationLedger",
    "SealingMode",
    "Selector",
    "Subscription",
    "SwarmClient",
    "SwarmResult",
    "Timings",
    "Vote",
    "__version__",
    "discover",
    "errors",
    "nip04",
    "nip19",
    "nip44",
]
