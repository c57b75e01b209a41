"""An in-process NIP-90 swarm for testing and planning: :class:`SwarmSimulator`.

Each simulated job asks ``num_providers`` providers. Each one declines (its price is above the
bid), fails (error feedback), times out (never answers), or answers after a latency drawn from
``latency``; with ``variance_in_results`` some answers differ. The answers are counted, in arrival
order, by the same quorum engine the real client uses (``client.customer.quorum.Quorum``), so the
simulator answers questions like "which quorum, timeout and bid give 99% success, at what cost?"::

    sim = SwarmSimulator(SwarmSimConfig(num_providers=5, quorum_size=3, failure_rate=0.1, seed=7))
    stats = sim.run(10_000)
    stats.success_rate, stats.latency_p99_ms, stats.mean_cost_sats

Everything is driven by one seeded ``random.Random``: the same seed gives the same runs. As a
backend the simulator answers instantly by default (``time_scale=0``) and reports the simulated
latency in ``LmResponse.latency_ms`` (``simulated_latency = True``: an ``LmRouter`` learns that
figure, not its own wall time); ``time_scale=1`` makes it really wait that long.

Mixed swarms: ``profiles`` gives each provider its own behaviour (:class:`ProviderProfile`:
``good``, ``slow``, ``liar`` or your own latency, failure, timeout and lie rates and price). With
a ``selector`` (``client.customer.selection.Selector`` over a ``ReputationLedger``) each job
addresses the providers the selector's policy picks, counts only the votes it admits, and the
outcome is written to the ledger, exactly as ``SwarmClient`` does with real providers;
:func:`sim_directory` makes the directory of a simulated swarm::

    P = ProviderProfile
    profiles = [P.good()] * 4 + [P.slow()] * 3 + [P.liar()] * 3
    cfg = SwarmSimConfig(num_providers=10, quorum_size=2, profiles=profiles, seed=1)
    selector = Selector(directory=sim_directory(cfg), ledger=ReputationLedger(), seed=1)
    sim = SwarmSimulator(cfg, selector=selector)
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from client.customer.directory import PriceList, ProviderDirectory, ProviderInfo
from client.customer.quorum import Quorum, Vote, comparator_by_name
from client.customer.reputation import Observation, observe, unmatched_of
from client.customer.selection import Figures, GatedQuorum, Selection, Selector
from client.nostr.errors import NoProvidersAvailable, QuorumNotReached

from ..errors import InvalidRequest
from ..request import LmRequest
from ..types import LmResponse, LmUsage, SwarmOutcome, estimate_tokens, prompt_text
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


class ProviderProfile(BaseModel):
    """One provider's behaviour; a field left None takes the swarm-wide value from the config.
    ``lie_rate``: share of its answers that are wrong (each liar's lie is its own unless the
    config's ``liars_collude``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    kind: str = "good"
    latency: Latency | None = None
    failure_rate: float | None = Field(None, ge=0.0, le=1.0)
    timeout_rate: float | None = Field(None, ge=0.0, le=1.0)
    lie_rate: float = Field(0.0, ge=0.0, le=1.0)
    price_sats: int | None = Field(None, ge=0)

    @classmethod
    def good(cls, **kw: Any) -> ProviderProfile:
        """Answers correctly, about 800 ms, 2% errors."""
        base: dict[str, Any] = {"latency": Normal(800, 200), "failure_rate": 0.02}
        return cls(kind="good", **{**base, **kw})

    @classmethod
    def slow(cls, **kw: Any) -> ProviderProfile:
        """Answers correctly, but a long tail: median 4 s, 99th percentile 40 s."""
        base: dict[str, Any] = {"latency": LongTail(4000, 40_000), "failure_rate": 0.02}
        return cls(kind="slow", **{**base, **kw})

    @classmethod
    def liar(cls, **kw: Any) -> ProviderProfile:
        """Fast and cheap, and wrong 90% of the time (a lazy or dishonest node)."""
        base: dict[str, Any] = {"latency": Normal(300, 100), "lie_rate": 0.9, "failure_rate": 0.0}
        return cls(kind="liar", **{**base, **kw})


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
    profiles: list[ProviderProfile] | None = Field(
        None, description="one behaviour per provider (a mixed swarm)"
    )
    liars_collude: bool = Field(False, description="liars all give the same wrong answer")
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
        if self.profiles is not None and len(self.profiles) != self.num_providers:
            raise ValueError("profiles needs one profile per provider")
        comparator_by_name(self.comparator)  # raises for an unknown name
        return self

    def price_of(self, provider: int) -> int:
        if self.profiles is not None:
            own = self.profiles[provider].price_sats
            if own is not None:
                return own
        p = self.price_sats
        return p[provider] if isinstance(p, list) else p

    def profile_of(self, provider: int) -> ProviderProfile | None:
        return self.profiles[provider] if self.profiles is not None else None


Outcome = Literal["answered", "failed", "timed_out", "declined", "late", "not_asked"]


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
    correct: bool = False  # reached, and the agreed text is the true answer
    asked: tuple[str, ...] = ()  # providers addressed (every one for a broadcast)
    heard: tuple[tuple[str, float, bool], ...] = ()  # (provider, ms, answered) before the end
    groups: tuple[tuple[str, ...], ...] = ()  # the quorum's groups of agreeing providers

    @property
    def answers(self) -> int:
        """Answers the customer received before the outcome was known."""
        return sum(1 for _, _, answered in self.heard if answered)


def provider_key(i: int) -> str:
    return f"sim-provider-{i}"


def simulate_job(
    config: SwarmSimConfig,
    rng: random.Random,
    prompt: str,
    *,
    targets: Sequence[str] | None = None,
    admit: Callable[[str], bool] | None = None,
) -> SimJob:
    """Run one job (pure apart from ``rng``). ``targets``: the provider keys addressed (None:
    all); ``admit``: whose votes count (the rest are observers, as in
    ``client.customer.selection.GatedQuorum``)."""
    text = config.response_template.replace("{prompt}", prompt)
    arrivals: list[tuple[float, int, str | None]] = []  # (time, provider, text or None = error)
    outcomes: list[Outcome] = []
    n = config.num_providers
    wanted = set(targets) if targets is not None else None
    shared_lie = f"{text} (wrong)"
    for i in range(n):
        if wanted is not None and provider_key(i) not in wanted:
            outcomes.append("not_asked")
            continue
        if config.bid_sats is not None and config.price_of(i) > config.bid_sats:
            outcomes.append("declined")
            continue
        prof = config.profile_of(i)
        failure_rate, timeout_rate, dist = config.failure_rate, config.timeout_rate, config.latency
        if prof is not None:
            failure_rate = prof.failure_rate if prof.failure_rate is not None else failure_rate
            timeout_rate = prof.timeout_rate if prof.timeout_rate is not None else timeout_rate
            dist = prof.latency if prof.latency is not None else dist
        r = rng.random()
        latency = dist.sample(rng)
        if r < failure_rate:
            outcomes.append("failed")
            arrivals.append((latency, i, None))
        elif r < failure_rate + timeout_rate:
            outcomes.append("timed_out")
        elif latency > config.timeout_ms:
            outcomes.append("late")
        else:
            answer = text
            if prof is not None and prof.lie_rate and rng.random() < prof.lie_rate:
                answer = shared_lie if config.liars_collude else f"{text} (wrong, {i})"
            elif config.variance_in_results and rng.random() < config.disagreement_rate:
                answer = f"{text} (variant {i})"
            outcomes.append("answered")
            arrivals.append((latency, i, answer))
    arrivals.sort()
    asked = tuple(provider_key(i) for i, o in enumerate(outcomes) if o != "not_asked")
    comparator = comparator_by_name(config.comparator)
    if admit is not None:
        voters = sum(1 for p in asked if admit(p))
        engine: Quorum = GatedQuorum(
            config.quorum_size, max(voters, config.quorum_size), comparator, admit=admit
        )
    else:
        engine = Quorum(config.quorum_size, max(len(asked), config.quorum_size), comparator)
    for i, o in enumerate(outcomes):
        if o == "declined":
            engine.abstain(provider_key(i))
    decision = engine.decision()
    if len(asked) < config.quorum_size:
        decision = replace(decision, exhausted=True)
    at = 0.0
    heard: list[tuple[str, float, bool]] = []
    for t, i, reply in arrivals if not decision.exhausted else ():
        if t > config.timeout_ms:
            break
        at = t
        heard.append((provider_key(i), t, reply is not None))
        if reply is None:
            decision = engine.abstain(provider_key(i))
        else:
            decision = engine.add(Vote(provider=provider_key(i), text=reply, received_at=t / 1000))
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
            decision.text == text,
            asked,
            tuple(heard),
            decision.groups,
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
        False,
        asked,
        tuple(heard),
        decision.groups,
    )


