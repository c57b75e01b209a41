"""SwarmSimulator: its statistics over many seeded runs match the configuration, and it works as
a router backend (sats, QuorumNotReached, failover)."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from pydantic import ValidationError

from router import LmRouter
from router.backends import MockBackend
from router.backends.swarm_sim import (
    LatencyDist,
    SwarmSimConfig,
    SwarmSimulator,
    simulate_job,
    sweep,
)
from router.errors import InvalidRequest, QuorumNotReached
from router.request import SwarmTerms

JOBS = 2000


def binomial_at_least(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_observed_failure_rate_matches_the_configured_one(seed: int) -> None:
    cfg = SwarmSimConfig(num_providers=1, quorum_size=1, failure_rate=0.2, seed=seed)
    stats = SwarmSimulator(cfg).run(JOBS)
    assert stats.failure_rate == pytest.approx(0.2, abs=0.025)
    assert stats.exhausted == JOBS - stats.successes and stats.timeouts == 0


def test_observed_timeout_rate_and_waiting_time() -> None:
    cfg = SwarmSimConfig(num_providers=1, quorum_size=1, timeout_rate=0.1, timeout_ms=8000, seed=5)
    sim = SwarmSimulator(cfg)
    jobs = [sim.simulate() for _ in range(JOBS)]
    timed_out = [j for j in jobs if not j.reached]
    assert len(timed_out) / JOBS == pytest.approx(0.1, abs=0.02)
    assert all(j.reason == "timeout" and j.latency_ms == 8000 for j in timed_out)


@pytest.mark.parametrize(("k", "n", "fail"), [(3, 5, 0.3), (4, 7, 0.4)])
def test_k_of_n_success_rate_matches_the_binomial(k: int, n: int, fail: float) -> None:
    cfg = SwarmSimConfig(num_providers=n, quorum_size=k, failure_rate=fail, seed=11)
    stats = SwarmSimulator(cfg).run(JOBS)
    assert stats.success_rate == pytest.approx(binomial_at_least(k, n, 1 - fail), abs=0.025)


def test_late_answers_count_as_timeouts() -> None:
    cfg = SwarmSimConfig(
        num_providers=1,
        quorum_size=1,
        latency=LatencyDist.Normal(mean_ms=1000, std_ms=500),
        timeout_ms=1000,
        seed=3,
    )
    stats = SwarmSimulator(cfg).run(JOBS)
    assert stats.success_rate == pytest.approx(0.5, abs=0.03)  # half the draws exceed the mean
    assert stats.latency_p99_ms <= 1000


def test_quorum_latency_is_the_kth_answer() -> None:
    rng = random.Random(0)
    cfg = SwarmSimConfig(num_providers=4, quorum_size=3, latency=LatencyDist.Constant(250))
    job = simulate_job(cfg, rng, "hi")
    assert job.reached and job.latency_ms == 250 and job.text == "Response: hi"
    assert len(job.agreeing) == 3 and job.cost_sats == 30


def test_variance_in_results_prevents_agreement() -> None:
    base = {"num_providers": 3, "variance_in_results": True, "disagreement_rate": 1.0, "seed": 2}
    none_agree = SwarmSimulator(SwarmSimConfig(quorum_size=2, **base)).run(200)
    assert none_agree.success_rate == 0.0 and none_agree.exhausted == 200
    assert SwarmSimulator(SwarmSimConfig(quorum_size=1, **base)).run(200).success_rate == 1.0
    some = SwarmSimulator(
        SwarmSimConfig(
            num_providers=5, quorum_size=3, variance_in_results=True, disagreement_rate=0.3, seed=4
        )
    ).run(JOBS)
    assert some.success_rate == pytest.approx(binomial_at_least(3, 5, 0.7), abs=0.03)


def test_dissenters_are_reported() -> None:
    cfg = SwarmSimConfig(
        num_providers=5, quorum_size=3, variance_in_results=True, disagreement_rate=0.4, seed=9
    )
    sim = SwarmSimulator(cfg)
    jobs = [sim.simulate("q") for _ in range(300)]
    assert any(j.reached and j.dissenting for j in jobs)
    for j in jobs:
        assert not set(j.agreeing) & set(j.dissenting)


def test_bid_below_price_means_providers_decline() -> None:
    cfg = SwarmSimConfig(
        num_providers=3,
        quorum_size=2,
        price_sats=[5, 10, 50],
        bid_sats=10,
        latency=LatencyDist.Constant(10),
    )
    job = simulate_job(cfg, random.Random(1), "x")
    assert job.outcomes == ("answered", "answered", "declined")
    assert job.reached and job.cost_sats == 15
    strict = cfg.model_copy(update={"quorum_size": 3})
    job = simulate_job(strict, random.Random(1), "x")
    assert not job.reached and job.reason == "exhausted" and job.latency_ms == 0.0


def test_same_seed_same_runs() -> None:
    cfg = SwarmSimConfig(
        failure_rate=0.3,
        variance_in_results=True,
        latency=LatencyDist.LongTail(median_ms=300, p99_ms=4000),
        seed=42,
    )
    one, two = SwarmSimulator(cfg), SwarmSimulator(cfg)
    first = [one.simulate() for _ in range(50)]
    assert first == [two.simulate() for _ in range(50)]
    assert SwarmSimulator(cfg).run(200) == SwarmSimulator(cfg).run(200)
    other = SwarmSimulator(cfg.model_copy(update={"seed": 43}))
    assert [other.simulate() for _ in range(50)] != first


def test_latency_distributions() -> None:
    rng = random.Random(7)
    assert LatencyDist.Constant(120).sample(rng) == 120
    normal = [LatencyDist.Normal(mean_ms=500, std_ms=100).sample(rng) for _ in range(20000)]
    assert statistics.fmean(normal) == pytest.approx(500, rel=0.02)
    assert statistics.pstdev(normal) == pytest.approx(100, rel=0.05)
    assert min(LatencyDist.Normal(mean_ms=10, std_ms=50).sample(rng) for _ in range(1000)) == 0.0
    tail = sorted(
        LatencyDist.LongTail(median_ms=400, p99_ms=5000).sample(rng) for _ in range(20000)
    )
    assert tail[len(tail) // 2] == pytest.approx(400, rel=0.05)
    assert tail[int(0.99 * len(tail))] == pytest.approx(5000, rel=0.12)
    with pytest.raises(ValueError):
        LatencyDist.LongTail(median_ms=500, p99_ms=100)


def test_sweep_answers_the_planning_question() -> None:
    base = SwarmSimConfig(num_providers=5, failure_rate=0.15, seed=1)
    rows = sweep(base, jobs=1500, quorum_size=[1, 3, 5])
    rates = {cfg.quorum_size: stats.success_rate for cfg, stats in rows}
    assert rates[1] > rates[3] > rates[5]
    costs = {cfg.quorum_size: stats.mean_cost_sats for cfg, stats in rows}
    assert costs == {1: 10, 3: 30, 5: 50}
    with pytest.raises(ValidationError):
        sweep(base, jobs=1, quorum_size=[6])


def test_config_validation() -> None:
    for bad in (
        {"quorum_size": 6, "num_providers": 5},
        {"failure_rate": 0.7, "timeout_rate": 0.5},
        {"price_sats": [1, 2]},
        {"comparator": "vibes"},
        {"failure_rate": 1.5},
    ):
        with pytest.raises(ValidationError):
            SwarmSimConfig(**bad)


async def test_simulator_as_a_router_backend_with_failover() -> None:
    sim = SwarmSimulator(
        SwarmSimConfig(
            num_providers=3, quorum_size=2, latency=LatencyDist.Constant(700), price_sats=21, seed=1
        )
    )
    router = LmRouter.builder().add_backend(sim).btc_usd(100_000).build()
    r = await router.complete("swarm/llama3", "What is 2+2?", 20)
    assert r.text == "Response: What is 2+2?" and r.backend == "swarm-sim"
    assert r.usage.cost_sats == 42 and r.usage.cost_usd == pytest.approx(0.042)
    assert r.swarm is not None and len(r.swarm.agreeing) == 2
    assert r.swarm.msats_paid == 42_000
    with pytest.raises(InvalidRequest, match="SwarmSimConfig"):  # not silently ignored
        await router.complete("swarm/llama3", "What is 2+2?", 20, swarm=SwarmTerms(quorum=3))
    rep = router.usage_report()
    assert rep.total_cost_sats == 42 and rep.by_model["swarm/llama3"].call_count == 1

    broken = SwarmSimulator(
        SwarmSimConfig(num_providers=2, quorum_size=2, failure_rate=1.0), name="broken"
    )
    with pytest.raises(QuorumNotReached) as err:
        await broken.complete("swarm-sim", "x", 5)
    assert err.value.received.reason == "exhausted"
    local = MockBackend("local").with_any_model()
    router = (
        LmRouter.builder()
        .add_backend(broken, priority=0)
        .add_backend(local, priority=1)
        .strategy("priority")
        .build()
    )
    assert (await router.complete("swarm/x", "x", 5)).backend == "local"
    assert router.metrics()["broken"].failures == 1
