"""Routing strategies: given the backends that can serve a request, pick the one to try first and
the order of the rest.

Strategies are pure: they read each candidate's figures (configured cost and priority, learned
latency and error rate) and return a :class:`RoutingDecision` with the choice, a score in
[0, 1] and a human-readable reason. The router passes candidates in priority order (lower number
first, then the order backends were added), and every strategy keeps that order among equals.

- :class:`CostBased`: cheapest first.
- :class:`LatencyBased`: fastest first (learned latency; the configured hint until measured).
- :class:`Hybrid`: weighted sum of cost, latency and reliability scores, each 0..1.
- :class:`RoundRobin`: least recently used first (the TypeScript seed's ``round_robin``).
- :class:`CostPriorityRoundRobin`: cheapest first, least recently used among equally cheap
  candidates (the TypeScript seed's ``cost_priority_round_robin``).
- :class:`Adaptive`: learns from live traffic (EWMA latency and error rate) and optimizes for
  latency, cost or reliability.
- :class:`PriorityOrder`: the configured priority order, as is.

Only the first choice is needed for a request that succeeds, so a decision computes the full
fallback order, the score and the reason when they are first read.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from operator import attrgetter
from typing import Any, ClassVar, Protocol


class Candidate(Protocol):
    """What a strategy reads about a backend."""

    name: str
    cost: float  # USD per 1,000 tokens
    priority: int  # lower is preferred
    latency_ms: float  # EWMA of observed latency (the configured hint until observed)
    error_rate: float  # EWMA of failures (0..1)


class BackendFigures(Protocol):
    """What a backend expects of itself (the swarm backend: from its reputation ledger)."""

    latency_ms: float | None
    failure_rate: float


# ``figures(model) -> BackendFigures | None``, offered by a candidate as ``figures`` (optional).
FiguresSource = Callable[[str], BackendFigures | None]


@dataclass(slots=True)
class CandidateStats:
    """A plain :class:`Candidate`, for calling strategies directly (tests, benchmarks, tools)."""

    name: str
    cost: float = 0.0
    priority: int = 0
    latency_ms: float = 0.0
    error_rate: float = 0.0
    figures: FiguresSource | None = None


class RoutingDecision:
    """Where a request goes: ``backend`` first, then ``fallback_chain`` in order.

    ``score`` (0..1) is the chosen backend's score under the strategy; ``reason`` says why;
    ``candidates`` holds the candidate objects in the order they will be tried.

    ``predicted_latency_ms`` is the chosen backend's learned latency when the decision was made
    (the configured hint until measured); ``predicted_cost_usd`` is what the request should cost
    there, once :meth:`estimate` was told its size (``None`` before).
    """

    __slots__ = (
        "_head",
        "_ordered",
        "_reason",
        "_score",
        "_tail",
        "first",
        "model",
        "pool",
        "predicted_cost_usd",
        "predicted_latency_ms",
        "ranker",
        "scores",
        "strategy",
    )

    def __init__(
        self,
        model: str,
        first: Any,
        pool: Sequence[Any],
        ranker: RoutingStrategy | None,
        scores: list[float] | None = None,
        score: float | None = None,
        reason: str | None = None,
        ordered: Sequence[Any] | None = None,
    ) -> None:
        self.model = model
        self.first = first
        self.pool = pool
        self.ranker = ranker
        self.scores = scores
        self.strategy = ranker.name if ranker is not None else "fixed"
        self._score = score
        self._reason = reason
        self._ordered = ordered
        self._head: Sequence[Any] = ()
        self._tail: Sequence[Any] = ()
        # taken now: the figures move as soon as the request's own outcome is learned
        self.predicted_latency_ms: float = first.latency_ms if first is not None else 0.0
        self.predicted_cost_usd: float | None = None

    @classmethod
    def fixed(
        cls, model: str, ordered: Sequence[Any], score: float, reason: str
    ) -> RoutingDecision:
        """A decision whose order is already known."""
        return cls(model, ordered[0], ordered, None, None, score, reason, ordered)

    def wrap(
        self, head: Sequence[Any], tail: Sequence[Any], score: float | None, reason: str | None
    ) -> None:
        """Put ``head`` (explicit routes) before the ranked pool and ``tail`` (default and
        fallbacks) after it; a new first choice brings its own score and reason."""
        self._head = head
        self._tail = tail
        if head:
            self.first = head[0]
        elif not self.pool and tail:
            self.first = tail[0]
        if self.first is not None:
            self.predicted_latency_ms = self.first.latency_ms
        if reason is not None:
            self._score = score
            self._reason = reason

    def estimate(self, prompt_tokens: int, max_tokens: int) -> float:
        """Set and return ``predicted_cost_usd`` for a request of ``prompt_tokens`` that may
        generate ``max_tokens``, at the chosen backend's prices (see :func:`request_cost_usd`)."""
        self.predicted_cost_usd = request_cost_usd(self.first, prompt_tokens, max_tokens)
        return self.predicted_cost_usd

    @property
    def candidates(self) -> Sequence[Any]:
        if self._ordered is None:
            assert self.ranker is not None
            ordered = self.ranker.order(self)
            if not self._head and ordered and ordered[0] is not self.first:
                # figures may have moved since the choice; the choice stays first
                ordered.remove(self.first)
                ordered.insert(0, self.first)
            self._ordered = ordered
        if self._head or self._tail:
            return [*self._head, *self._ordered, *self._tail]
        return self._ordered

    @property
    def backend(self) -> str:
        return self.first.name  # type: ignore[no-any-return]

    provider_name = backend

    @property
    def score(self) -> float:
        if self._score is None:
            assert self.ranker is not None
            self._score = self.ranker.score_of(self)
        return self._score

    @property
    def reason(self) -> str:
        if self._reason is None:
            assert self.ranker is not None
            self._reason = self.ranker.explain(self)
        return self._reason

    @property
    def fallback_chain(self) -> list[str]:
        return [c.name for c in self.candidates[1:]]

    def __repr__(self) -> str:
        return (
            f"RoutingDecision(backend={self.backend!r}, model={self.model!r}, "
            f"score={self.score:.3f}, reason={self.reason!r}, "
            f"fallback_chain={self.fallback_chain!r})"
        )


