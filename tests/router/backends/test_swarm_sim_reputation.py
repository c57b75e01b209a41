"""Over many seeded simulated jobs with a mix of good, slow and lying providers, routing by
reputation gives fewer failed or dissenting answers than broadcast; the router's adaptive
strategy reads the same ledger figures for swarm backends."""

from __future__ import annotations

import random
from typing import Any

import pytest

from client.customer.reputation import Observation, ReputationLedger
from client.customer.selection import AccessList, BestReputation, Broadcast, Explore, Selector
from router import LmRouter
from router.backends import SwarmBackend
from router.backends.swarm_sim import (
    ProviderProfile,
    SimStats,
    SwarmSimConfig,
    SwarmSimulator,
    provider_key,
    sim_directory,
    summarize,
)
from router.strategy import Adaptive, CandidateStats

JOBS = 500


def mixed_swarm(seed: int, *, collude: bool = False) -> SwarmSimConfig:
    profiles = (
        [ProviderProfile.good(price_sats=10)] * 4
        + [ProviderProfile.slow(price_sats=6)] * 3
        + [ProviderProfile.liar(price_sats=2)] * 3
    )
    random.Random(seed).shuffle(profiles)  # so key order tells a policy nothing
    return SwarmSimConfig(
        num_providers=len(profiles),
        quorum_size=2,
        profiles=profiles,
        timeout_ms=10_000,
        liars_collude=collude,
        seed=seed,
    )


def run(cfg: SwarmSimConfig, policy: Any, **kw: Any) -> tuple[SimStats, Selector]:
    selector = Selector(
        directory=sim_directory(cfg), ledger=ReputationLedger(), policy=policy, seed=1, **kw
    )
    return SwarmSimulator(cfg, selector=selector).run(JOBS), selector


