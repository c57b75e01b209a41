"""What the router knows about each backend while it runs: configuration resolved into plain
attributes (read on every request), learned figures and counters, and the metrics snapshot."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .backends.base import LmBackend
from .circuit_breaker import BreakerConfig, BreakerShare, CircuitBreaker, CircuitState
from .options import BackendOptions
from .rate_limit import RateLimitConfig, bucket_for
from .retry import RetryPolicy

_SAMPLES = 1024  # latency samples kept per backend for the p95 (a ring buffer)


class _NoBreaker:
    """Stands in when the breaker is disabled, so the hot path needs no ``None`` checks."""

    __slots__ = ()
    blocked_until = 0.0
    trips = 0
    state = CircuitState.CLOSED
    probing = False

    def state_at(self, now: float) -> CircuitState:
        return CircuitState.CLOSED

    def available(self, now: float) -> bool:
        return True

    def allow(self, now: float) -> bool:
        return True

    def release_probe(self) -> None:
        pass

    def record_success(self, now: float) -> None:
        pass

    def record_failure(self, now: float) -> None:
        pass

    def retry_after(self, now: float) -> float:
        return 0.0

    def share(self, now: float) -> BreakerShare:
        return BreakerShare(CircuitState.CLOSED)

    def adopt(self, share: BreakerShare, now: float) -> None:
        pass

    def defer_probe(self, now: float, wait_s: float) -> None:
        pass


@dataclass(frozen=True, slots=True)
class BackendMetrics:
    """Per-backend counters and latency figures (latencies in milliseconds, successes only)."""

    name: str
    requests: int
    successes: int
    failures: int
    rate_limited: int
    breaker_trips: int
    breaker_state: str
    in_flight: int
    avg_latency_ms: float
    p95_latency_ms: float
    ewma_latency_ms: float
    error_rate: float
    cost_per_1k_tokens_usd: float
    last_request_at: float | None


@dataclass(frozen=True, slots=True)
class BackendStats:
    """One backend in :class:`RouterStats`: counters of the router's own attempts, outside
    observations (``record_request``), and the learned figures the strategies read."""

    name: str
    enabled: bool
    requests: int  # attempts the router sent
    successes: int
    failures: int
    observations: int  # outcomes reported from outside (``LmRouter.record_request``)
    in_flight: int
    ewma_latency_ms: float  # the configured hint until a latency was learned
    latency_learned: bool
    error_rate: float  # EWMA of failures, 0..1
    cost_per_1k_tokens_usd: float  # configured, or learned from reported costs
    breaker_state: str


@dataclass(frozen=True, slots=True)
class RouterStats:
    """A snapshot of the whole router (the Rust seed's ``stats()``): per backend, and totals.

    ``average_latency_ms`` is the mean learned latency of the backends that have one (0 when
    none has), as the seed averages the providers it tracks.
    """

    strategy: str
    backends: dict[str, BackendStats]
    total_requests: int
    total_successes: int
    total_failures: int
    total_observations: int
    in_flight: int
    average_latency_ms: float

    @classmethod
    def of(cls, strategy: str, backends: list[BackendStats]) -> RouterStats:
        learned = [b.ewma_latency_ms for b in backends if b.latency_learned]
        return cls(
            strategy=strategy,
            backends={b.name: b for b in backends},
            total_requests=sum(b.requests for b in backends),
            total_successes=sum(b.successes for b in backends),
            total_failures=sum(b.failures for b in backends),
            total_observations=sum(b.observations for b in backends),
            in_flight=sum(b.in_flight for b in backends),
            average_latency_ms=sum(learned) / len(learned) if learned else 0.0,
        )

    @property
    def backend_count(self) -> int:
        return len(self.backends)

    provider_count = backend_count  # the seed's name


class BackendState:
    """Mutable per-backend state. Strategies read ``name``, ``cost``, ``priority``,
    ``latency_ms`` and ``error_rate`` (see ``router.strategy.Candidate``)."""

    __slots__ = (
        "backend",
        "breaker",
        "bucket",
        "cost",
        "cost_fixed",
        "cost_seen",
        "enabled",
        "error_rate",
        "external",
        "failures",
        "figures",
        "in_flight",
        "index",
        "last_request_at",
        "latency_ms",
        "latency_simulated",
        "latency_total",
        "max_concurrent",
        "name",
        "observed",
        "options",
        "price_in",
        "price_out",
        "priority",
        "rate_limited",
        "requests",
        "retry",
        "sample_i",
        "samples",
        "successes",
        "timeout_s",
    )

    def __init__(
        self,
        backend: LmBackend,
        options: BackendOptions,
        index: int,
        *,
        default_breaker: BreakerConfig,
        default_rate_limit: RateLimitConfig,
        default_retry: RetryPolicy,
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self.options = options
        self.index = index
        self.priority = options.priority
        self.enabled = options.enabled
        # A backend that owns its deadline (the swarm: one deadline for the quorum and the
        # payment after it) must not be cut off, and so retried, by a router timer.
        self.timeout_s = None if getattr(backend, "owns_deadline", False) else options.timeout_s
        self.retry = options.retry or default_retry
        self.price_in = options.cost_per_1k_input_usd
        self.price_out = options.cost_per_1k_output_usd
        if options.cost_per_1k_tokens_usd is not None:
            self.cost, self.cost_fixed = options.cost_per_1k_tokens_usd, True
        elif self.price_in is not None or self.price_out is not None:
            self.cost = ((self.price_in or 0.0) + (self.price_out or 0.0)) / 2
            self.cost_fixed = True
        else:
            self.cost = float(backend.cost_per_1k_tokens_usd)
            self.cost_fixed = False
        hint = options.latency_hint_ms
        self.latency_ms = float(hint if hint is not None else backend.expected_latency_ms)
        self.error_rate = 0.0
        self.observed = 0  # latencies learned (the first replaces the hint)
        self.cost_seen = 0  # costs learned (the first replaces the default)
        self.external = 0  # outcomes reported from outside the router
        # A backend whose latency is simulated (the swarm simulator) reports it in
        # ``LmResponse.latency_ms``; the router learns that figure, not its own wall time.
        self.latency_simulated = bool(getattr(backend, "simulated_latency", False))
        # A backend that knows more about itself than the router learns (the swarm backend's
        # reputation ledger) offers ``reputation_figures(model)``; strategies may read it.
        self.figures = getattr(backend, "reputation_figures", None)
        breaker = CircuitBreaker.from_config(options.circuit_breaker or default_breaker)
        self.breaker: CircuitBreaker | _NoBreaker = breaker if breaker is not None else _NoBreaker()
        limits = options.rate_limit or default_rate_limit
        self.bucket = bucket_for(limits)
        self.max_concurrent = limits.max_concurrent or 0
        self.in_flight = 0
        self.requests = 0
        self.successes = 0
        self.failures = 0
        self.rate_limited = 0
        self.latency_total = 0.0
        self.samples: list[float] = []
        self.sample_i = 0
        self.last_request_at: float | None = None

    def capacity_wait(self, now: float) -> float | None:
        """None if a request may start now; else seconds until the bucket refills (``inf`` when
        only the concurrency cap is in the way: that frees when a request ends)."""
        if self.max_concurrent and self.in_flight >= self.max_concurrent:
            return math.inf
        bucket = self.bucket
        if bucket is not None and not bucket.available(now):
            return bucket.wait_time(now)
        return None

    def on_success(self, latency_ms: float, alpha: float) -> None:
        self.successes += 1
        self.latency_total += latency_ms
        if len(self.samples) < _SAMPLES:
            self.samples.append(latency_ms)
        else:
            self.samples[self.sample_i % _SAMPLES] = latency_ms
        self.sample_i += 1
        self.learn_latency(latency_ms, alpha)
        self.error_rate -= alpha * self.error_rate

    def on_failure(self, alpha: float) -> None:
        self.failures += 1
        self.error_rate += alpha * (1.0 - self.error_rate)

    def learn_latency(self, latency_ms: float, alpha: float) -> None:
        if self.observed:
            self.latency_ms += alpha * (latency_ms - self.latency_ms)
        else:
            self.latency_ms = latency_ms  # the first measurement replaces the hint
        self.observed += 1

    def learn_cost(self, cost_usd: float, total_tokens: int, alpha: float) -> None:
        """Follow the observed price per 1k tokens when none is configured (e.g. swarm bids)."""
        if self.cost_fixed or total_tokens <= 0:
            return
        per_1k = cost_usd * 1000.0 / total_tokens
        if self.cost_seen:
            self.cost += alpha * (per_1k - self.cost)
        else:
            self.cost = per_1k
        self.cost_seen += 1

    def on_external(
        self,
        latency_ms: float | None,
        success: bool,
        tokens: int,
        cost_usd: float | None,
        alpha: float,
    ) -> None:
        """An outcome seen outside the router (monitoring, another client): the same learned
        figures as the router's own attempts move, its counters and breaker do not (they count
        what this router sent)."""
        self.external += 1
        if success:
            if latency_ms is not None:
                self.learn_latency(latency_ms, alpha)
            self.error_rate -= alpha * self.error_rate
            if cost_usd is not None:
                self.learn_cost(cost_usd, tokens, alpha)
        else:
            # as for the router's own failures, a failure's latency is not learned: a fast
            # refusal would make a broken backend look quick
            self.error_rate += alpha * (1.0 - self.error_rate)

    def metrics(self, now: float) -> BackendMetrics:
        samples = sorted(self.samples)
        p95 = samples[min(len(samples) - 1, math.ceil(0.95 * len(samples)) - 1)] if samples else 0.0
        return BackendMetrics(
            name=self.name,
            requests=self.requests,
            successes=self.successes,
            failures=self.failures,
            rate_limited=self.rate_limited,
            breaker_trips=self.breaker.trips,
            breaker_state=self.breaker.state_at(now).value,
            in_flight=self.in_flight,
            avg_latency_ms=self.latency_total / self.successes if self.successes else 0.0,
            p95_latency_ms=p95,
            ewma_latency_ms=self.latency_ms,
            error_rate=self.error_rate,
            cost_per_1k_tokens_usd=self.cost,
            last_request_at=self.last_request_at,
        )

    def stats(self, now: float) -> BackendStats:
        return BackendStats(
            name=self.name,
            enabled=self.enabled,
            requests=self.requests,
            successes=self.successes,
            failures=self.failures,
            observations=self.external,
            in_flight=self.in_flight,
            ewma_latency_ms=self.latency_ms,
            latency_learned=self.observed > 0,
            error_rate=self.error_rate,
            cost_per_1k_tokens_usd=self.cost,
            breaker_state=self.breaker.state_at(now).value,
        )

    def reset_counters(self) -> None:
        self.requests = self.successes = self.failures = self.rate_limited = self.external = 0
        self.latency_total = 0.0
        self.samples = []
        self.sample_i = 0

    def __repr__(self) -> str:
        return f"BackendState({self.name!r})"
