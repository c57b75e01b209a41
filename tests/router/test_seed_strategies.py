"""The seed behaviours (issue 20): the TypeScript seed's ``round_robin`` (least recently used)
and ``cost_priority_round_robin``; the Rust seed's ``record_request`` (learning from outside
observations), ``stats()`` and predicted latency and cost on a decision; the swarm simulator's
simulated latency kept by the router."""

from __future__ import annotations

import pytest

from router import LmRouter, ManualClock
from router.backends import MockBackend
from router.backends.swarm_sim import LatencyDist, SwarmSimConfig, SwarmSimulator
from router.errors import BackendError, InvalidRequest
from router.strategy import (
    CandidateStats,
    CostPriorityRoundRobin,
    RoundRobin,
    RoutingDecision,
    request_cost_usd,
    strategy_from_name,
)


def names(d: RoutingDecision) -> list[str]:
    return [c.name for c in d.candidates]


def fatal() -> BackendError:
    return BackendError("down", retryable=False)


# --- round_robin: least recently used -------------------------------------------------------


def test_round_robin_gives_a_returning_backend_the_next_turn() -> None:
    a, b, c = (CandidateStats(n) for n in "abc")
    rr = RoundRobin()
    assert [rr.choose("m", [a, b, c]).backend for _ in range(4)] == ["a", "b", "c", "a"]
    # b's breaker opens: the other two alternate
    assert [rr.choose("m", [a, c]).backend for _ in range(2)] == ["c", "a"]
    # b is back and has waited longest (rotating by position would pick a: turn 6 % 3 == 0)
    d = rr.choose("m", [a, b, c])
    assert d.backend == "b"
    assert names(d) == ["b", "c", "a"]  # the fallbacks are least recently used first too
    assert "least recently used" in d.reason


def test_round_robin_sends_the_next_request_to_a_new_backend() -> None:
    a, b, c = (CandidateStats(n) for n in "abc")
    rr = RoundRobin()
    assert [rr.choose("m", [a, b]).backend for _ in range(3)] == ["a", "b", "a"]
    assert rr.choose("m", [a, b, c]).backend == "c"  # never chosen: oldest of all
    assert rr.choose("m", [a, b, c]).backend == "b"


def test_round_robin_ties_keep_priority_order_and_clocks_are_per_model() -> None:
    pool = [CandidateStats(n) for n in "xyz"]
    rr = RoundRobin()
    assert rr.choose("m1", pool).backend == "x"
    assert rr.choose("m2", pool).backend == "x"  # its own clock
    shared = RoundRobin(per_model=False)  # the seed's one lastUsed per provider
    assert [shared.choose(m, pool).backend for m in ("m1", "m2", "m3", "m1")] == [
        "x",
        "y",
        "z",
        "x",
    ]


def test_seed_names_reach_the_seed_strategies() -> None:
    assert isinstance(strategy_from_name("round_robin"), RoundRobin)
    assert isinstance(strategy_from_name("least-recently-used"), RoundRobin)
    cp = strategy_from_name("cost_priority_round_robin", tolerance=0.1, per_model=False)
    assert isinstance(cp, CostPriorityRoundRobin)
    assert cp.tolerance == 0.1 and not cp.per_model
    with pytest.raises(ValueError):
        CostPriorityRoundRobin(tolerance=-1)
    # the gateway's ``strategy:`` setting goes through strategy_from_name
    from router.gateway.config import StrategyConfig

    built = StrategyConfig.model_validate({"name": "round_robin", "per_model": False}).build()
    assert isinstance(built, RoundRobin) and not built.per_model
    cfg = StrategyConfig(name="cost_priority_round_robin")
    assert isinstance(cfg.build(), CostPriorityRoundRobin)


async def test_round_robin_router_spreads_calls_and_skips_an_open_breaker() -> None:
    clock = ManualClock(100.0)
    backends = [MockBackend(n).with_model("m") for n in ("a", "b", "c")]
    backends[1].with_failure(1.0, error=fatal)
    builder = LmRouter.builder().strategy("round_robin").clock(clock)
    builder.circuit_breaker(failure_threshold=1, window_s=60, reset_timeout_s=30)
    for b in backends:
        builder.add_backend(b)
    router = builder.build()
    served = [(await router.complete("m", "x", 5)).backend for _ in range(6)]
    # b fails once (its breaker opens, c answers that one), then a and c share the load
    assert backends[1].calls == 1
    assert served.count("a") == 3 and served.count("c") == 3
    clock.advance(30)
    backends[1].with_failure(0.0)
    # half-open b is the least recently chosen: the next request is its probe
    assert (await router.complete("m", "x", 5)).backend == "b"