class RoutingStrategy(ABC):
    """Orders candidate backends for one request.

    Subclasses implement :meth:`rank` (the hot path: find the first choice, and the scores if
    the strategy has them); the full order, score and reason have defaults driven by
    ``decision.scores`` (higher is better, ties keep candidate order).
    """

    name: ClassVar[str] = "strategy"

    @abstractmethod
    def rank(self, model: str, candidates: Sequence[Any]) -> RoutingDecision:
        """Decide among ``candidates`` (never empty, in priority order)."""

    def choose(self, model: str, candidates: Sequence[Any]) -> RoutingDecision:
        """:meth:`rank`, refusing an empty candidate list."""
        if not candidates:
            raise ValueError("no candidates to choose from")
        return self.rank(model, candidates)

    def order(self, decision: RoutingDecision) -> list[Any]:
        """All candidates in the order to try them."""
        pool = decision.pool
        scores = decision.scores
        if scores is None:
            return list(pool)
        idx = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)
        return [pool[i] for i in idx]

    def score_of(self, decision: RoutingDecision) -> float:
        if decision.scores is None:
            return 1.0
        return max(decision.scores)

    def explain(self, decision: RoutingDecision) -> str:
        return f"{self.name}: {decision.first.name}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def request_cost_usd(candidate: Any, prompt_tokens: int, max_tokens: int) -> float:
    """What a request should cost on ``candidate``, assuming all ``max_tokens`` are generated:
    its per-input and per-output prices when it has them (``price_in``/``price_out``, USD per 1k
    tokens, as the router prices responses), else its ``cost`` per 1k tokens (configured or
    learned) for every token."""
    if prompt_tokens < 0 or max_tokens < 0:
        raise ValueError("token counts must not be negative")
    price_in = getattr(candidate, "price_in", None)
    price_out = getattr(candidate, "price_out", None)
    if price_in is not None or price_out is not None:
        return (prompt_tokens * (price_in or 0.0) + max_tokens * (price_out or 0.0)) / 1000.0
    return float(candidate.cost) * (prompt_tokens + max_tokens) / 1000.0


