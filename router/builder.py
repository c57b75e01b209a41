"""The fluent builder for :class:`LmRouter`::

router = (
    LmRouter.builder()
    .add_backend(local, priority=0, max_concurrent=2)
    .add_backend(remote, cost_per_1k_input_usd=0.5, cost_per_1k_output_usd=1.5)
    .route_model("gpt-4", "remote")
    .default_backend("local")
    .strategy("hybrid")
    .build()
)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Self

from .backends.base import LmBackend
from .circuit_breaker import BreakerConfig
from .clock import Clock, Sleeper
from .errors import InvalidRequest
from .options import BackendOptions
from .rate_limit import RateLimitConfig
from .retry import RetryPolicy
from .router import LmRouter
from .strategy import Hybrid, RoutingStrategy, strategy_from_name

_RATE_KEYS = ("requests_per_second", "burst", "max_concurrent")


class LmRouterBuilder:
    """Collects backends, routes and policies; :meth:`build` checks them and makes the router.

    Defaults: hybrid strategy, 3 attempts per backend with backoff, breaker opening after 5
    failures within 60 s for 30 s, no rate limits, no queueing when every backend is at its
    limit (``RateLimited`` is raised at once).
    """

    def __init__(self) -> None:
        self._backends: list[tuple[LmBackend, BackendOptions]] = []
        self._routes: dict[str, list[str]] = {}
        self._default: str | None = None
        self._fallbacks: list[str] = []
        self._strategy: RoutingStrategy = Hybrid()
        self._retry = RetryPolicy()
        self._breaker = BreakerConfig()
        self._rate_limit = RateLimitConfig()
        self._alpha = 0.2
        self._queue_timeout_s = 0.0
        self._usd_per_sat: float | None = None
        self._clock: Clock = time.monotonic
        self._sleep: Sleeper = asyncio.sleep
        self._seed: int | None = None
        self._name = "router"

    def add_backend(
        self, backend: LmBackend, options: BackendOptions | None = None, **kwargs: Any
    ) -> Self:
        """Add a backend. Options come as a :class:`BackendOptions` or as its fields by keyword;
        ``requests_per_second``, ``burst`` and ``max_concurrent`` are accepted directly too."""
        if not isinstance(backend, LmBackend):
            raise TypeError(f"expected an LmBackend, got {type(backend).__name__}")
        if options is not None and kwargs:
            raise TypeError("pass either options or keyword options, not both")
        if options is None:
            rate = {k: kwargs.pop(k) for k in _RATE_KEYS if k in kwargs}
            if rate:
                if "rate_limit" in kwargs:
                    raise TypeError("pass rate_limit or its fields, not both")
                kwargs["rate_limit"] = RateLimitConfig(**rate)
            options = BackendOptions(**kwargs)
        self._backends.append((backend, options))
        return self

    def route_model(self, model: str, backend: str, *fallbacks: str) -> Self:
        """Send ``model`` to ``backend`` first (then ``fallbacks`` in order). ``model`` may be a
        glob pattern such as ``"swarm/*"``."""
        self._routes[model] = [backend, *fallbacks]
        return self

    def default_backend(self, name: str) -> Self:
        """The backend for models no other backend serves (and the last resort for every model)."""
        self._default = name
        return self

    def fallback_chain(self, *names: str) -> Self:
        """Backends to try, in order, after every other candidate has failed."""
        self._fallbacks = list(names)
        return self

    def strategy(self, strategy: RoutingStrategy | str, **kwargs: Any) -> Self:
        """A strategy object, or its name: ``cost``, ``latency``, ``hybrid``, ``round_robin``
        (least recently used), ``cost_priority_round_robin``, ``adaptive``, ``priority``
        (keywords go to its constructor)."""
        if isinstance(strategy, str):
            strategy = strategy_from_name(strategy, **kwargs)
        elif kwargs:
            raise TypeError("keyword arguments only go with a strategy name")
        self._strategy = strategy
        return self

    def retry(self, policy: RetryPolicy | None = None, **kwargs: Any) -> Self:
        """Default retry policy (``RetryPolicy`` or its fields; ``retry(max_attempts=1)`` turns
        retries off)."""
        self._retry = policy if policy is not None else RetryPolicy(**kwargs)
        return self

    def circuit_breaker(self, config: BreakerConfig | None = None, **kwargs: Any) -> Self:
        """Default breaker for every backend (``BreakerConfig`` or its fields)."""
        self._breaker = config if config is not None else BreakerConfig(**kwargs)
        return self

    def rate_limit(self, config: RateLimitConfig | None = None, **kwargs: Any) -> Self:
        """Default rate limit for every backend (``RateLimitConfig`` or its fields)."""
        self._rate_limit = config if config is not None else RateLimitConfig(**kwargs)
        return self

    def queue_timeout(self, seconds: float) -> Self:
        """When every candidate is at its rate limit, wait up to this long for capacity instead
        of raising ``RateLimited`` at once."""
        if seconds < 0:
            raise ValueError("queue timeout must not be negative")
        self._queue_timeout_s = seconds
        return self

    def ewma_alpha(self, alpha: float) -> Self:
        """How fast learned latency and error rate follow new observations (0 < alpha <= 1)."""
        self._alpha = alpha
        return self

    def btc_usd(self, price: float) -> Self:
        """Bitcoin's price in USD, to report sats-priced responses (the swarm) in USD too."""
        if price <= 0:
            raise ValueError("price must be positive")
        self._usd_per_sat = price / 100_000_000
        return self

    def clock(self, clock: Clock) -> Self:
        """The time source for breakers and rate limits (default ``time.monotonic``)."""
        self._clock = clock
        return self

    def sleeper(self, sleep: Sleeper) -> Self:
        """What waits between retries (default ``asyncio.sleep``)."""
        self._sleep = sleep
        return self

    def seed(self, seed: int) -> Self:
        """Seed the retry jitter, for repeatable schedules."""
        self._seed = seed
        return self

    def name(self, name: str) -> Self:
        self._name = name
        return self

    def build(self) -> LmRouter:
        if not self._backends:
            raise InvalidRequest("add at least one backend")
        return LmRouter(
            self._backends,
            routes=self._routes,
            default_backend=self._default,
            fallbacks=self._fallbacks,
            strategy=self._strategy,
            retry=self._retry,
            circuit_breaker=self._breaker,
            rate_limit=self._rate_limit,
            ewma_alpha=self._alpha,
            queue_timeout_s=self._queue_timeout_s,
            usd_per_sat=self._usd_per_sat,
            clock=self._clock,
            sleep=self._sleep,
            seed=self._seed,
            name=self._name,
        )