# --- cost_priority_round_robin ----------------------------------------------------------------


def test_cost_priority_round_robin_rotates_among_the_cheapest_only() -> None:
    pricey = CandidateStats("pricey", cost=0.01)
    c1, c2, c3 = (CandidateStats(n, cost=0.002) for n in ("c1", "c2", "c3"))
    mid = CandidateStats("mid", cost=0.005)
    pool = [pricey, c1, mid, c2, c3]
    s = CostPriorityRoundRobin()
    assert [s.choose("m", pool).backend for _ in range(4)] == ["c1", "c2", "c3", "c1"]
    d = s.choose("m", pool)
    assert d.backend == "c2"
    # the other cheap ones (least recently used first), then by cost
    assert names(d) == ["c2", "c3", "c1", "mid", "pricey"]
    assert d.score == pytest.approx(1 / (1 + 0.002 / 0.01))
    assert "least recently used of 3 equally cheap" in d.reason
    # a cheaper backend takes every request
    cheapest = CandidateStats("cheapest", cost=0.001)
    assert {s.choose("m", [*pool, cheapest]).backend for _ in range(3)} == {"cheapest"}


def test_cost_priority_round_robin_tolerance_widens_equally_cheap() -> None:
    a = CandidateStats("a", cost=0.0100)
    b = CandidateStats("b", cost=0.0105)
    exact = CostPriorityRoundRobin()
    assert [exact.choose("m", [a, b]).backend for _ in range(2)] == ["a", "a"]
    loose = CostPriorityRoundRobin(tolerance=0.1)  # within 10% of the cheapest
    assert [loose.choose("m", [a, b]).backend for _ in range(3)] == ["a", "b", "a"]


async def test_cost_priority_round_robin_through_the_router() -> None:
    builder = LmRouter.builder().strategy("cost_priority_round_robin")
    builder.add_backend(MockBackend("dear").with_model("m"), cost_per_1k_tokens_usd=0.03)
    builder.add_backend(MockBackend("cheap1").with_model("m"), cost_per_1k_tokens_usd=0.001)
    builder.add_backend(MockBackend("cheap2").with_model("m"), cost_per_1k_tokens_usd=0.001)
    router = builder.build()
    served = [(await router.complete("m", "x", 5)).backend for _ in range(4)]
    assert served == ["cheap1", "cheap2", "cheap1", "cheap2"]


# --- record_request: learning from outside observations ------------------------------------------


def two_latency_backends(strategy: str = "latency", **kw: object) -> LmRouter:
    return (
        LmRouter.builder()
        .add_backend(MockBackend("a").with_model("m"), latency_hint_ms=100)
        .add_backend(MockBackend("b").with_model("m"), latency_hint_ms=100)
        .strategy(strategy, **kw)
        .ewma_alpha(0.5)
        .build()
    )


def test_record_request_teaches_latency_and_errors() -> None:
    router = two_latency_backends()
    assert router.route("m").backend == "a"  # equal hints: priority order
    router.record_request("b", latency_ms=20.0, success=True, tokens=50)
    assert router.route("m").backend == "b"
    assert router.metrics()["b"].ewma_latency_ms == 20.0  # the first figure replaces the hint
    router.record_request("b", latency_ms=60.0)
    assert router.metrics()["b"].ewma_latency_ms == pytest.approx(40.0)  # alpha 0.5

    adaptive = two_latency_backends("adaptive", optimize="reliability")
    for _ in range(3):
        adaptive.record_request("a", latency_ms=10.0, success=False)
    assert adaptive.metrics()["a"].error_rate == pytest.approx(1 - 0.5**3)
    assert adaptive.metrics()["a"].ewma_latency_ms == 100.0  # failures teach no latency
    assert adaptive.route("m").backend == "b"
    # outside observations are not this router's requests and do not open its breaker
    st = adaptive.stats().backends["a"]
    assert (st.requests, st.failures, st.observations) == (0, 0, 3)
    assert st.breaker_state == "closed"


