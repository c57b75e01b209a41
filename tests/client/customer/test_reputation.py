"""The reputation ledger: what each outcome does to a record, decay, persistence, reset."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.customer.reputation import (
    Observation,
    ProviderRecord,
    ReputationLedger,
    observe,
    unmatched_of,
)
from tests.support.announcements import FakeClock

DAY = 86400.0


def ledger(clock: FakeClock, path: str | Path = ":memory:", **kw: object) -> ReputationLedger:
    return ReputationLedger(path, customer="me", clock=clock, **kw)  # type: ignore[arg-type]


def test_newcomer_scores_half_and_agreement_raises_it() -> None:
    clock = FakeClock(0)
    led = ledger(clock)
    assert led.score("p") == 0.5 and led.get("p") is None
    before = 0.5
    for _ in range(5):
        led.record([Observation("p", "agreed", 800.0, 2000)])
        assert led.score("p") > before
        before = led.score("p")
    rec = led.get("p")
    assert rec is not None and rec.agreed == 5 and rec.results == 5 and rec.jobs == 5
    assert rec.agreement_rate == 1.0 and rec.latency_ms == pytest.approx(800.0)
    assert rec.price_msats == pytest.approx(2000.0)


@pytest.mark.parametrize("bad", ["dissented", "timeout", "error"])
def test_lies_timeouts_and_errors_lower_the_score(bad: str) -> None:
    led = ledger(FakeClock(0))
    led.record([Observation("p", "agreed")] * 3)
    good = led.score("p")
    led.record([Observation("p", bad)])  # type: ignore[arg-type]
    assert led.score("p") < good


def test_a_lie_costs_more_than_a_timeout_and_a_timeout_more_than_an_error() -> None:
    led = ledger(FakeClock(0))
    for p, kind in (("liar", "dissented"), ("slow", "timeout"), ("flaky", "error")):
        led.record([Observation(p, "agreed")] * 4)
        led.record([Observation(p, kind)])  # type: ignore[arg-type]
    assert led.score("liar") < led.score("slow") < led.score("flaky")


def test_neutral_outcomes_do_not_move_the_score_but_slow_latency_is_learned() -> None:
    led = ledger(FakeClock(0))
    led.record([Observation("p", "agreed", 100.0)])
    s = led.score("p")
    led.record([Observation("p", "beaten", 5000.0)])  # quorum done before it answered
    led.record([Observation("p", "answered", 300.0)])  # no quorum to judge it by
    rec = led.get("p")
    assert rec is not None and led.score("p") == s and rec.jobs == 3
    assert rec.latency_ms is not None and rec.latency_ms > 100.0  # pulled up by the lower bound


def test_old_behaviour_decays() -> None:
    clock = FakeClock(0)
    led = ledger(clock, half_life_s=7 * DAY)
    led.record([Observation("p", "dissented")] * 4)
    led.record([Observation("q", "agreed")] * 4)
    low, high = led.score("p"), led.score("q")
    clock.advance(7 * DAY)
    rec = led.get("p")
    assert rec is not None and rec.dissented == pytest.approx(2.0)  # one half-life
    assert rec.jobs == 4  # the plain count does not decay
    clock.advance(60 * DAY)
    # Both drift back towards the newcomer's 0.5.
    assert low < led.score("p") < 0.5 < led.score("q") < high


def test_persists_per_customer_and_reset(tmp_path: Path) -> None:
    path = tmp_path / "rep.sqlite"
    clock = FakeClock(1000)
    with ledger(clock, path) as led:
        led.record([Observation("p", "agreed", 500.0, 1000, paid_msats=1000)])
        led.record([Observation("q", "timeout", 30_000.0)])
    other = ReputationLedger(path, customer="someone else", clock=clock)
    assert len(other) == 0 and other.customers() == ["me"]
    other.record([Observation("p", "dissented")])
    other.close()
    with ledger(clock, path) as led:
        rec = led.get("p")
        assert rec is not None and rec.agreed == 1 and rec.dissented == 0
        assert rec.paid_msats == 1000 and rec.first_seen == 1000 and rec.last_seen == 1000
        assert [r.provider for r in led.records()] == ["p", "q"]  # best first
        assert led.reset("q") == 1 and "q" not in led
    with ledger(clock, path) as led:
        assert "q" not in led and "p" in led
        assert led.reset() == 1 and len(led) == 0
    with ReputationLedger(path, customer="someone else", clock=clock) as o:
        assert o.get("p") is not None  # another customer's records are untouched


def test_observe_classifies_a_jobs_outcome() -> None:
    obs = observe(
        asked=["a", "b", "c", "d", "e"],
        reached=True,
        timed_out=False,
        agreeing=["a", "b"],
        dissenting=["c"],
        answered_ms={"a": 100.0, "b": 120.0, "c": 50.0},
        errors=["d"],
        elapsed_ms=120.0,
        prices={"a": 1000},
        paid={"a": 1000},
    )
    kinds = {o.provider: o.kind for o in obs}
    assert kinds == {"a": "agreed", "b": "agreed", "c": "dissented", "d": "error", "e": "beaten"}
    assert obs[0] == Observation("a", "agreed", 100.0, 1000, 1000)
    failed = observe(
        asked=["a", "b"],
        reached=False,
        timed_out=True,
        agreeing=[],
        dissenting=[],
        answered_ms={"a": 100.0},
        errors=[],
        elapsed_ms=30_000.0,
    )
    assert {o.provider: o.kind for o in failed} == {"a": "answered", "b": "timeout"}


def test_record_is_pure_arithmetic() -> None:
    r = ProviderRecord("p")
    r2 = r.updated(Observation("p", "agreed", 100.0), now=10, half_life_s=DAY)
    assert r.agreed == 0 and r2.agreed == 1 and r2.first_seen == 10 and r2.decayed_at == 10


def test_unmatched_answers_count_a_little_against_their_authors() -> None:
    # No quorum: three different answers (at most one is right) and one lonely pair.
    obs = observe(
        asked=["a", "b", "c"],
        reached=False,
        timed_out=False,
        agreeing=[],
        dissenting=[],
        answered_ms={"a": 1.0, "b": 2.0, "c": 3.0},
        errors=[],
        elapsed_ms=3.0,
        unmatched=unmatched_of([("a",), ("b",), ("c",)]),
    )
    assert {o.kind for o in obs} == {"unmatched"}
    assert unmatched_of([("a", "b"), ("c",)]) == ["c"]
    assert unmatched_of([("a",)]) == []  # a single answer contradicts nobody
    led = ledger(FakeClock(0))
    led.record([Observation("p", "agreed")] * 2)
    led.record([Observation("q", "agreed")] * 2)
    led.record([Observation("p", "unmatched")])
    led.record([Observation("q", "dissented")])
    assert led.score("q") < led.score("p") < 0.75
