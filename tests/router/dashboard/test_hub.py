"""The hub on its own: events in, bounded state and per-viewer changes out (no I/O, a manual
clock)."""

from __future__ import annotations

import pytest

from router.clock import ManualClock
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
from router.dashboard.hub import DashboardHub, TooManyViewers, percentile
from router.gateway.metrics import BUCKETS

A, B, C = "a" * 64, "b" * 64, "c" * 64


class Notes:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> None:
        self.n += 1


def hub(clock: ManualClock | None = None, **kw: object) -> DashboardHub:
    return DashboardHub(clock=clock or ManualClock(1000.0), **kw)  # type: ignore[arg-type]


def test_nobody_watching_nothing_is_kept() -> None:
    h = hub()
    assert h.live is False
    h.publish(JobAsked("j1", "m", 2, (A, B)))
    h.publish(Payment("out", 5000, "j1", A))
    snap = h.snapshot()
    assert snap["jobs"] == []
    assert snap["cards"]["msats_out"] == 0


def test_a_viewer_gets_a_snapshot_then_only_what_changed() -> None:
    h = hub()
    note = Notes()
    v = h.join(note)
    assert h.live
    first = h.take(v)
    assert [m["type"] for m in first] == ["snapshot"]
    assert h.take(v) == []
    h.publish(JobAsked("j1", "m1", 2, (A, B), "2+2?"))
    assert note.n > 0
    msgs = h.take(v)
    jobs = [m["job"] for m in msgs if m["type"] == "job"]
    assert len(jobs) == 1 and jobs[0]["id"] == "j1"
    assert [(p["key"], p["state"]) for p in jobs[0]["providers"]] == [(A, "asked"), (B, "asked")]
    assert {m["type"] for m in msgs} == {"job", "cards"}
    assert h.take(v) == []


def test_a_job_goes_from_asked_to_agreed_and_paid() -> None:
    clock = ManualClock(1000.0)
    h = hub(clock)
    v = h.join(Notes())
    h.take(v)
    h.publish(JobAsked("j1", "m1", 2, (A, B, C)))
    for p in (A, B, C):
        h.publish(ProviderStateChanged("j1", p, "processing"))
    h.publish(ProviderStateChanged("j1", A, "answered"))
    h.publish(ProviderStateChanged("j1", C, "answered"))
    clock.advance(0.4)
    h.publish(QuorumOutcome("j1", True, (A, C), (), "4", 0.0))
    h.publish(ProviderStateChanged("j1", A, "paid"))
    h.publish(Payment("out", 2000, "j1", A))
    job = h.job("j1")
    assert job is not None
    states = {p["key"]: p["state"] for p in job["providers"]}
    # B was still working when A and C agreed: not needed (a late answer changes nothing).
    assert states == {A: "paid", B: "not_needed", C: "agreed"}
    h.publish(ProviderStateChanged("j1", B, "answered"))
    late = h.job("j1")
    assert late is not None and late["providers"][1] == {
        "key": B,
        "state": "not_needed",
        "detail": "",
    }
    assert job["outcome"] == "reached" and job["text"] == "4" and job["agreeing"] == 2
    assert job["elapsed_ms"] == pytest.approx(400.0)
    assert job["paid_msats"] == 2000
    cards = h.snapshot()["cards"]
    assert cards["in_flight"] == 0 and cards["reached"] == 1 and cards["msats_out"] == 2000


def test_a_state_never_goes_back() -> None:
    h = hub()
    h.join(Notes())
    h.publish(ProviderStateChanged("j1", A, "answered"))
    h.publish(ProviderStateChanged("j1", A, "processing"))  # late feedback
    h.publish(QuorumOutcome("j1", True, (A,), (B,), "x"))
    h.publish(ProviderStateChanged("j1", A, "answered"))
    job = h.job("j1")
    assert job is not None
    assert {p["key"]: p["state"] for p in job["providers"]} == {A: "agreed", B: "dissented"}


def test_a_failed_quorum_times_out_the_silent_providers() -> None:
    h = hub()
    h.join(Notes())
    h.publish(JobAsked("j1", "m", 2, (A, B, C)))
    h.publish(ProviderStateChanged("j1", A, "answered"))
    h.publish(ProviderStateChanged("j1", B, "error", "model not found"))
    h.publish(QuorumOutcome("j1", False))
    job = h.job("j1")
    assert job is not None
    states = {p["key"]: (p["state"], p["detail"]) for p in job["providers"]}
    assert states == {
        A: ("answered", ""),
        B: ("error", "model not found"),
        C: ("timed_out", ""),
    }
    assert job["outcome"] == "failed"
    assert h.snapshot()["cards"]["failed"] == 1


