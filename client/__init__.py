"""nostr-swarm client: the Nostr protocol core and the customer side of the swarm.

Layers, bottom up (docs/architecture.md): ``client.nostr`` (the protocol core, pure),
``client.net`` (relay connections and the pool), ``client.dvm`` (NIP-90 and NIP-89 events,
sealing; pure), ``client.wallet`` (NIP-47, BOLT11, payments), ``client.customer`` (quorum,
``SwarmClient``, discovery, reputation) and ``client.cli``. The public names are importable from
here; all but the core are imported on first use, so ``import client`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from client import errors
from client.nostr import nip04, nip19, nip44
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys

__version__ = "0.1.0"

_LAZY = {
    "RelayPool": "client.net.pool",
    "Subscription": "client.net.pool",
    "SwarmClient": "client.customer.swarm",
    "SwarmResult": "client.customer.swarm",
    "Progress": "client.customer.swarm",
    "ProviderState": "client.customer.swarm",
    "Timings": "client.customer.swarm",
    "JobCollector": "client.customer.swarm",
    "Quorum": "client.customer.quorum",
    "Vote": "client.customer.quorum",
    "Decision": "client.customer.quorum",
    "JobSpec": "client.dvm.nip90",
    "Job": "client.dvm.nip90",
    "JobRequest": "client.dvm.nip90",
    "JobResult": "client.dvm.nip90",
    "JobFeedback": "client.dvm.nip90",
    "Amount": "client.dvm.amounts",
    "CopyPolicy": "client.customer.copy_guard",
    "SealingMode": "client.customer.copy_guard",
    "SEALING_MODES": "client.customer.copy_guard",
    "ProviderDirectory": "client.customer.directory",
    "DirectoryWatcher": "client.customer.directory",
    "ProviderInfo": "client.customer.directory",
    "discover": "client.customer.directory",
    "ReputationLedger": "client.customer.reputation",
    "Selector": "client.customer.selection",
    "BestReputation": "client.customer.selection",
    "Cheapest": "client.customer.selection",
    "Fastest": "client.customer.selection",
    "Explore": "client.customer.selection",
    "Broadcast": "client.customer.selection",
    "AccessList": "client.customer.selection",
    "QuorumMembership": "client.customer.selection",
}
if TYPE_CHECKING:
    from client.customer.copy_guard import SEALING_MODES, CopyPolicy, SealingMode
    from client.customer.directory import (
        DirectoryWatcher,
        ProviderDirectory,
        ProviderInfo,
        discover,
    )
    from client.customer.quorum import Decision, Quorum, Vote
    from client.customer.reputation import ReputationLedger
    from client.customer.selection import (
        AccessList,
        BestReputation,
        Broadcast,
        Cheapest,
        Explore,
        Fastest,
        QuorumMembership,
        Selector,
    )
    from client.customer.swarm import (
        JobCollector,
        Progress,
        ProviderState,
        SwarmClient,
        SwarmResult,
        Timings,
    )
    from client.dvm.amounts import Amount
    from client.dvm.nip90 import Job, JobFeedback, JobRequest, JobResult, JobSpec
    from client.net.pool import RelayPool, Subscription


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
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
