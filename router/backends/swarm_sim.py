"""An in-process NIP-90 swarm for testing and planning: :class:`SwarmSimulator`.

Each simulated job asks ``num_providers`` providers. Each one declines (its price is above the
bid), fails (error feedback), times out (never answers), or answers after a latency drawn from
``latency``; with ``variance_in_results`` some answers differ. The answers are counted, in arrival
order, by the same quorum engine the real client uses (``client.quorum.Quorum``), so the
simulator answers questions like "which quorum, timeout and bid give 99% success, at what cost?"::

    sim = SwarmSimulator(SwarmSimConfig(num_providers=5, quorum_size=3, failure_rate=0.1, seed=7))
    stats = sim.run(10_000)
    stats.success_rate, stats.latency_p99_ms, stats.mean_cost_sats

Everything is driven by one seeded ``random.Random``: the same seed gives the same runs. As a
backend the simulator answers instantly by default (``time_scale=0``) and reports the simulated
latency in ``LmResponse.latency_ms``; ``time_scale=1`` makes it really wait that long.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from client.errors import QuorumNotReached
from client.quorum import Quorum, Vote, comparator_by_name

from ..types import LmResponse, LmUsage, Prompt, estimate_tokens, prompt_text
from .base import LmBackend

_Z99 = 2.3263478740408408  # the standard normal's 99th percentile


@dataclass(frozen=True, slots=True)
class Constant:
    """Every provider takes exactly ``ms``."""

    ms: float

    def sample(self, rng: random.Random) -> float:
        return max(0.0, self.ms)


@dataclass(frozen=True, slots=True)
class Normal:
    """Normally distributed latency (negative draws count as 0)."""

    mean_ms: float
    std_ms: float

    def sample(self, rng: random.Random) -> float:
        return max(0.0, rng.gauss(self.mean_ms, self.std_ms))


@dataclass(frozen=True, slots=True)
class LongTail:
    """Log-normal latency with the given median and 99th percentile: most answers are quick, a
    few are very slow (what a swarm of strangers' machines looks like)."""

    median_ms: float
    p99_ms: float

    def __post_init__(self) -> None:
        if self.median_ms <= 0 or self.p99_ms < self.median_ms:
            raise ValueError("LongTail needs 0 < median_ms <= p99_ms")

    def sample(self, rng: random.Random) -> float:
        sigma = (math.log(self.p99_ms) - math.log(self.median_ms)) / _Z99
        return rng.lognormvariate(math.log(self.median_ms), sigma)


class LatencyDist:
    """The latency distributions: ``LatencyDist.Constant(500)``,
    ``LatencyDist.Normal(mean_ms=500, std_ms=200)``,
    ``LatencyDist.LongTail(median_ms=400, p99_ms=5000)``."""

    Constant = Constant
    Normal = Normal
    LongTail = LongTail


Latency = Constant | Normal | LongTail


class SwarmSimConfig(BaseModel):
    """How the simulated swarm behaves. Rates are per provider per job."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    num_providers: int = Field(5, ge=1)
    quorum_size: int = Field(3, ge=1)
    latency: Latency = Normal(mean_ms=500, std_ms=200)
    failure_rate: float = Field(0.0, ge=0.0, le=1.0, description="providers that answer an error")
    timeout_rate: float = Field(0.0, ge=0.0, le=1.0, description="providers that never answer")
    timeout_ms: float = Field(30_000.0, gt=0, description="how long the customer waits")
    variance_in_results: bool = False
    disagreement_rate: float = Field(
        0.3, ge=0.0, le=1.0, description="with variance: answers that differ from the rest"
    )
    response_template: str = "Response: {prompt}"
    price_sats: int | list[int] = Field(10, description="per provider (a list: one each)")
    bid_sats: int | None = Field(None, ge=0, description="providers pricier than this decline")
    comparator: str = "normalized"
    models: list[str] = Field(default_factory=lambda: ["swarm-sim"])
    seed: int | None = None

    @model_validator(mode="after")
    def _check(self) -> SwarmSimConfig:
        if self.quorum_size > self.num_providers:
            raise ValueError("quorum_size cannot exceed num_providers")
        if self.failure_rate + self.timeout_rate > 1.0:
            raise ValueError("failure_rate + timeout_rate cannot exceed 1")
        if isinstance(self.price_sats, list):
            if len(self.price_sats) != self.num_providers:
                raise ValueError("price_sats needs one price per provider")
            if any(p < 0 for p in self.price_sats):
                raise ValueError("prices must not be negative")
        elif self.price_sats < 0:
            raise ValueError("prices must not be negative")
        comparator_by_name(self.comparator)  # raises for an unknown name
        return self

    def price_of(self, provider: int) -> int:
        p = self.price_sats
        return p[provider] if isinstance(p, list) else p


Outcome = Literal["answered", "failed", "timed_out", "declined", "late"]


@dataclass(frozen=True, slots=True)
class SimJob:
    """One simulated job: what each provider did and what the quorum decided."""

    reached: bool
    text: str | None
    latency_ms: float  # when the quorum was reached, gave up as impossible, or timed out
    agreeing: tuple[str, ...]
    dissenting: tuple[str, ...]
    cost_sats: int  # what the agreeing providers charged
    outcomes: tuple[Outcome, ...]  # per provider
    reason: str  # "reached", "exhausted" or "timeout"


def provider_key(i: int) -> str:
    return f"sim-provider-{i}"


def simulate_job(config: SwarmSimConfig, rng: random.Random, prompt: str) -> SimJob:
    """Run one job (pure apart from ``rng``)."""
    text = config.response_template.replace("{prompt}", prompt)
    arrivals: list[tuple[float, int, str | None]] = []  # (time, provider, text or None = error)
    outcomes: list[Outcome] = []
    n = config.num_providers
    for i in range(n):
        if config.bid_sats is not None and config.price_of(i) > config.bid_sats:
            outcomes.append("declined")
            continue
        r = rng.random()
        latency = config.latency.sample(rng)
        if r < config.failure_rate:
            outcomes.append("failed")
            arrivals.append((latency, i, None))
        elif r < config.failure_rate + config.timeout_rate:
            outcomes.append("timed_out")
        elif latency > config.timeout_ms:
            outcomes.append("late")
        else:
            answer = text
            if config.variance_in_results and rng.random() < config.disagreement_rate:
                answer = f"{text} (variant {i})"
            outcomes.append("answered")
            arrivals.append((latency, i, answer))
    arrivals.sort()
    engine = Quorum(config.quorum_size, n, comparator_by_name(config.comparator))
    for i, o in enumerate(outcomes):
        if o == "declined":
            engine.abstain(provider_key(i))
    decision = engine.decision()
    at = 0.0
    for t, i, answer in arrivals if not decision.exhausted else ():
        if t > config.timeout_ms:
            break
        at = t
        if answer is None:
            decision = engine.abstain(provider_key(i))
        else:
            decision = engine.add(Vote(provider=provider_key(i), text=answer, received_at=t / 1000))
        if decision.reached or decision.exhausted:
            break
    if decision.reached:
        cost = sum(config.price_of(int(p.rsplit("-", 1)[1])) for p in decision.agreeing)
        return SimJob(
            True,
            decision.text,
            at,
            decision.agreeing,
            decision.dissenting,
            cost,
            tuple(outcomes),
            "reached",
        )
    # Without agreement the customer (who knows how many providers it asked) gives up as soon as
    # k became impossible even if every silent provider answered; otherwise it waits it out.
    if decision.exhausted:
        latency, reason = at, "exhausted"
    else:
        latency, reason = config.timeout_ms, "timeout"
    return SimJob(
        False,
        None,
        latency,
        (),
        decision.dissenting,
        0,
        tuple(outcomes),
        reason,
    )


@dataclass(frozen=True, slots=True)
class SimStats:
    """Figures over many simulated jobs (latencies over successful jobs only)."""

    jobs: int
    successes: int
    success_rate: float
    failure_rate: float
    timeouts: int
    exhausted: int
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    latency_mean_ms: float
    mean_cost_sats: float
    total_cost_sats: int
    provider_outcomes: dict[str, int]


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[i]


def summarize(jobs: Iterable[SimJob]) -> SimStats:
    jobs = list(jobs)
    ok = [j for j in jobs if j.reached]
    lat = sorted(j.latency_ms for j in ok)
    counts: dict[str, int] = {}
    for j in jobs:
        for o in j.outcomes:
            counts[o] = counts.get(o, 0) + 1
    total_cost = sum(j.cost_sats for j in ok)
    n = len(jobs)
    return SimStats(
        jobs=n,
        successes=len(ok),
        success_rate=len(ok) / n if n else 0.0,
        failure_rate=1.0 - len(ok) / n if n else 0.0,
        timeouts=sum(1 for j in jobs if j.reason == "timeout"),
        exhausted=sum(1 for j in jobs if j.reason == "exhausted"),
        latency_p50_ms=_percentile(lat, 0.50),
        latency_p95_ms=_percentile(lat, 0.95),
        latency_p99_ms=_percentile(lat, 0.99),
        latency_mean_ms=statistics.fmean(lat) if lat else 0.0,
        mean_cost_sats=total_cost / len(ok) if ok else 0.0,
        total_cost_sats=total_cost,
        provider_outcomes=counts,
    )


class SwarmSimulator(LmBackend):
    """A backend that answers like a NIP-90 swarm would (see the module doc). Serves the models
    in ``config.models`` and any ``swarm/<model>``; costs are in sats. A job without agreement
    raises ``QuorumNotReached`` (``received`` holds the :class:`SimJob`)."""

    def __init__(
        self,
        config: SwarmSimConfig | None = None,
        *,
        name: str = "swarm-sim",
        time_scale: float = 0.0,
    ) -> None:
        self.config = config or SwarmSimConfig()
        self.name = name
        self.time_scale = time_scale
        self.rng = random.Random(self.config.seed)
        self.jobs: list[SimJob] = []
        self._models = set(self.config.models)
        lat = self.config.latency
        self.expected_latency_ms = (
            lat.ms
            if isinstance(lat, Constant)
            else lat.mean_ms
            if isinstance(lat, Normal)
            else lat.median_ms
        )

    def supported_models(self) -> list[str]:
        return list(self.config.models)

    def supports_model(self, model: str) -> bool:
        return model in self._models or model.startswith("swarm/")

    def simulate(self, prompt: str = "ping") -> SimJob:
        job = simulate_job(self.config, self.rng, prompt)
        self.jobs.append(job)
        return job

    def run(self, jobs: int, prompt: str = "ping") -> SimStats:
        """Simulate ``jobs`` jobs (without keeping them) and summarize."""
        return summarize(simulate_job(self.config, self.rng, prompt) for _ in range(jobs))

    async def complete(
        self, model: str, prompt: Prompt, max_tokens: int = 256, **params: Any
    ) -> LmResponse:
        text_in = prompt_text(prompt)
        job = self.simulate(text_in)
        if self.time_scale > 0:
            await asyncio.sleep(job.latency_ms * self.time_scale / 1000)
        if not job.reached or job.text is None:
            raise QuorumNotReached(
                f"{self.name}: quorum {self.config.quorum_size} of {self.config.num_providers} "
                f"not reached ({job.reason})",
                received=job,
            )
        p, c = estimate_tokens(text_in), estimate_tokens(job.text)
        usage = LmUsage(p, c, p + c, None, job.cost_sats)
        meta = {"agreeing": list(job.agreeing), "dissenting": list(job.dissenting)}
        return LmResponse(job.text, usage, model, "stop", job.latency_ms, self.name, meta)


def sweep(
    base: SwarmSimConfig, jobs: int = 1000, **grid: Sequence[Any]
) -> list[tuple[SwarmSimConfig, SimStats]]:
    """Run the simulator for every combination of the given config fields, e.g.
    ``sweep(cfg, quorum_size=[2, 3], timeout_ms=[5000, 10000], bid_sats=[10, 20])``."""
    keys = list(grid)
    combos: list[dict[str, Any]] = [{}]
    for k in keys:
        combos = [{**c, k: v} for c in combos for v in grid[k]]
    out = []
    for combo in combos:
        fields = {k: getattr(base, k) for k in SwarmSimConfig.model_fields}
        cfg = SwarmSimConfig(**{**fields, **combo})  # validated as a whole
        out.append((cfg, SwarmSimulator(cfg).run(jobs)))
    return out