def _next_of(decision: RoutingDecision) -> Any | None:
    ordered = decision.candidates
    return ordered[1] if len(ordered) > 1 else None


class _KeyOrdered(RoutingStrategy):
    """Lowest value of one attribute first. The score is ``1 / (1 + value / ref)``: 1 for free or
    instant, 0.5 at the reference value."""

    key: ClassVar[Any]  # an attrgetter
    ref: ClassVar[float]

    def rank(self, model: str, candidates: Sequence[Any]) -> RoutingDecision:
        return RoutingDecision(model, min(candidates, key=self.key), candidates, self)

    def order(self, decision: RoutingDecision) -> list[Any]:
        return sorted(decision.pool, key=self.key)

    def score_of(self, decision: RoutingDecision) -> float:
        value: float = self.key(decision.first)
        return 1.0 / (1.0 + max(0.0, value) / self.ref)


class CostBased(_KeyOrdered):
    """Cheapest configured (or learned) cost per 1,000 tokens first."""

    name = "cost"
    key = attrgetter("cost")
    ref = 0.01  # USD per 1k tokens

    def explain(self, decision: RoutingDecision) -> str:
        best = decision.first
        text = f"lowest cost ${best.cost:.6g}/1k tokens"
        nxt = _next_of(decision)
        return text + (f" (next: {nxt.name} at ${nxt.cost:.6g})" if nxt is not None else "")


class LatencyBased(_KeyOrdered):
    """Lowest learned latency first."""

    name = "latency"
    key = attrgetter("latency_ms")
    ref = 100.0  # ms

    def explain(self, decision: RoutingDecision) -> str:
        best = decision.first
        text = f"lowest latency ~{best.latency_ms:.0f} ms"
        nxt = _next_of(decision)
        return text + (f" (next: {nxt.name} ~{nxt.latency_ms:.0f} ms)" if nxt is not None else "")


def _normalized(weights: tuple[float, float, float]) -> tuple[float, float, float]:
    if any(w < 0 for w in weights):
        raise ValueError("weights must not be negative")
    total = sum(weights)
    if total <= 0:
        raise ValueError("at least one weight must be positive")
    a, b, c = (w / total for w in weights)
    return a, b, c


class Hybrid(RoutingStrategy):
    """Weighted cost, latency and reliability::

        score = cost_weight * cost_score + latency_weight * latency_score
                + reliability_weight * (1 - error_rate)

    with ``cost_score = 1 / (1 + cost / cost_ref)`` and
    ``latency_score = 1 / (1 + latency_ms / latency_ref_ms)`` (1 when free or instant, 0.5 at the
    reference value). The scores are absolute, so adding a backend never changes another's score.
    Weights are rescaled to sum to 1, so scores are in [0, 1].
    """

    name = "hybrid"

    def __init__(
        self,
        cost_weight: float = 0.4,
        latency_weight: float = 0.4,
        reliability_weight: float = 0.2,
        *,
        cost_ref: float = 0.01,
        latency_ref_ms: float = 1000.0,
    ) -> None:
        self.weights = _normalized((cost_weight, latency_weight, reliability_weight))
        if cost_ref <= 0 or latency_ref_ms <= 0:
            raise ValueError("reference values must be positive")
        self.cost_ref = cost_ref
        self.latency_ref_ms = latency_ref_ms
        wc, wl, _ = self.weights
        # w / (1 + x / ref) == (w * ref) / (ref + x): one division per term
        self._kc = wc * cost_ref
        self._kl = wl * latency_ref_ms

    def rank(self, model: str, candidates: Sequence[Any]) -> RoutingDecision:
        kc, cref, kl, lref = self._kc, self.cost_ref, self._kl, self.latency_ref_ms
        wr = self.weights[2]
        scores = [
            kc / (cref + c.cost) + kl / (lref + c.latency_ms) + wr - wr * c.error_rate
            for c in candidates
        ]
        return RoutingDecision(
            model, candidates[scores.index(max(scores))], candidates, self, scores
        )

    def explain(self, decision: RoutingDecision) -> str:
        wc, wl, wr = self.weights
        best = decision.first
        cs = 1.0 / (1.0 + best.cost / self.cost_ref)
        ls = 1.0 / (1.0 + best.latency_ms / self.latency_ref_ms)
        return (
            f"best hybrid score {decision.score:.3f}: cost {cs:.2f}x{wc:.2f}"
            f" + latency {ls:.2f}x{wl:.2f} + reliability {1.0 - best.error_rate:.2f}x{wr:.2f}"
        )

    def __repr__(self) -> str:
        wc, wl, wr = self.weights
        return f"Hybrid(cost_weight={wc:.2f}, latency_weight={wl:.2f}, reliability_weight={wr:.2f})"