def test_record_request_learns_cost_only_where_no_price_is_configured() -> None:
    router = (
        LmRouter.builder()
        .add_backend(MockBackend("free").with_model("m"))
        .add_backend(MockBackend("priced").with_model("m"), cost_per_1k_tokens_usd=0.004)
        .strategy("cost")
        .build()
    )
    assert router.route("m").backend == "free"
    router.record_request("free", latency_ms=5.0, tokens=1000, cost_usd=0.01)
    router.record_request("priced", latency_ms=5.0, tokens=1000, cost_usd=0.5)
    m = router.metrics()
    assert m["free"].cost_per_1k_tokens_usd == pytest.approx(0.01)
    assert m["priced"].cost_per_1k_tokens_usd == 0.004  # configured prices stay
    assert router.route("m").backend == "priced"


def test_record_request_refuses_bad_input() -> None:
    router = two_latency_backends()
    with pytest.raises(KeyError):
        router.record_request("nope", latency_ms=1.0)
    for bad in ({"latency_ms": -1.0}, {"latency_ms": float("nan")}, {"tokens": -5}):
        with pytest.raises(InvalidRequest):
            router.record_request("a", **bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        router.record_request("a", cost_usd=float("inf"))
    assert router.stats().total_observations == 0


# --- stats() --------------------------------------------------------------------------------


async def test_stats_snapshot_per_backend_and_totals() -> None:
    clock = ManualClock(10.0)
    ok = MockBackend("ok").with_model("m")
    bad = MockBackend("bad").with_model("m").with_failure(1.0, error=fatal)
    router = (
        LmRouter.builder()
        .add_backend(bad, priority=0, latency_hint_ms=300)
        .add_backend(ok, priority=1, latency_hint_ms=300)
        .strategy("priority")
        .circuit_breaker(failure_threshold=2, window_s=60, reset_timeout_s=30)
        .clock(clock)
        .build()
    )
    for _ in range(3):
        await router.complete("m", "x", 5)
    router.record_request("ok", latency_ms=12.0)
    s = router.stats()
    assert s.strategy == "priority" and s.backend_count == s.provider_count == 2
    b, o = s.backends["bad"], s.backends["ok"]
    assert (b.requests, b.successes, b.failures, b.in_flight) == (2, 0, 2, 0)
    assert b.breaker_state == "open" and b.error_rate > 0 and not b.latency_learned
    assert b.ewma_latency_ms == 300  # still the hint
    assert (o.requests, o.successes, o.failures, o.observations) == (3, 3, 0, 1)
    assert o.latency_learned and o.breaker_state == "closed" and o.enabled
    assert (s.total_requests, s.total_successes, s.total_failures) == (5, 3, 2)
    assert s.total_observations == 1 and s.in_flight == 0
    assert s.average_latency_ms == o.ewma_latency_ms  # only backends with a learned latency
    router.reset_usage()
    assert router.stats().total_requests == 0 and router.stats().total_observations == 0


# --- predicted latency and cost on a decision ------------------------------------------------


def test_decision_predicts_latency_and_cost_from_the_chosen_backend() -> None:
    router = (
        LmRouter.builder()
        .add_backend(
            MockBackend("split").with_model("m"),
            cost_per_1k_input_usd=1.0,
            cost_per_1k_output_usd=3.0,
            latency_hint_ms=40,
        )
        .add_backend(
            MockBackend("flat").with_model("m"), cost_per_1k_tokens_usd=0.5, latency_hint_ms=90
        )
        .strategy("latency")
        .build()
    )
    d = router.route("m")
    assert d.backend == "split" and d.predicted_latency_ms == 40
    assert d.predicted_cost_usd is None  # the request's size is unknown
    d = router.route("m", "x" * 400, 100)  # ~100 prompt tokens
    assert d.predicted_cost_usd == pytest.approx((100 * 1.0 + 100 * 3.0) / 1000)
    d = router.route("m", max_tokens=10)
    assert d.predicted_cost_usd == pytest.approx(10 * 3.0 / 1000)
    router.record_request("split", latency_ms=500.0)
    d = router.route("m", [{"role": "user", "content": "x" * 40}])  # ~10 tokens, 256 out
    assert d.backend == "flat" and d.predicted_latency_ms == 90
    assert d.predicted_cost_usd == pytest.approx((10 + 256) * 0.5 / 1000)
    with pytest.raises(InvalidRequest):
        router.route("m", max_tokens=0)


async def test_predicted_latency_is_taken_when_the_decision_is_made() -> None:
    router = (
        LmRouter.builder()
        .add_backend(MockBackend("only").with_model("m"), latency_hint_ms=250)
        .build()
    )
    d = router.route("m", "hi", 5)  # the one-candidate path
    assert d.predicted_latency_ms == 250 and d.predicted_cost_usd == 0.0
    await router.complete("m", "hi", 5)
    assert router.metrics()["only"].ewma_latency_ms < 250  # learned from the call...
    assert d.predicted_latency_ms == 250  # ...the earlier prediction stays what it was
    assert router.route("m").predicted_latency_ms == router.metrics()["only"].ewma_latency_ms


def test_explicit_route_predicts_for_the_routed_backend() -> None:
    router = (
        LmRouter.builder()
        .add_backend(MockBackend("fast").with_model("m"), latency_hint_ms=10)
        .add_backend(MockBackend("pinned").with_model("m"), latency_hint_ms=700)
        .route_model("m", "pinned")
        .strategy("latency")
        .build()
    )
    d = router.route("m", "hi", 8)
    assert d.backend == "pinned" and d.predicted_latency_ms == 700


def test_request_cost_usd_prices() -> None:
    c = CandidateStats("c", cost=2.0)
    assert request_cost_usd(c, 300, 200) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        request_cost_usd(c, -1, 10)


# --- the swarm simulator's latency ----------------------------------------------------------------


async def test_router_keeps_and_learns_the_simulated_swarm_latency() -> None:
    cfg = SwarmSimConfig(
        num_providers=3,
        quorum_size=2,
        latency=LatencyDist.Normal(mean_ms=800, std_ms=200),
        seed=11,
    )
    sim = SwarmSimulator(cfg)  # answers at once: wall time is a fraction of a millisecond
    router = LmRouter.builder().add_backend(sim).ewma_alpha(0.3).build()
    # the same figures reported from outside must teach a twin router the same thing
    twin = LmRouter.builder().add_backend(SwarmSimulator(cfg)).ewma_alpha(0.3).build()
    seen = []
    for _ in range(5):
        resp = await router.complete("swarm/any", "hi", 8)
        seen.append(resp.latency_ms)
        twin.record_request("swarm-sim", latency_ms=resp.latency_ms, success=True, tokens=3)
    assert seen == [j.latency_ms for j in sim.jobs]  # the simulated figure, not wall time
    assert min(seen) > 100 and len(set(seen)) > 1
    ewma = seen[0]
    for x in seen[1:]:
        ewma += 0.3 * (x - ewma)
    m = router.metrics()["swarm-sim"]
    assert m.ewma_latency_ms == pytest.approx(ewma)
    assert m.avg_latency_ms == pytest.approx(sum(seen) / len(seen))
    assert twin.metrics()["swarm-sim"].ewma_latency_ms == pytest.approx(ewma)


async def test_other_backends_still_report_wall_time() -> None:
    mock = MockBackend("m1").with_model("m")
    router = LmRouter.builder().add_backend(mock, latency_hint_ms=5000).build()
    resp = await router.complete("m", "x", 5)
    # a MockBackend answers in well under a second; its own latency_ms (0) is not trusted
    assert 0 < resp.latency_ms < 5000
    assert router.metrics()["m1"].ewma_latency_ms == resp.latency_ms


def test_round_robin_keeps_a_bounded_number_of_model_clocks() -> None:
    from router.strategy import _MAX_MODELS

    pool = [CandidateStats("a"), CandidateStats("b")]
    rr = RoundRobin()
    rr.choose("first-model", pool)
    for i in range(_MAX_MODELS + 10):  # model names come from callers
        rr.choose(f"made-up-{i}", pool)
    assert len(rr._used) == _MAX_MODELS
    assert "first-model" not in rr._used  # the oldest clocks went first
    assert rr.choose("first-model", pool).backend == "a"  # a forgotten model starts over
