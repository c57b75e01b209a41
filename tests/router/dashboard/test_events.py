"""Events check their fields where they are built: a wrong one fails at its source."""

from __future__ import annotations

from typing import Any

import pytest

from router.dashboard.events import (
    BreakerState,
    DashboardEventError,
    JobAsked,
    KeySpend,
    Payment,
    ProviderEarnings,
    ProviderStateChanged,
    QuorumOutcome,
    ReputationRow,
    ReputationSnapshot,
    RequestServed,
    SpendSnapshot,
    TrafficTotals,
)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: JobAsked("", "m", 2), "job_id"),
        (lambda: JobAsked("j", "m", -1), "quorum"),
        (lambda: JobAsked("j", "m", 2, ["a"]), "providers"),  # a list, not a tuple
        (lambda: ProviderStateChanged("j", "p", "won"), "state must be one of"),
        (lambda: QuorumOutcome("j", 1), "reached"),
        (lambda: Payment("sideways", 1), "direction"),
        (lambda: Payment("in", 1.5), "msats"),
        (lambda: Payment("out", -3), "msats"),
        (lambda: RequestServed("b", "m", -0.1), "latency_s"),
        (lambda: RequestServed("b", "m", 0.1, 99), "status"),
        (lambda: BreakerState("b", "ajar"), "state must be one of"),
        (lambda: KeySpend("key:a", 10, budget_msats=-1), "budget_msats"),
        (lambda: SpendSnapshot(("key:a",)), "KeySpend"),
        (lambda: ReputationRow("p", True, 1), "score"),
        (lambda: ReputationSnapshot([]), "ReputationRow"),
        (lambda: ProviderEarnings(1, 2, -3), "paid_msats"),
        (lambda: TrafficTotals((("b", "m", 1),), (), (), 0), "served rows"),
        (lambda: JobAsked("j" * 201, "m", 1), "at most 200"),
        (lambda: KeySpend("key:a", 10, key_name=""), "key_name"),
    ],
)
def test_bad_fields_raise_a_typed_error(build: Any, message: str) -> None:
    with pytest.raises(DashboardEventError, match=message):
        build()


def test_good_events_build() -> None:
    assert JobAsked("j", "", 0).providers == ()
    assert Payment("in", 0).msats == 0
    assert RequestServed("b", "m", 0.0, 503, "timeout").error == "timeout"
    assert TrafficTotals((("b", "m", 1, 0),), (("x", 2),), (1, 2), 3).requests == 3
