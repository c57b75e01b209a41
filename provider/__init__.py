"""nostr-swarm provider: sell completions from local models on Nostr (NIP-90 kind 5050).

``ProviderNode(config, backend, wallet)`` (a validated ``ProviderConfig``) or
``ProviderNode(keys, relays, backend, *, pricing=None, payment="free", wallet=None, ...)`` is an
async context manager that serves until closed; ``backend`` is any ``router.backends.LmBackend``
or an ``router.LmRouter``. Its decisions about each job are the job book's
(:mod:`provider.jobs`). See docs/provider-guide.md.
"""

from .announce import Offer, build_announcement, is_alive
from .config import ProviderConfig, load_config
from .errors import ConfigError, ProviderError, StoreError
from .limits import Limits
from .node import ProviderNode, ProviderStats
from .pricing import Price, Pricing
from .store import Earnings, JobStore

__all__ = [
    "ConfigError",
    "Earnings",
    "JobStore",
    "Limits",
    "Offer",
    "Price",
    "Pricing",
    "ProviderConfig",
    "ProviderError",
    "ProviderNode",
    "ProviderStats",
    "StoreError",
    "build_announcement",
    "is_alive",
    "load_config",
]
