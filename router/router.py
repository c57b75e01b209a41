"""LmRouter: sends each completion to the right backend, with failover, retries, circuit
breakers, rate limits, and usage and cost accounting.

Per request: resolve the candidates for the model (cached), drop those whose breaker is open, let
the strategy order them (explicit routes stay first, the default and fallbacks last), then try
them in order. Each attempt first takes capacity (token bucket, concurrency cap) and the breaker's
permission; a failure worth retrying is retried on the same backend after a backoff, anything
else moves on to the next backend.

Task safety: state changes happen between awaits under one short ``threading.Lock`` section each,
so one router can be shared by many tasks (and by threads each running their own loop).
"""

from __future__ import annotations

import asyncio
import fnmatch
import math
import random
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from .backends.base import LmBackend
from .circuit_breaker import BreakerConfig, BreakerShare, CircuitState
from .clock import Clock, Sleeper
from .errors import (
    AllProvidersFailed,
    BackendError,
    BackendNotFound,
    CircuitBreakerOpen,
    InvalidRequest,
    NoProvidersAvailable,
    PaidFailure,
    RateLimited,
    StreamInterrupted,
)
from .options import BackendOptions
from .prices import table_price
from .rate_limit import RateLimitConfig
from .request import LmRequest
from .retry import RetryPolicy, is_caller_error, is_retryable, retry_after_of
from .state import BackendMetrics, BackendState, RouterStats
from .strategy import Adaptive, RoutingDecision, RoutingStrategy
from .types import (
    LmResponse,
    LmUsage,
    Prompt,
    StreamChunk,
    estimate_tokens,
    prompt_text,
    validate_prompt,
)
from .usage import UsageReport, UsageTracker

if TYPE_CHECKING:
    from .builder import LmRouterBuilder

_perf = time.perf_counter
_REDISCOVER_S = 30.0  # least time between model discoveries triggered by unknown models
_ROUTE_CACHE = 4096  # resolved routes kept; the set is rebuilt when it fills
_PROBE_TTL_S = 60.0  # a shared probe's lock, for a backend without its own timeout
_PROBE_RECHECK_S = 5.0  # the most a gateway waits for another's probe before asking again


class BreakerSync(Protocol):
    """Shares breaker transitions with other routers (gateways on one Redis:
    router/gateway/shared_breakers.py). ``changed`` is called under the router's lock and must
    not block; the other side calls :meth:`LmRouter.adopt_breaker`."""

    def changed(self, backend: str, share: BreakerShare) -> None:
        """This router's breaker for ``backend`` moved (opened, a probe ended, closed)."""

    async def take_probe(self, backend: str, ttl_s: float) -> float | None:
        """May this router send the half-open probe for ``backend``? None: yes (or no one to
        ask); else the seconds another router's probe may still take."""


@dataclass(frozen=True, slots=True)
class _Route:
    """The candidates for one model, resolved once: explicit routes, backends that support the
    model (in priority order), then the default backend and global fallbacks."""

    pinned: tuple[BackendState, ...]
    pool: tuple[BackendState, ...]
    tail: tuple[BackendState, ...]
    single: BackendState | None  # the only candidate, when there is exactly one in the pool
    reason: str

    def all(self) -> tuple[BackendState, ...]:
        return self.pinned + self.pool + self.tail