def test_jobs_and_providers_are_capped_finished_jobs_go_first() -> None:
    h = hub(max_jobs=3, max_providers=2)
    v = h.join(Notes())
    h.take(v)
    h.publish(JobAsked("j1", "m", 1))
    h.publish(JobAsked("j2", "m", 1))
    h.publish(QuorumOutcome("j2", True, (A,), (), "x"))
    h.publish(JobAsked("j3", "m", 1))
    h.publish(JobAsked("j4", "m", 1, (A, B, C)))
    ids = [j["id"] for j in h.snapshot()["jobs"]]
    assert ids == ["j4", "j3", "j1"]  # newest first; the finished j2 made room
    msgs = h.take(v)
    assert {"type": "job_removed", "id": "j2"} in msgs
    job = h.job("j4")
    assert job is not None
    assert len(job["providers"]) == 2 and job["hidden_providers"] == 1
    for i in range(5, 40):
        h.publish(JobAsked(f"j{i}", "m", 1))
    assert len(h.snapshot()["jobs"]) == 3


def test_a_viewer_that_falls_behind_gets_one_snapshot() -> None:
    h = hub(max_jobs=4)
    v = h.join(Notes())
    h.take(v)
    for i in range(100):  # more changed keys than its backlog may hold
        h.publish(JobAsked(f"j{i}", "m", 1))
    msgs = h.take(v)
    assert [m["type"] for m in msgs] == ["snapshot"]
    assert len(msgs[0]["jobs"]) == 4


def test_viewers_are_capped() -> None:
    h = hub(max_viewers=2)
    v1 = h.join(Notes())
    h.join(Notes())
    with pytest.raises(TooManyViewers):
        h.join(Notes())
    h.leave(v1)
    h.join(Notes())


def test_after_the_last_viewer_the_hub_lingers_then_stops_counting() -> None:
    clock = ManualClock(1000.0)
    h = hub(clock, linger_s=30.0)
    v = h.join(Notes())
    h.publish(JobAsked("j1", "m", 2, (A,)))
    h.leave(v)
    assert h.live  # a reloading page finds its jobs as they are
    h.publish(ProviderStateChanged("j1", A, "answered"))
    clock.advance(31)
    h.tick()
    assert not h.live
    h.publish(QuorumOutcome("j1", True, (A,), (), "x"))  # nobody watches: dropped
    job = h.job("j1")
    assert job is not None and job["outcome"] is None
    v2 = h.join(Notes())  # jobs left in flight while nobody watched may be over: dropped
    assert h.take(v2)[0]["jobs"] == []


def test_time_buckets_become_points_with_money_and_percentiles() -> None:
    clock = ManualClock(1000.0)
    h = hub(clock, bucket_s=5.0)
    v = h.join(Notes())
    h.take(v)
    h.publish(Payment("in", 3000))
    h.publish(Payment("out", 1500))
    for ms in (10, 20, 30, 40, 1000):
        h.publish(RequestServed("b1", "m", ms / 1000))
    h.publish(RequestServed("b1", "m", 0.2, 502, "upstream_error"))
    clock.advance(5)
    h.tick()
    msgs = [m for m in h.take(v) if m["type"] == "points"]
    assert len(msgs) == 1
    (point,) = msgs[0]["points"]
    assert point["t"] == 1000.0
    assert point["sats_in"] == 3.0 and point["sats_out"] == 1.5
    assert point["requests"] == 6 and point["errors"] == 1
    assert point["req_p50"] is not None and 25.0 <= point["req_p50"] <= 50.0
    assert point["req_p99"] is not None and point["req_p99"] >= 500.0
    assert point["job_p50"] is None
    clock.advance(60)  # a gap nobody counted: an empty point breaks the lines
    h.tick()
    pts = h.snapshot()["points"]
    assert [p["t"] for p in pts] == [1000.0, 1005.0, 1010.0]
    assert pts[1]["requests"] == 0 and pts[2]["requests"] is None
    traffic = h.snapshot()["traffic"]
    assert traffic == [{"backend": "b1", "model": "m", "requests": 6, "errors": 1, "msats": 0}]
    assert h.snapshot()["errors"] == [{"error": "upstream_error", "count": 1}]


def test_series_length_is_capped() -> None:
    clock = ManualClock(0.0)
    h = hub(clock, bucket_s=1.0, max_points=10)
    h.join(Notes())
    for _ in range(50):
        clock.advance(1)
        h.tick()
    assert len(h.snapshot()["points"]) == 10