def run_halves(cfg: SwarmSimConfig, policy: Any) -> tuple[SimStats, SimStats]:
    """Figures over the first (learning) and the second half of the jobs."""
    sel = Selector(directory=sim_directory(cfg), ledger=ReputationLedger(), policy=policy, seed=1)
    sim = SwarmSimulator(cfg, selector=sel)
    jobs = [sim.simulate() for _ in range(JOBS)]
    return summarize(jobs[: JOBS // 2]), summarize(jobs[JOBS // 2 :])


def kinds(cfg: SwarmSimConfig) -> dict[str, str]:
    assert cfg.profiles is not None
    return {provider_key(i): p.kind for i, p in enumerate(cfg.profiles)}


@pytest.mark.parametrize("seed", [1, 2])
def test_reputation_routing_beats_broadcast(seed: int) -> None:
    cfg = mixed_swarm(seed)
    broadcast, _ = run(cfg, Broadcast())
    best, sel = run(cfg, BestReputation())
    explore, _ = run(cfg, Explore(BestReputation(), share=0.1))
    # Broadcast reaches agreement (the liars disagree among themselves and four good providers
    # are always asked) but every job hears the liars' fast wrong answers.
    assert broadcast.correct_rate > 0.98 and broadcast.dissent_share > 0.3
    for targeted in (best, explore):
        # Failed jobs plus dissenting answers, over jobs plus answers: far lower.
        assert targeted.bad_share < broadcast.bad_share / 5
        assert targeted.dissent_share < 0.05
        assert targeted.correct_rate > 0.9  # learning who lies costs some jobs at first
    # The ledger learned who is who.
    assert sel.ledger is not None
    role = kinds(cfg)
    for rec in sel.ledger.records():
        if role[rec.provider] == "liar":
            assert rec.score < 0.5
        elif role[rec.provider] == "good" and rec.jobs > 50:
            assert rec.score > 0.9


def test_once_learned_targeted_jobs_succeed_as_often_as_broadcast() -> None:
    cfg = mixed_swarm(1)
    learning, learned = run_halves(cfg, BestReputation())
    _, broadcast = run_halves(cfg, Broadcast())
    assert learned.bad_share < learning.bad_share
    assert learned.correct_rate >= broadcast.correct_rate - 0.02
    assert learned.dissent_share < 0.01


def test_broadcast_ledger_learns_liars_and_slow_latency() -> None:
    cfg = mixed_swarm(3)
    _, sel = run(cfg, Broadcast())
    assert sel.ledger is not None
    role = kinds(cfg)
    recs = {r.provider: r for r in sel.ledger.records()}
    liars = [recs[p] for p, k in role.items() if k == "liar"]
    goods = [recs[p] for p, k in role.items() if k == "good"]
    assert max(r.score for r in liars) < min(r.score for r in goods)
    assert all(r.dissented > r.agreed for r in liars)


def test_exploration_gives_newcomers_a_record() -> None:
    cfg = mixed_swarm(4)
    _, best = run(cfg, BestReputation())
    _, explore = run(cfg, Explore(BestReputation(), share=0.2))
    assert best.ledger is not None and explore.ledger is not None
    # Best reputation alone leaves some providers with (almost) no record; exploration gives
    # every one of them one (a newcomer is one with fewer than 3 jobs on record).
    best_jobs = {p: 0 for p in kinds(cfg)} | {r.provider: r.jobs for r in best.ledger.records()}
    assert min(best_jobs.values()) < 3
    assert len(explore.ledger) == cfg.num_providers
    assert min(r.jobs for r in explore.ledger.records()) >= 3


def test_block_list_is_enforced_even_in_broadcast() -> None:
    cfg = mixed_swarm(5)
    liars = [p for p, k in kinds(cfg).items() if k == "liar"]
    stats, sel = run(cfg, Broadcast(), access=AccessList(block=frozenset(liars)))
    # The liars still answer (a broadcast reaches everyone) but are never counted.
    assert stats.dissenting_answers == 0 and stats.correct_rate > 0.95
    sim = SwarmSimulator(cfg, selector=sel)
    for _ in range(50):
        job = sim.simulate()
        assert not set(job.agreeing) & set(liars) and not set(job.dissenting) & set(liars)
    targeted, _ = run(cfg, BestReputation(), access=AccessList(block=frozenset(liars)))
    assert targeted.provider_outcomes.get("not_asked", 0) >= 3 * JOBS


def test_colluding_liars_fool_broadcast_but_not_an_allow_list() -> None:
    """What a quorum cannot do: liars that agree with each other win a broadcast, and the ledger
    learns the wrong lesson. An allow-list of known-good keys (membership) is what helps."""
    from client.customer.selection import QuorumMembership

    cfg = mixed_swarm(6, collude=True)
    broadcast, _ = run(cfg, Broadcast())
    assert broadcast.correct_rate < 0.5  # fast colluders agree first
    good = [p for p, k in kinds(cfg).items() if k == "good"]
    members = QuorumMembership(allow=frozenset(good))
    guarded, _ = run(cfg, Broadcast(), membership=members)
    assert guarded.correct_rate > 0.95


# --- the router reads the same figures ------------------------------------------------------------


def trained_simulator(name: str, kind: str) -> SwarmSimulator:
    cfg = SwarmSimConfig(num_providers=3, quorum_size=2, seed=1)
    ledger = ReputationLedger()
    for i in range(3):
        ms = 900.0 if kind == "agreed" else 10_000.0
        ledger.record([Observation(provider_key(i), kind, ms)] * 10)  # type: ignore[arg-type]
    sel = Selector(directory=sim_directory(cfg), ledger=ledger)
    return SwarmSimulator(cfg, name=name, selector=sel)


@pytest.mark.parametrize("bad_first", [True, False])
def test_adaptive_strategy_routes_by_the_ledger(bad_first: bool) -> None:
    good = trained_simulator("swarm-good", "agreed")
    bad = trained_simulator("swarm-bad", "timeout")
    fig = bad.reputation_figures()
    assert fig is not None and fig.failure_rate > 0.5
    order = [bad, good] if bad_first else [good, bad]
    builder = LmRouter.builder().strategy(Adaptive("reliability"))
    for b in order:
        builder = builder.add_backend(b)
    router = builder.build()
    decision = router.route("swarm/llama3")
    assert decision.backend == "swarm-good"
    assert "reputation" in decision.reason


def test_adaptive_with_plain_candidates_and_figures() -> None:
    class Fig:
        latency_ms = 50.0
        failure_rate = 0.9

    a = CandidateStats("a", latency_ms=100.0)
    b = CandidateStats("b", latency_ms=100.0, figures=lambda model: Fig())
    assert Adaptive("reliability").rank("m", [b, a]).backend == "a"
    # Without figures the order decides among equals.
    assert Adaptive("reliability").rank("m", [CandidateStats("x"), a]).backend == "x"


def test_swarm_backend_offers_its_clients_selector_figures() -> None:
    sim = trained_simulator("s", "agreed")

    class Client:
        selector = sim.selector

        async def complete(self, prompt: str, **kw: Any) -> Any:
            raise AssertionError("not called")

    backend = SwarmBackend(Client(), quorum=2)
    fig = backend.reputation_figures("swarm/any")
    assert fig is not None and fig.latency_ms == pytest.approx(900.0)
    assert fig.failure_rate < 0.05
    assert SwarmBackend(Client(), selector=None).reputation_figures("swarm/any") is not None

    class Bare:
        async def complete(self, prompt: str, **kw: Any) -> Any:
            raise AssertionError("not called")

    assert SwarmBackend(Bare()).reputation_figures("swarm/any") is None