class LmStream:
    """A stream the router has started: ``backend`` (the name of the backend serving it) and
    ``decision`` (the routing decision) are known before the first chunk is read. An async
    iterator of :class:`~router.types.StreamChunk`; ``aclose()`` (or leaving ``async with``)
    ends it and frees the backend's slot, read or not."""

    __slots__ = ("_relay", "_release", "_started", "backend", "decision")

    def __init__(
        self,
        decision: RoutingDecision,
        backend: str,
        relay: AsyncGenerator[StreamChunk, None],
        release: Callable[[], Awaitable[None]],
    ) -> None:
        self.decision = decision
        self.backend = backend
        self._relay = relay
        self._release: Callable[[], Awaitable[None]] | None = release
        self._started = False

    def __aiter__(self) -> LmStream:
        return self

    async def __anext__(self) -> StreamChunk:
        self._started = True
        return await self._relay.__anext__()

    async def aclose(self) -> None:
        release, self._release = self._release, None
        await self._relay.aclose()
        if not self._started and release is not None:
            # the relay never ran, so its own clean-up did not either
            await release()

    async def __aenter__(self) -> LmStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class LmRouter(LmBackend):
    """Routes completions across backends. Build one with :meth:`builder`.

    An ``LmRouter`` is itself an ``LmBackend``, so it can stand wherever a backend is expected
    (a provider node, another router).
    """

    def __init__(
        self,
        backends: Sequence[tuple[LmBackend, BackendOptions]],
        *,
        routes: Mapping[str, Sequence[str]] | None = None,
        default_backend: str | None = None,
        fallbacks: Sequence[str] = (),
        strategy: RoutingStrategy,
        retry: RetryPolicy | None = None,
        circuit_breaker: BreakerConfig | None = None,
        rate_limit: RateLimitConfig | None = None,
        ewma_alpha: float = 0.2,
        queue_timeout_s: float = 0.0,
        usd_per_sat: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleeper = asyncio.sleep,
        seed: int | None = None,
        name: str = "router",
    ) -> None:
        if not backends:
            raise InvalidRequest("a router needs at least one backend")
        if not 0.0 < ewma_alpha <= 1.0:
            raise InvalidRequest("ewma_alpha must be in (0, 1]")
        self.name = name
        self.strategy = strategy
        self._retry = retry or RetryPolicy()
        breaker_cfg = circuit_breaker or BreakerConfig()
        limit_cfg = rate_limit or RateLimitConfig()
        if isinstance(strategy, Adaptive) and strategy.ewma_alpha is not None:
            ewma_alpha = strategy.ewma_alpha
        self._alpha = ewma_alpha
        self._queue_timeout_s = queue_timeout_s
        self._usd_per_sat = usd_per_sat
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._usage = UsageTracker()
        self._cache: dict[str, _Route] = {}
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._not_closed = 0  # breakers not closed; while 0, routing skips the breaker filter
        self._breaker_sync: BreakerSync | None = None
        self._discovery_pending = any(not b.models_known for b, _ in backends)
        self._discovered_at: float | None = None
        states: dict[str, BackendState] = {}
        for i, (backend, opts) in enumerate(backends):
            if backend.name in states:
                raise InvalidRequest(f"two backends are named {backend.name!r}")
            states[backend.name] = BackendState(
                backend,
                opts,
                i,
                default_breaker=breaker_cfg,
                default_rate_limit=limit_cfg,
                default_retry=self._retry,
            )
        self._states = states
        # priority order: lower priority number first, then insertion order
        self._ordered = sorted(states.values(), key=lambda s: (s.priority, s.index))
        self._routes: dict[str, tuple[str, ...]] = {}
        self._patterns: list[tuple[str, tuple[str, ...]]] = []
        for model, targets in (routes or {}).items():
            for t in targets:
                if t not in states:
                    raise InvalidRequest(f"route {model!r} -> unknown backend {t!r}")
            if any(ch in model for ch in "*?["):
                self._patterns.append((model, tuple(targets)))
            else:
                self._routes[model] = tuple(targets)
        for n in [default_backend, *fallbacks]:
            if n is not None and n not in states:
                raise InvalidRequest(f"unknown backend {n!r}")
        self._default = default_backend
        self._fallbacks = tuple(fallbacks)

    @staticmethod
    def builder() -> LmRouterBuilder:
        from .builder import LmRouterBuilder

        return LmRouterBuilder()

    # --- routing -----------------------------------------------------------------------------

    def _resolve(self, model: str) -> _Route | None:
        states = self._states
        targets = self._routes.get(model)
        if targets is None:
            for pattern, t in self._patterns:
                if fnmatch.fnmatchcase(model, pattern):
                    targets = t
                    break
        seen: set[str] = set()
        pinned = []
        for n in targets or ():
            st = states[n]
            if st.enabled and n not in seen:
                seen.add(n)
                pinned.append(st)
        pool = []
        for st in self._ordered:
            if st.enabled and st.name not in seen and st.backend.supports_model(model):
                seen.add(st.name)
                pool.append(st)
        tail = []
        for fallback in (self._default, *self._fallbacks):
            if fallback is not None and fallback not in seen and states[fallback].enabled:
                seen.add(fallback)
                tail.append(states[fallback])
        if not seen:
            return None
        single = pool[0] if len(pool) == 1 and not pinned and not tail else None
        reason = f"only backend that serves {model!r}"
        route = _Route(tuple(pinned), tuple(pool), tuple(tail), single, reason)
        if len(self._cache) >= _ROUTE_CACHE:  # made-up names must not grow it without bound
            self._cache.clear()
        self._cache[model] = route
        return route

    def _unavailable(self, model: str) -> Exception:
        """The error for a model whose candidates all exist but none can be asked now."""
        names = [n for n, s in self._states.items() if s.enabled]
        if not names:
            return NoProvidersAvailable("every backend is disabled")
        return BackendNotFound(model)

    def route(
        self, model: str, prompt: Prompt | None = None, max_tokens: int | None = None
    ) -> RoutingDecision:
        """Decide where a request for ``model`` would go now: backend, fallback chain, score and
        reason, predicted latency (and cost, when ``prompt`` or ``max_tokens`` is given; an
        unset ``max_tokens`` counts as ``complete``'s 256). Raises ``BackendNotFound`` when
        nothing serves the model and ``CircuitBreakerOpen`` when every candidate's breaker is
        open."""
        if type(model) is not str or not model:
            raise InvalidRequest("model must be a non-empty string")
        route = self._cache.get(model) or self._resolve(model)
        if route is None:
            raise self._unavailable(model)
        now = self._clock()
        single = route.single
        if single is not None and single.breaker.blocked_until <= now:
            # one candidate and nothing else to consider: skip the strategy
            decision = RoutingDecision(
                model, single, route.pool, None, None, 1.0, route.reason, route.pool
            )
            if prompt is not None or max_tokens is not None:
                _estimate(decision, prompt, max_tokens)
            return decision
        if self._not_closed:
            pool: Sequence[BackendState] = [s for s in route.pool if s.breaker.blocked_until <= now]
        else:
            pool = route.pool
        if len(pool) > 1:
            decision = self.strategy.rank(model, pool)
        elif pool:
            decision = RoutingDecision(model, pool[0], pool, None, None, 1.0, route.reason, pool)
        else:
            decision = RoutingDecision(model, None, pool, None, None, 0.0, "", pool)
        if route.pinned or route.tail:
            head = self._available(route.pinned, now)
            tail = self._available(route.tail, now)
            if head:
                decision.wrap(head, tail, 1.0, f"explicit route {model!r} -> {head[0].name!r}")
            elif not pool and tail:
                which = "default backend" if tail[0].name == self._default else "fallback"
                reason = f"{which} {tail[0].name!r} (no other backend serves it)"
                decision.wrap(head, tail, 1.0, reason)
            else:
                decision.wrap(head, tail, None, None)
        if decision.first is None:
            every = route.all()
            wait = min(s.breaker.retry_after(now) for s in every)
            raise CircuitBreakerOpen([s.name for s in every], retry_after=wait)
        if prompt is not None or max_tokens is not None:
            _estimate(decision, prompt, max_tokens)
        return decision

    def _available(self, states: tuple[BackendState, ...], now: float) -> Sequence[BackendState]:
        if not self._not_closed or not states:
            return states
        return [s for s in states if s.breaker.blocked_until <= now]

    async def _discover_and_route(self, model: str) -> RoutingDecision:
        """Route; backends that discover their models do so before the first request, and again
        (at most every ``_REDISCOVER_S``) when a model is not found."""
        if self._discovery_pending:
            self._discovery_pending = False
            await self._discover()
        try:
            return self.route(model)
        except BackendNotFound:
            if not await self._discover():
                raise
        return self.route(model)

    async def _discover(self) -> bool:
        """Refresh models if some backend has not discovered them yet; False if nothing to do
        or it was tried too recently (a stream of unknown models must not flood upstreams)."""
        if all(s.backend.models_known for s in self._ordered):
            return False
        now = time.monotonic()
        if self._discovered_at is not None and now - self._discovered_at < _REDISCOVER_S:
            return False
        self._discovered_at = now
        await self.refresh_models()
        return True

    # --- completion --------------------------------------------------------------------------

    async def send(self, request: LmRequest) -> LmResponse:
        """Complete ``request`` on the best available backend (``complete(model, prompt,
        max_tokens, sampling=..., swarm=..., passthrough=...)`` builds one).

        Tries the decision's chain in order. If only one backend was asked and it failed, its
        own error is raised; if several failed, ``AllProvidersFailed`` (with each one's error).
        If every candidate was over its rate limit, ``RateLimited``; if every breaker was open,
        ``CircuitBreakerOpen``. The response carries the routing decision (``decision``).
        """
        model = request.model
        if self._discovery_pending:
            decision = await self._discover_and_route(model)
        else:
            try:
                decision = self.route(model)
            except BackendNotFound:
                decision = await self._discover_and_route(model)
        errors: dict[str, BaseException] = {}
        deadline: float | None = None
        clock = self._clock
        while True:
            min_wait = math.inf
            st: BackendState | None = decision.first
            chain: Sequence[BackendState] | None = None
            pos = 0
            while st is not None:
                retry = 0
                while True:
                    refused = self._admit(st, clock(), errors)
                    if refused is None and self._breaker_sync is not None and st.breaker.probing:
                        refused = await self._shared_probe(st, errors)
                    if refused is not None:
                        if refused < min_wait:
                            min_wait = refused
                        break
                    t0 = _perf()
                    try:
                        if st.timeout_s is None:
                            resp = await st.backend.send(request)
                        else:
                            resp = await _with_timeout(st, request)
                    except asyncio.CancelledError:
                        self._abandon(st)
                        raise
                    except Exception as exc:
                        if is_caller_error(exc):
                            # The request itself is wrong: no other backend will take it, and
                            # the backend is healthy. Back to the caller as it is.
                            self._abandon(st)
                            raise
                        errors[st.name] = exc
                        delay = self._on_attempt_failed(st, exc, retry)
                        if isinstance(exc, PaidFailure):  # money moved: no second job
                            raise
                        if delay is not None:
                            retry += 1
                            await self._sleep(delay)
                            continue
                        break
                    return self._on_success(st, model, resp, t0, decision)
                # this backend is done with: move along the fallback chain (ordered only now,
                # since a request that succeeds at once never needs it)
                if chain is None:
                    chain = decision.candidates
                pos += 1
                st = chain[pos] if pos < len(chain) else None
            deadline = await self._wait_for_capacity(decision, errors, min_wait, deadline)
            decision = await self._discover_and_route(model)

    def _on_success(
        self,
        st: BackendState,
        model: str,
        resp: LmResponse,
        t0: float,
        decision: RoutingDecision,
    ) -> LmResponse:
        # a simulated backend's latency is the figure to learn; the wall time of an instant
        # simulation is not
        latency_ms = resp.latency_ms if st.latency_simulated else (_perf() - t0) * 1000.0
        usage = resp.usage
        if usage.cost_usd is None:
            self._price(st, usage, model)
        now = self._clock()
        with self._lock:
            st.in_flight -= 1
            st.on_success(latency_ms, self._alpha)
            self._breaker_success(st, now)
            if usage.cost_usd is not None and not st.cost_fixed:
                st.learn_cost(usage.cost_usd, usage.total_tokens, self._alpha)
            self._usage.record(model, st.name, usage)
        if self._waiters:
            self._wake()
        resp.latency_ms = latency_ms
        resp.decision = decision
        if not resp.backend:
            resp.backend = st.name
        return resp

    async def _wait_for_capacity(
        self,
        decision: RoutingDecision,
        errors: dict[str, BaseException],
        min_wait: float,
        deadline: float | None,
    ) -> float:
        """After a pass over the chain with no success: raise the right error, or (when every
        candidate was only over its limits and queueing is on) wait for capacity."""
        only_limited = all(isinstance(errors.get(c.name), RateLimited) for c in decision.candidates)
        only_limited = only_limited and all(
            getattr(e, "status", None) is None
            for e in errors.values()
            if isinstance(e, RateLimited)
        )
        # Queueing really waits (asyncio.wait_for), so its deadline is real time, not the
        # injected clock that drives breakers and buckets.
        loop_now = time.monotonic()
        if deadline is None:
            deadline = loop_now + self._queue_timeout_s
        if not (only_limited and loop_now < deadline):
            raise self._failure(errors)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (asyncio.get_running_loop(), fut)
        with self._lock:
            self._waiters.append(entry)
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
            # that arrives as the future completes, and this waits in a loop
            async with asyncio.timeout(min(min_wait, deadline - loop_now)):
                await fut
        except TimeoutError:
            pass
        finally:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)
        errors.clear()
        return deadline

    def _wake(self) -> None:
        """A request ended: let requests queued for capacity try again."""
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            if fut.done():
                continue
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if loop is running:
                fut.set_result(None)
            else:
                loop.call_soon_threadsafe(_resolve_future, fut)

    @staticmethod
    def _failure(errors: Mapping[str, BaseException]) -> BaseException:
        errs = list(errors.values())
        if len(errs) == 1:
            return errs[0]
        if errs and all(isinstance(e, RateLimited) and e.status is None for e in errs):
            waits = [e.retry_after for e in errs if isinstance(e, RateLimited) and e.retry_after]
            return RateLimited(
                f"every backend is over its rate limit ({', '.join(errors)})",
                retry_after=min(waits) if waits else None,
            )
        if errs and all(isinstance(e, CircuitBreakerOpen) for e in errs):
            return CircuitBreakerOpen(list(errors))
        return AllProvidersFailed(errors)

    def _breaker_success(self, st: BackendState, now: float) -> None:
        """Under the lock: tell the breaker, keeping the count of breakers not closed (and the
        other gateways, when a probe succeeded)."""
        br = st.breaker
        was_closed = br.state is CircuitState.CLOSED
        if not was_closed:
            probe = br.state is CircuitState.HALF_OPEN
            br.record_success(now)
            if br.state is CircuitState.CLOSED:
                self._not_closed -= 1
            if probe and self._breaker_sync is not None:
                self._breaker_sync.changed(st.name, br.share(now))

    def _breaker_failure(self, st: BackendState, now: float) -> None:
        br = st.breaker
        was_closed = br.state is CircuitState.CLOSED
        trips = br.trips
        br.record_failure(now)
        if was_closed and br.state is not CircuitState.CLOSED:
            self._not_closed += 1
        if br.trips != trips and self._breaker_sync is not None:
            self._breaker_sync.changed(st.name, br.share(now))

    def _abandon(self, st: BackendState) -> None:
        """A request was cancelled: free its slot without counting an outcome."""
        with self._lock:
            st.in_flight -= 1
            br = st.breaker
            probe = br.probing
            br.release_probe()
            if probe and self._breaker_sync is not None:
                self._breaker_sync.changed(st.name, br.share(self._clock()))
        if self._waiters:
            self._wake()

    # --- breakers shared with other gateways -------------------------------------------------

    def share_breakers(self, sync: BreakerSync | None) -> None:
        """Tell ``sync`` every breaker transition and ask it before each half-open probe
        (None: breakers are this router's own)."""
        self._breaker_sync = sync

    def adopt_breaker(self, backend: str, share: BreakerShare) -> bool:
        """Take another gateway's transition of ``backend``'s breaker. False for a backend
        this router does not have."""
        st = self._states.get(backend)
        if st is None:
            return False
        now = self._clock()
        with self._lock:
            br = st.breaker
            was_closed = br.state is CircuitState.CLOSED
            br.adopt(share, now)
            closed = br.state is CircuitState.CLOSED
            self._not_closed += int(was_closed and not closed) - int(closed and not was_closed)
        return True

    def breaker_shares(self) -> dict[str, BreakerShare]:
        """Every breaker's state, as :meth:`adopt_breaker` takes it."""
        now = self._clock()
        with self._lock:
            return {name: st.breaker.share(now) for name, st in self._states.items()}

    def _price(self, st: BackendState, usage: LmUsage, model: str | None = None) -> None:
        """Fill in ``cost_usd`` from configured prices (the model's, the backend's per input
        and output token, one price per token, the bundled table), or from sats at the
        configured rate."""
        pin, pout = _prices(st, model)
        if pin is not None or pout is not None:
            usage.cost_usd = (
                usage.prompt_tokens * (pin or 0.0) + usage.completion_tokens * (pout or 0.0)
            ) / 1000.0
        elif usage.cost_sats is not None and self._usd_per_sat is not None:
            usage.cost_usd = usage.cost_sats * self._usd_per_sat

    def max_tokens_limit(self, model: str) -> int | None:
        """The most ``max_tokens`` any backend that may serve ``model`` accepts (its
        ``max_tokens`` option); None when one of them sets no limit, or the model is unknown."""
        route = self._resolve(model)
        if route is None:
            return None
        limits = [
            st.options.model_max_tokens.get(model, st.options.max_tokens) for st in route.all()
        ]
        if not limits or any(x is None for x in limits):
            return None
        return max(x for x in limits if x is not None)

    def max_cost(self, model: str, prompt_tokens: int, max_tokens: int) -> tuple[int, float]:
        """The most one request for ``model`` may cost on any backend it may reach: (msats,
        USD), for budgets to reserve before it is sent. A backend's sats come from its
        ``max_cost_msats(max_tokens)`` (if it has one), USD from its configured prices (or from
        those sats at the configured rate)."""
        route = self._resolve(model)
        if route is None:
            return 0, 0.0
        most_msats, most_usd = 0, 0.0
        for st in route.all():
            fn = getattr(st.backend, "max_cost_msats", None)
            msats = int(fn(max_tokens)) if fn is not None else 0
            pin, pout = _prices(st, model)
            if pin is not None or pout is not None:
                usd = (prompt_tokens * (pin or 0.0) + max_tokens * (pout or 0.0)) / 1000.0
            elif self._usd_per_sat is not None:
                usd = msats / 1000 * self._usd_per_sat
            else:
                usd = 0.0
            most_msats, most_usd = max(most_msats, msats), max(most_usd, usd)
        return most_msats, most_usd

    # --- streaming ---------------------------------------------------------------------------

    async def send_stream(self, request: LmRequest) -> AsyncIterator[StreamChunk]:
        """Stream ``request``'s completion as chunks; the last carries usage (priced) and the
        finish reason. A backend that fails before its first text fails over to the next; a
        failure after text was delivered raises ``StreamInterrupted``. (:meth:`stream` and
        :meth:`stream_chunks` build the request from their arguments.)"""
        async with await self.open_stream(request) as stream:
            async for chunk in stream:
                yield chunk

    async def open_stream(self, request: LmRequest) -> LmStream:
        """Route ``request`` and start streaming it: returns once a backend has produced its
        first text (or its whole answer), so failing over before that is invisible. The
        :class:`LmStream` names the serving ``backend`` and the routing ``decision`` before the
        first chunk is read; iterate it for the chunks and close it (``async with``) when done.
        Raises what :meth:`send` would when no backend could start."""
        model = request.model
        decision = await self._discover_and_route(model)
        errors: dict[str, BaseException] = {}
        deadline: float | None = None
        while True:
            min_wait = math.inf
            for st in decision.candidates:
                retry = 0
                while True:
                    now = self._clock()
                    refused = self._admit(st, now, errors)
                    if refused is None and self._breaker_sync is not None and st.breaker.probing:
                        refused = await self._shared_probe(st, errors)
                    if refused is not None:
                        min_wait = min(min_wait, refused)
                        break
                    t0 = _perf()
                    agen = st.backend.send_stream(request)
                    held: list[StreamChunk] = []
                    try:
                        # Pull until the first text: until then, failing over is invisible.
                        async for chunk in agen:
                            held.append(chunk)
                            if chunk.text or chunk.delta is not None:  # tool call deltas too
                                break
                    except asyncio.CancelledError:
                        self._abandon(st)
                        await _aclose(agen)
                        raise
                    except Exception as exc:
                        await _aclose(agen)
                        if is_caller_error(exc):
                            self._abandon(st)
                            raise
                        errors[st.name] = exc
                        delay = self._on_attempt_failed(st, exc, retry)
                        if isinstance(exc, PaidFailure):
                            raise
                        if delay is not None:
                            retry += 1
                            await self._sleep(delay)
                            continue
                        break
                    relay = self._relay_stream(st, model, agen, held, t0)
                    return LmStream(
                        decision, st.name, relay, partial(self._abandon_stream, st, agen)
                    )
            deadline = await self._wait_for_capacity(decision, errors, min_wait, deadline)
            decision = await self._discover_and_route(model)

    async def _abandon_stream(self, st: BackendState, agen: AsyncIterator[StreamChunk]) -> None:
        """A stream closed before its first chunk was read: free its slot, end the backend's."""
        self._abandon(st)
        await _aclose(agen)

    def _admit(
        self, st: BackendState, now: float, errors: dict[str, BaseException]
    ) -> float | None:
        """Take breaker permission and capacity for one attempt. Returns None when admitted,
        else how long until capacity may return (``inf`` for the concurrency cap / breaker)."""
        with self._lock:
            if st.breaker.blocked_until > now:
                errors.setdefault(st.name, CircuitBreakerOpen(st.name, st.breaker.retry_after(now)))
                return math.inf
            wait = st.capacity_wait(now)
            if wait is not None:
                st.rate_limited += 1
                errors.setdefault(
                    st.name,
                    RateLimited(
                        f"{st.name}: over its rate limit",
                        backend=st.name,
                        retry_after=None if wait == math.inf else wait,
                    ),
                )
                return wait
            if st.bucket is not None:
                st.bucket.try_acquire(now)
            st.breaker.allow(now)
            st.in_flight += 1
            st.requests += 1
            st.last_request_at = now
            return None

    async def _shared_probe(
        self, st: BackendState, errors: dict[str, BaseException]
    ) -> float | None:
        """This attempt is the half-open probe here: ask the other gateways too (one probe at
        a time across all of them). Returns None when it may go, else ``inf`` (refused)."""
        sync = self._breaker_sync
        assert sync is not None
        ttl = (st.timeout_s if st.timeout_s is not None else _PROBE_TTL_S) + _PROBE_RECHECK_S
        try:
            wait = await sync.take_probe(st.name, ttl)
        except BaseException:
            self._abandon(st)
            raise
        if wait is None:
            return None
        now = self._clock()
        with self._lock:
            st.in_flight -= 1
            st.requests -= 1  # nothing was sent
            st.breaker.defer_probe(now, min(wait, _PROBE_RECHECK_S))
            errors.setdefault(st.name, CircuitBreakerOpen(st.name, st.breaker.retry_after(now)))
        if self._waiters:
            self._wake()
        return math.inf

    def _on_attempt_failed(self, st: BackendState, exc: BaseException, retry: int) -> float | None:
        """Record a failed attempt; return the backoff before retrying it, or None to move on."""
        now = self._clock()
        with self._lock:
            st.in_flight -= 1
            st.on_failure(self._alpha)
            self._breaker_failure(st, now)
        if self._waiters:
            self._wake()
        if is_retryable(exc) and st.breaker.blocked_until <= now:
            return st.retry.backoff(retry, self._rng.random(), retry_after_of(exc))
        return None

    async def _relay_stream(
        self,
        st: BackendState,
        model: str,
        agen: AsyncIterator[StreamChunk],
        held: list[StreamChunk],
        t0: float,
    ) -> AsyncGenerator[StreamChunk, None]:
        """Deliver a committed stream; account for it when it ends."""
        usage: LmUsage | None = None
        parts: list[str] = []
        finished = False
        try:
            for chunk in held:
                if chunk.usage is not None:
                    usage = chunk.usage
                parts.append(chunk.text)
                yield chunk
            try:
                async for chunk in agen:
                    if chunk.usage is not None:
                        usage = chunk.usage
                        if usage.cost_usd is None:
                            self._price(st, usage, model)
                    parts.append(chunk.text)
                    yield chunk
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                now = self._clock()
                with self._lock:
                    st.in_flight -= 1
                    st.on_failure(self._alpha)
                    self._breaker_failure(st, now)
                finished = True
                if self._waiters:
                    self._wake()
                raise StreamInterrupted(
                    f"{st.name}: stream failed after text was sent: {exc}",
                    backend=st.name,
                    text_so_far="".join(parts),
                ) from exc
            latency_ms = (_perf() - t0) * 1000.0
            if usage is None:
                usage = LmUsage()
            elif usage.cost_usd is None:
                self._price(st, usage, model)
            now = self._clock()
            with self._lock:
                st.in_flight -= 1
                st.on_success(latency_ms, self._alpha)
                self._breaker_success(st, now)
                self._usage.record(model, st.name, usage)
            finished = True
            if self._waiters:
                self._wake()
        finally:
            if not finished:
                self._abandon(st)
            await _aclose(agen)

    # --- reports and management --------------------------------------------------------------

    def usage_report(self) -> UsageReport:
        """Calls, tokens and cost (USD and sats) so far: totals, ``by_model`` and ``by_backend``."""
        with self._lock:
            return self._usage.report()

    def reset_usage(self) -> None:
        """Forget usage and per-backend counters (learned latency and breakers are kept)."""
        with self._lock:
            self._usage.reset()
            for st in self._states.values():
                st.reset_counters()

    def metrics(self) -> dict[str, BackendMetrics]:
        """Per-backend metrics: requests, successes, failures, rate-limited, breaker trips,
        average and p95 latency, learned latency and error rate."""
        now = self._clock()
        with self._lock:
            return {name: st.metrics(now) for name, st in self._states.items()}

    def stats(self) -> RouterStats:
        """A snapshot of every backend (requests, successes, failures, outside observations, in
        flight, learned latency, error rate and cost, breaker state) and the totals."""
        now = self._clock()
        with self._lock:
            backends = [st.stats(now) for st in self._states.values()]
        return RouterStats.of(self.strategy.name, backends)

    def record_request(
        self,
        backend: str,
        latency_ms: float | None = None,
        success: bool = True,
        tokens: int = 0,
        *,
        cost_usd: float | None = None,
    ) -> None:
        """Learn from a request this router did not make (the Rust seed's ``record_request``):
        an outcome seen by external monitoring or another client moves the same learned figures
        as the router's own calls (EWMA latency on success, error rate, and the cost per 1k
        tokens from ``cost_usd`` over ``tokens`` when no price is configured). It does not count
        as one of this router's requests and does not move the circuit breaker. Raises
        ``KeyError`` for an unknown backend."""
        st = self._state(backend)
        if latency_ms is not None and not (math.isfinite(latency_ms) and latency_ms >= 0):
            raise InvalidRequest("latency_ms must be a finite, non-negative number")
        if type(tokens) is not int or tokens < 0:
            raise InvalidRequest("tokens must be a non-negative integer")
        if cost_usd is not None and not (math.isfinite(cost_usd) and cost_usd >= 0):
            raise InvalidRequest("cost_usd must be a finite, non-negative number")
        with self._lock:
            st.on_external(latency_ms, bool(success), tokens, cost_usd, self._alpha)

    def backend_metrics(self, name: str) -> BackendMetrics:
        return self.metrics()[self._state(name).name]

    def breaker_state(self, name: str) -> str:
        return self._state(name).breaker.state_at(self._clock()).value

    def _state(self, name: str) -> BackendState:
        st = self._states.get(name)
        if st is None:
            raise KeyError(f"no backend named {name!r}")
        return st

    @property
    def backends(self) -> dict[str, LmBackend]:
        return {name: st.backend for name, st in self._states.items()}

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Take a backend out of routing, or put it back."""
        st = self._state(name)
        with self._lock:
            st.enabled = enabled
            self._cache = {}

    def supported_models(self) -> list[str]:
        models: dict[str, None] = {}
        for st in self._ordered:
            if st.enabled:
                for m in st.backend.supported_models():
                    models[m] = None
        for m in self._routes:
            models[m] = None
        return list(models)

    def supports_model(self, model: str) -> bool:
        return (self._cache.get(model) or self._resolve(model)) is not None

    def models_by_backend(self) -> dict[str, list[str]]:
        return {n: st.backend.supported_models() for n, st in self._states.items() if st.enabled}

    async def refresh_models(self) -> list[str]:
        """Ask every backend that discovers models to do so now, then re-resolve routes."""
        results = await asyncio.gather(
            *(st.backend.refresh_models() for st in self._ordered), return_exceptions=True
        )
        del results  # a backend that cannot be reached keeps what it knew
        self._cache = {}
        return self.supported_models()

    async def health_check(self, timeout_s: float = 5.0) -> dict[str, bool]:  # type: ignore[override]
        """``{backend name: healthy}``, asking every backend at once."""

        async def one(b: LmBackend) -> bool:
            try:
                async with asyncio.timeout(timeout_s):
                    ok: Any = await b.health_check()
            except Exception:
                return False
            # a nested router reports per backend: it is healthy if any of them is
            return any(ok.values()) if isinstance(ok, dict) else bool(ok)

        names = list(self._states)
        oks = await asyncio.gather(*(one(self._states[n].backend) for n in names))
        return dict(zip(names, oks, strict=True))

    async def close(self) -> None:
        await asyncio.gather(
            *(st.backend.close() for st in self._states.values()), return_exceptions=True
        )

    def __repr__(self) -> str:
        return f"LmRouter(backends={list(self._states)}, strategy={self.strategy!r})"


def _estimate(decision: RoutingDecision, prompt: Prompt | None, max_tokens: int | None) -> None:
    """Predict the decision's cost for a request of this size (``complete``'s default 256
    ``max_tokens`` when unset)."""
    if prompt is not None:
        _check_prompt(prompt)
    p = estimate_tokens(prompt_text(prompt)) if prompt is not None else 0
    if max_tokens is not None and (type(max_tokens) is not int or max_tokens < 1):
        raise InvalidRequest("max_tokens must be a positive integer")
    decision.estimate(p, 256 if max_tokens is None else max_tokens)


def _prices(st: BackendState, model: str | None) -> tuple[float | None, float | None]:
    """(input, output) USD per 1k tokens for ``model`` on ``st``: the model's own price, the
    backend's, a flat price per token, then the bundled table (when the backend allows it)."""
    opts = st.options
    if model is not None:
        own = opts.model_prices.get(model)
        if own is not None:
            return own
    if st.price_in is not None or st.price_out is not None:
        return st.price_in, st.price_out
    if opts.cost_per_1k_tokens_usd is not None:
        return opts.cost_per_1k_tokens_usd, opts.cost_per_1k_tokens_usd
    if opts.price_table and model is not None:
        found = table_price(model)
        if found is not None:
            return found
    return None, None


def _check_prompt(prompt: object) -> None:
    try:
        validate_prompt(prompt)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(str(exc)) from None


def _resolve_future(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _with_timeout(st: BackendState, request: LmRequest) -> LmResponse:
    try:
        async with asyncio.timeout(st.timeout_s):
            return await st.backend.send(request)
    except TimeoutError:
        raise BackendError(
            f"{st.name}: no answer within {st.timeout_s} s", backend=st.name, retryable=True
        ) from None


async def _aclose(agen: AsyncIterator[Any]) -> None:
    close = getattr(agen, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:
            pass