def sim_observations(config: SwarmSimConfig, job: SimJob) -> list[Observation]:
    """What a customer's reputation ledger learns from one simulated job (the same rules as
    for a real ``SwarmResult``: ``client.customer.reputation.observe``)."""
    answered = {p: t for p, t, ok in job.heard if ok}
    errors = [p for p, _, ok in job.heard if not ok]
    errors += [provider_key(i) for i, o in enumerate(job.outcomes) if o == "declined"]
    price = {p: config.price_of(int(p.rsplit("-", 1)[1])) * 1000 for p in job.asked}
    agreeing = set(job.agreeing)
    return observe(
        asked=job.asked,
        reached=job.reached,
        unmatched=() if job.reached else unmatched_of(job.groups),
        timed_out=job.reason == "timeout",
        agreeing=agreeing,
        dissenting=job.dissenting if job.reached else (),
        answered_ms=answered,
        errors=errors,
        elapsed_ms=job.latency_ms,
        prices=price,
        paid={p: m for p, m in price.items() if p in agreeing},
    )


def sim_directory(
    config: SwarmSimConfig, *, created_at: int = 0, heartbeat_s: int = 120
) -> ProviderDirectory:
    """The directory a customer would build from the simulated providers' announcements (every
    provider alive at ``created_at`` on a clock that stays there, with its price as minimum)."""
    directory = ProviderDirectory(clock=lambda: float(created_at))
    for i in range(config.num_providers):
        directory.add(
            ProviderInfo(
                pubkey=provider_key(i),
                created_at=created_at,
                event_id=f"{i:064x}",
                name=provider_key(i),
                models=tuple(config.models),
                payment="after",
                price=PriceList(min_msats=config.price_of(i) * 1000),
                heartbeat_s=heartbeat_s,
                swarm=True,
            )
        )
    return directory


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
    correct: int = 0  # reached with the true answer (not an agreed lie)
    answers: int = 0  # answers received before each job's outcome
    dissenting_answers: int = 0  # of those, answers outside the agreeing group

    @property
    def correct_rate(self) -> float:
        return self.correct / self.jobs if self.jobs else 0.0

    @property
    def dissent_share(self) -> float:
        """Share of the answers received that were dissent."""
        return self.dissenting_answers / self.answers if self.answers else 0.0

    @property
    def bad_share(self) -> float:
        """Share of failed or dissenting outcomes: jobs without a correct answer plus dissenting
        answers, over jobs plus answers (0: every job agreed on the truth, nobody dissented)."""
        total = self.jobs + self.answers
        return (self.jobs - self.correct + self.dissenting_answers) / total if total else 0.0


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
        correct=sum(1 for j in ok if j.correct),
        answers=sum(j.answers for j in jobs),
        dissenting_answers=sum(len(j.dissenting) for j in jobs if j.reached),
    )