_MAX_MODELS = 4096  # per-model round-robin clocks kept (oldest dropped): model names are input


class RoundRobin(RoutingStrategy):
    """Least recently used first, as the TypeScript seed defines ``round_robin``: each request
    goes to the candidate this strategy chose longest ago (never chosen counts as oldest; ties
    keep candidate order, i.e. priority). The rest follow, least recently used first.

    On a pool that does not change this is plain rotation. When a backend leaves the pool (its
    breaker opened) and comes back, it is the least recently used and gets the next request,
    where rotating by position would skip or repeat backends.

    ``per_model=True`` (the default) keeps one clock per model; ``per_model=False`` keeps one
    for all models, like the seed's per-provider ``lastUsed``, so a backend just used for one
    model goes to the back for every model. Only first choices are recorded: a fallback that
    served a request is not moved back.
    """

    name = "round_robin"

    def __init__(self, *, per_model: bool = True) -> None:
        self.per_model = per_model
        self._used: dict[str, dict[str, int]] = {}  # model (or "") -> backend -> tick
        self._tick = 0  # a logical clock: no time source needed, and no ties between picks

    def _clock_of(self, model: str) -> dict[str, int]:
        key = model if self.per_model else ""
        used = self._used.get(key)
        if used is None:
            if len(self._used) >= _MAX_MODELS:
                del self._used[next(iter(self._used))]
            used = self._used[key] = {}
        return used

    def _pick(self, first: Any, used: dict[str, int]) -> None:
        # not atomic across threads: two racing picks may send two requests to one backend;
        # the following picks even that out
        self._tick += 1
        used[first.name] = self._tick

    def rank(self, model: str, candidates: Sequence[Any]) -> RoutingDecision:
        used = self._clock_of(model)
        get = used.get
        first = candidates[0]
        oldest = get(first.name, -1)
        if oldest >= 0:  # the first candidate never chosen wins at once
            for c in candidates:  # a plain loop: about twice as fast as min() with a key
                t = get(c.name, -1)
                if t < oldest:
                    first, oldest = c, t
                    if t < 0:
                        break
        self._pick(first, used)
        return RoutingDecision(model, first, candidates, self, None, 1.0)

    def order(self, decision: RoutingDecision) -> list[Any]:
        get = self._clock_of(decision.model).get
        first = decision.first
        rest = sorted((c for c in decision.pool if c is not first), key=lambda c: get(c.name, -1))
        return [first, *rest]

    def explain(self, decision: RoutingDecision) -> str:
        k = list(decision.pool).index(decision.first)
        return f"round-robin: position {k + 1} of {len(decision.pool)}, least recently used"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(per_model={self.per_model})"


