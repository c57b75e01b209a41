"""Each strategy's choice, score, reason and fallback order (pure: no router, no I/O)."""

from __future__ import annotations

import pytest

from router.strategy import (
    Adaptive,
    CandidateStats,
    CostBased,
    Hybrid,
    LatencyBased,
    Optimization,
    PriorityOrder,
    RoundRobin,
    RoutingDecision,
    strategy_from_name,
)


def cands() -> list[CandidateStats]:
    return [
        CandidateStats("pricey-fast", cost=0.030, latency_ms=80, error_rate=0.00),
        CandidateStats("cheap-slow", cost=0.001, latency_ms=2500, error_rate=0.01),
        CandidateStats("mid", cost=0.008, latency_ms=400, error_rate=0.02),
        CandidateStats("flaky-fast", cost=0.004, latency_ms=60, error_rate=0.60),
    ]


def names(d: RoutingDecision) -> list[str]:
    return [c.name for c in d.candidates]


def test_cost_based_picks_cheapest_and_orders_by_cost() -> None:
    d = CostBased().choose("m", cands())
    assert d.backend == "cheap-slow"
    assert names(d) == ["cheap-slow", "flaky-fast", "mid", "pricey-fast"]
    assert d.fallback_chain == ["flaky-fast", "mid", "pricey-fast"]
    assert "lowest cost" in d.reason and "flaky-fast" in d.reason
    assert d.score == pytest.approx(1 / (1 + 0.001 / 0.01))


def test_latency_based_picks_fastest() -> None:
    d = LatencyBased().choose("m", cands())
    assert d.backend == "flaky-fast"
    assert names(d) == ["flaky-fast", "pricey-fast", "mid", "cheap-slow"]
    assert "~60 ms" in d.reason


def test_ties_keep_candidate_order() -> None:
    same = [
        CandidateStats("a", cost=1.0),
        CandidateStats("b", cost=1.0),
        CandidateStats("c", cost=1.0),
    ]
    assert CostBased().choose("m", same).backend == "a"
    assert names(CostBased().choose("m", same)) == ["a", "b", "c"]
    assert Hybrid().choose("m", same).backend == "a"
    assert Adaptive().choose("m", same).backend == "a"


def test_hybrid_weights_change_the_choice() -> None:
    cost_heavy = Hybrid(cost_weight=0.9, latency_weight=0.05, reliability_weight=0.05)
    latency_heavy = Hybrid(cost_weight=0.05, latency_weight=0.9, reliability_weight=0.05)
    reliability_heavy = Hybrid(cost_weight=0.0, latency_weight=0.1, reliability_weight=0.9)
    assert cost_heavy.choose("m", cands()).backend == "cheap-slow"
    assert latency_heavy.choose("m", cands()).backend == "flaky-fast"
    assert reliability_heavy.choose("m", cands()).backend == "pricey-fast"


def test_hybrid_score_is_the_weighted_sum() -> None:
    h = Hybrid(cost_weight=2, latency_weight=1, reliability_weight=1)  # rescaled to 0.5/0.25/0.25
    c = [CandidateStats("x", cost=0.01, latency_ms=1000, error_rate=0.2)]
    d = h.choose("m", c)
    assert d.score == pytest.approx(0.5 * 0.5 + 0.25 * 0.5 + 0.25 * 0.8)
    assert "best hybrid score" in d.reason and "reliability 0.80" in d.reason
    assert h.weights == pytest.approx((0.5, 0.25, 0.25))


def test_hybrid_rejects_bad_weights() -> None:
    with pytest.raises(ValueError):
        Hybrid(cost_weight=-1)
    with pytest.raises(ValueError):
        Hybrid(0, 0, 0)


def test_round_robin_rotates_per_model() -> None:
    rr = RoundRobin()
    pool = cands()[:3]
    firsts = [rr.choose("m", pool).backend for _ in range(4)]
    assert firsts == ["pricey-fast", "cheap-slow", "mid", "pricey-fast"]
    assert rr.choose("other", pool).backend == "pricey-fast"  # its own rotation
    d = rr.choose("m", pool)  # 5th turn for "m": position 2
    assert names(d) == ["cheap-slow", "mid", "pricey-fast"]
    assert "position 2 of 3" in d.reason


@pytest.mark.parametrize(
    ("optimize", "expected"),
    [
        (Optimization.LATENCY, "pricey-fast"),  # flaky-fast is quicker but fails 60%
        (Optimization.COST, "cheap-slow"),
        (Optimization.RELIABILITY, "pricey-fast"),
    ],
)
def test_adaptive_optimizations(optimize: Optimization, expected: str) -> None:
    d = Adaptive(optimize).choose("m", cands())
    assert d.backend == expected
    assert d.reason.startswith(f"adaptive ({optimize.value})")
    assert 0.0 <= d.score <= 1.0


def test_adaptive_score_formula() -> None:
    c = [CandidateStats("x", cost=0.0, latency_ms=100.0, error_rate=0.5)]
    assert Adaptive("latency").choose("m", c).score == pytest.approx(0.7 * 0.5 + 0.3 * 0.5)
    assert Adaptive("reliability").choose("m", c).score == pytest.approx(0.3 * 0.5 + 0.7 * 0.5)
    assert Adaptive("cost").choose("m", c).score == pytest.approx(0.6 * 1.0 + 0.4 * 0.5)


def test_adaptive_reliability_prefers_the_stable_backend() -> None:
    stable = CandidateStats("stable", latency_ms=50, error_rate=0.0)
    flaky = CandidateStats("flaky", latency_ms=40, error_rate=0.2)
    assert Adaptive("reliability").choose("m", [flaky, stable]).backend == "stable"
    assert Adaptive("latency").choose("m", [flaky, stable]).backend == "stable"
    assert (
        Adaptive("latency").choose("m", [flaky, CandidateStats("s", latency_ms=400)]).backend
        == "flaky"
    )


def test_priority_order_keeps_the_given_order() -> None:
    d = PriorityOrder().choose("m", cands())
    assert names(d) == [c.name for c in cands()]
    assert d.score == 1.0


def test_choice_stays_first_even_if_figures_move_before_the_chain_is_read() -> None:
    pool = cands()
    d = LatencyBased().choose("m", pool)
    assert d.backend == "flaky-fast"
    pool[3].latency_ms = 10_000  # learned after the first attempt
    assert names(d)[0] == "flaky-fast"
    assert sorted(names(d)) == sorted(c.name for c in pool)


def test_strategy_from_name() -> None:
    assert isinstance(strategy_from_name("cost"), CostBased)
    assert isinstance(strategy_from_name("round-robin"), RoundRobin)
    assert strategy_from_name("adaptive", optimize="cost").optimize is Optimization.COST
    assert (
        strategy_from_name("hybrid", cost_weight=1, latency_weight=0, reliability_weight=0).weights[
            0
        ]
        == 1
    )
    with pytest.raises(ValueError, match="unknown strategy"):
        strategy_from_name("fastest")
    with pytest.raises(ValueError):
        CostBased().choose("m", [])