def test_traffic_totals_count_what_happened_between_two_totals() -> None:
    clock = ManualClock(1000.0)
    h = hub(clock, bucket_s=5.0)
    h.join(Notes())
    empty = [0] * (len(BUCKETS) + 1)
    h.apply(TrafficTotals((("b1", "m1", 10, 3),), (("timeout", 2),), tuple(empty), 12))
    later = list(empty)
    later[3] = 4  # four requests of up to 10 ms
    h.apply(
        TrafficTotals(
            (("b1", "m1", 13, 5), ("b2", "m2", 1, 0)), (("timeout", 3),), tuple(later), 16
        )
    )
    clock.advance(5)
    h.tick()
    point = h.snapshot()["points"][-1]
    assert point["requests"] == 4 and point["errors"] == 1  # the first totals are a baseline
    assert point["req_p50"] is not None and 5.0 <= point["req_p50"] <= 10.0
    snap = h.snapshot()
    assert snap["traffic"][0] == {
        "backend": "b1",
        "model": "m1",
        "requests": 13,
        "errors": None,
        "msats": 5000,
    }
    assert snap["errors"] == [{"error": "timeout", "count": 3}]
    with pytest.raises(DashboardEventError, match="not both"):
        h.apply(RequestServed("b1", "m1", 0.1))


def test_snapshots_replace_tables_and_only_changes_are_sent() -> None:
    h = hub()
    v = h.join(Notes())
    h.take(v)
    spend = SpendSnapshot((KeySpend("key:alice", 5000, 100_000), KeySpend("swarm:s", 0, None)))
    h.apply(spend)
    h.apply(BreakerState("b1", "open", 0, 3, 120.0))
    h.apply(ProviderEarnings(2, 4000, 2000))
    h.apply(ReputationSnapshot((ReputationRow(A, 0.4, 3), ReputationRow(B, 0.9, 5))))
    kinds = {m["type"] for m in h.take(v)}
    assert kinds == {"keys", "breakers", "earnings", "reputation"}
    h.apply(spend)  # the same again: nothing to send
    h.apply(BreakerState("b1", "open", 0, 3, 120.0))
    assert h.take(v) == []
    h.apply(SpendSnapshot((KeySpend("key:alice", 6000, 100_000),)))  # swarm:s is gone
    (msg,) = h.take(v)
    assert [k["account"] for k in msg["keys"]] == ["key:alice"]
    snap = h.snapshot()
    assert [r["provider"] for r in snap["reputation"]] == [B, A]  # best score first
    assert snap["earnings"] == {"jobs_done": 2, "billed_msats": 4000, "paid_msats": 2000}
    assert snap["breakers"][0]["state"] == "open"


def test_percentile_reads_buckets_like_histogram_quantile() -> None:
    bounds = (1.0, 2.0, 4.0)
    assert percentile([0, 0, 0, 0], 0.5, bounds) is None
    assert percentile([10, 0, 0, 0], 0.5, bounds) == pytest.approx(0.5)
    assert percentile([0, 10, 0, 0], 0.5, bounds) == pytest.approx(1.5)
    assert percentile([5, 5, 0, 0], 0.9, bounds) == pytest.approx(1.8)
    assert percentile([0, 0, 0, 3], 0.5, bounds) == 4.0  # above the last bound: that bound


def test_unknown_panels_and_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown panel"):
        DashboardHub(panels=("jobs", "nope"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_jobs"):
        DashboardHub(max_jobs=0)
    with pytest.raises(DashboardEventError, match="not a dashboard event"):
        DashboardHub().apply(object())  # type: ignore[arg-type]


def test_whose_jobs_the_page_shows_is_part_of_its_state() -> None:
    assert hub().snapshot()["role"] == "customer"
    assert hub(role="provider").snapshot()["role"] == "provider"
    with pytest.raises(ValueError, match="role must be one of"):
        DashboardHub(role="broker")  # type: ignore[arg-type]


def test_an_always_live_hub_counts_with_nobody_watching() -> None:
    clock = ManualClock(1000.0)
    h = hub(clock, always_live=True, linger_s=0.0)
    assert h.live
    h.publish(JobAsked("j1", "m", 2, (A, B)))
    h.publish(Payment("out", 2000, "j1", A))
    v = h.join(Notes())
    (snap,) = h.take(v)
    assert [j["id"] for j in snap["jobs"]] == ["j1"]  # asked before anyone opened the page
    assert snap["cards"]["msats_out"] == 2000
    h.leave(v)
    clock.advance(60)
    h.tick()
    assert h.live  # the last viewer left: it goes on counting
    h.publish(QuorumOutcome("j1", True, (A, B), (), "4"))
    job = h.job("j1")
    assert job is not None and job["outcome"] == "reached"