class CostPriorityRoundRobin(RoundRobin):
    """Cheapest first; among equally cheap candidates, least recently used first (the
    TypeScript seed's ``cost_priority_round_robin``). Cost is USD per 1k tokens, configured or
    learned; candidates within ``tolerance`` (a fraction of the cheapest cost) of the cheapest
    count as equally cheap. Priority breaks ties among candidates never chosen (the router
    passes them in priority order). The rest follow by cost, least recently used among equals.
    """

    name = "cost_priority_round_robin"
    ref = 0.01  # USD per 1k tokens: the score is 1 / (1 + cost / ref), as for ``cost``

    def __init__(self, *, tolerance: float = 1e-9, per_model: bool = True) -> None:
        if not tolerance >= 0.0:
            raise ValueError("tolerance must not be negative")
        super().__init__(per_model=per_model)
        self.tolerance = tolerance

    def _limit(self, candidates: Sequence[Any]) -> float:
        cheapest: float = min(c.cost for c in candidates)
        return cheapest + abs(cheapest) * self.tolerance

    def rank(self, model: str, candidates: Sequence[Any]) -> RoutingDecision:
        limit = self._limit(candidates)
        used = self._clock_of(model)
        get = used.get
        first = None
        oldest = 0
        for c in candidates:
            if c.cost <= limit:
                t = get(c.name, -1)
                if first is None or t < oldest:
                    first, oldest = c, t
        self._pick(first, used)
        return RoutingDecision(model, first, candidates, self)

    def order(self, decision: RoutingDecision) -> list[Any]:
        limit = self._limit(decision.pool)
        get = self._clock_of(decision.model).get
        first = decision.first
        rest = sorted(
            (c for c in decision.pool if c is not first),
            key=lambda c: (c.cost if c.cost > limit else -math.inf, get(c.name, -1)),
        )
        return [first, *rest]

    def score_of(self, decision: RoutingDecision) -> float:
        cost: float = decision.first.cost
        return 1.0 / (1.0 + max(0.0, cost) / self.ref)

    def explain(self, decision: RoutingDecision) -> str:
        limit = self._limit(decision.pool)
        ties = sum(1 for c in decision.pool if c.cost <= limit)
        text = f"lowest cost ${decision.first.cost:.6g}/1k tokens"
        if ties > 1:
            text += f", least recently used of {ties} equally cheap"
        return text

    def __repr__(self) -> str:
        return f"CostPriorityRoundRobin(tolerance={self.tolerance:g}, per_model={self.per_model})"


class Optimization(StrEnum):
    LATENCY = "latency"
    COST = "cost"
    RELIABILITY = "reliability"