class SwarmSimulator(LmBackend):
    """A backend that answers like a NIP-90 swarm would (see the module doc). Serves the models
    in ``config.models`` and any ``swarm/<model>``; costs are in sats. A job without agreement
    raises ``QuorumNotReached`` (``received`` holds the :class:`SimJob`)."""

    # ``LmResponse.latency_ms`` is the simulated latency, whatever ``time_scale`` makes the call
    # really take: a router learns it instead of its own wall time.
    simulated_latency = True

    def __init__(
        self,
        config: SwarmSimConfig | None = None,
        *,
        name: str = "swarm-sim",
        time_scale: float = 0.0,
        selector: Selector | None = None,
    ) -> None:
        self.config = config or SwarmSimConfig()
        self.name = name
        self.time_scale = time_scale
        self.selector = selector
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
        job = self._one(prompt)
        self.jobs.append(job)
        return job

    def run(self, jobs: int, prompt: str = "ping") -> SimStats:
        """Simulate ``jobs`` jobs (without keeping them) and summarize."""
        return summarize(self._one(prompt) for _ in range(jobs))

    def _one(self, prompt: str) -> SimJob:
        sel = self.selector
        if sel is None:
            return simulate_job(self.config, self.rng, prompt)
        k = self.config.quorum_size
        try:
            pick: Selection | None = sel.select(k)
        except NoProvidersAvailable:
            pick = None
        if pick is None:
            job = SimJob(False, None, 0.0, (), (), 0, (), "exhausted")
        else:
            job = simulate_job(
                self.config,
                self.rng,
                prompt,
                targets=None if pick.broadcast else pick.targets,
                admit=sel.admit_for(pick),
            )
        if sel.ledger is not None:
            sel.ledger.record(sim_observations(self.config, job))
        return job

    def reputation_figures(self, model: str | None = None) -> Figures | None:
        """What the selector's ledger expects of the next job (for the router's adaptive
        strategy); None without a selector or a record."""
        if self.selector is None:
            return None
        return self.selector.figures(self.config.quorum_size)

    async def send(self, request: LmRequest) -> LmResponse:
        terms = request.swarm
        if terms is not None and terms.given():
            # A simulated job's quorum, bid and timeout are the config's: a request cannot
            # change them, and must not believe it did.
            raise InvalidRequest(
                f"{self.name}: a simulated swarm takes its terms from SwarmSimConfig, not from "
                f"the request ({', '.join(terms.given())})"
            )
        text_in = prompt_text(request.prompt)
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
        outcome = SwarmOutcome(
            tuple(job.agreeing), tuple(job.dissenting), msats_paid=job.cost_sats * 1000
        )
        return LmResponse(
            job.text, usage, request.model, "stop", job.latency_ms, self.name, swarm=outcome
        )


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