class Adaptive(RoutingStrategy):
    """Learns from live traffic: the router keeps an EWMA of each backend's latency and error
    rate, and this strategy scores them for the chosen optimization::

        latency:     0.7 * latency_score + 0.3 * reliability
        cost:        0.6 * cost_score    + 0.4 * reliability
        reliability: 0.7 * reliability   + 0.3 * latency_score

    with ``latency_score = 1 / (1 + latency_ms / latency_ref_ms)``,
    ``cost_score = 1 / (1 + cost / cost_ref)`` and ``reliability = 1 - error_rate``.
    ``ewma_alpha``, if given, sets how fast the router's averages follow new observations.

    A candidate that offers ``figures(model)`` (the swarm backend with a reputation ledger:
    the providers its policy would pick, their EWMA latency and chance to agree) is scored with
    those: their latency replaces the router's own once measured, and the error rate is the
    larger of the two (the router also sees relay failures the ledger does not; taking the
    larger counts a quorum failure once, not twice).
    """

    name = "adaptive"
    _WEIGHTS: ClassVar[dict[Optimization, tuple[float, float]]] = {
        # (weight of the latency or cost score, weight of reliability)
        Optimization.LATENCY: (0.7, 0.3),
        Optimization.COST: (0.6, 0.4),
        Optimization.RELIABILITY: (0.3, 0.7),
    }

    def __init__(
        self,
        optimize: Optimization | str = Optimization.LATENCY,
        *,
        ewma_alpha: float | None = None,
        latency_ref_ms: float = 100.0,
        cost_ref: float = 0.01,
    ) -> None:
        self.optimize = Optimization(optimize)
        if ewma_alpha is not None and not 0.0 < ewma_alpha <= 1.0:
            raise ValueError("ewma_alpha must be in (0, 1]")
        if latency_ref_ms <= 0 or cost_ref <= 0:
            raise ValueError("reference values must be positive")
        self.ewma_alpha = ewma_alpha
        self.latency_ref_ms = latency_ref_ms
        self.cost_ref = cost_ref
        w, wr = self._WEIGHTS[self.optimize]
        self._wr = wr
        # w / (1 + x / ref) == (w * ref) / (ref + x): one division per candidate
        self._num = w * (cost_ref if self.optimize is Optimization.COST else latency_ref_ms)
        self._ref = cost_ref if self.optimize is Optimization.COST else latency_ref_ms

    def rank(self, model: str, candidates: Sequence[Any]) -> RoutingDecision:
        num, ref, wr = self._num, self._ref, self._wr
        try:
            sources = [c.figures for c in candidates]
        except AttributeError:  # plain candidates without the optional attribute
            sources = [getattr(c, "figures", None) for c in candidates]
        if sources.count(None) != len(sources):
            scores = [
                self._score(model, c, src, num, ref, wr)
                for c, src in zip(candidates, sources, strict=True)
            ]
        elif self.optimize is Optimization.COST:
            scores = [num / (ref + c.cost) + wr - wr * c.error_rate for c in candidates]
        else:
            scores = [num / (ref + c.latency_ms) + wr - wr * c.error_rate for c in candidates]
        return RoutingDecision(
            model, candidates[scores.index(max(scores))], candidates, self, scores
        )

    def _score(
        self, model: str, c: Any, src: FiguresSource | None, num: float, ref: float, wr: float
    ) -> float:
        latency: float = c.latency_ms
        errors: float = c.error_rate
        if src is not None:
            try:
                fig = src(model)
            except Exception:  # a broken ledger must not stop routing
                fig = None
            if fig is not None:
                if fig.latency_ms is not None:
                    latency = fig.latency_ms
                errors = max(errors, fig.failure_rate)
        x: float = c.cost if self.optimize is Optimization.COST else latency
        return num / (ref + x) + wr - wr * errors

    def explain(self, decision: RoutingDecision) -> str:
        best = decision.first
        fig = getattr(best, "figures", None)
        src = " (reputation figures)" if fig is not None and fig(decision.model) else ""
        return (
            f"adaptive ({self.optimize.value}) score {decision.score:.3f}{src}: "
            f"~{best.latency_ms:.0f} ms, {best.error_rate:.1%} errors, ${best.cost:.6g}/1k"
        )

    def __repr__(self) -> str:
        return f"Adaptive(optimize={self.optimize.value!r})"


class PriorityOrder(RoutingStrategy):
    """The configured priority order (lower number first, then the order backends were added)."""

    name = "priority"

    def rank(self, model: str, candidates: Sequence[Any]) -> RoutingDecision:
        return RoutingDecision(model, candidates[0], candidates, self, None, 1.0)

    def explain(self, decision: RoutingDecision) -> str:
        return f"highest priority ({decision.first.priority})"


def strategy_from_name(name: str, **kwargs: Any) -> RoutingStrategy:
    """``"cost"``, ``"latency"``, ``"hybrid"``, ``"round_robin"`` (also
    ``"least_recently_used"``), ``"cost_priority_round_robin"``, ``"adaptive"`` or ``"priority"``
    (keyword arguments go to the strategy's constructor)."""
    key = name.strip().lower().replace("-", "_")
    table: dict[str, type[RoutingStrategy]] = {
        "cost": CostBased,
        "cost_based": CostBased,
        "latency": LatencyBased,
        "latency_based": LatencyBased,
        "hybrid": Hybrid,
        "round_robin": RoundRobin,
        "roundrobin": RoundRobin,
        "least_recently_used": RoundRobin,
        "lru": RoundRobin,
        "cost_priority_round_robin": CostPriorityRoundRobin,
        "adaptive": Adaptive,
        "priority": PriorityOrder,
    }
    if key not in table:
        raise ValueError(f"unknown strategy {name!r}; choose from {sorted(set(table))}")
    return table[key](**kwargs)
