"""Every breaker transition, driven by explicit times (no clock, no sleeping)."""

from __future__ import annotations

import math

import pytest

from router.circuit_breaker import BreakerConfig, BreakerShare, CircuitBreaker, CircuitState


def test_closed_until_threshold_failures_within_window() -> None:
    b = CircuitBreaker(failure_threshold=3, window_s=10, reset_timeout_s=30)
    assert b.allow(0.0)
    b.record_failure(0.0)
    b.record_failure(1.0)
    assert b.state is CircuitState.CLOSED and b.allow(1.5)
    b.record_failure(2.0)
    assert b.state is CircuitState.OPEN
    assert b.trips == 1
    assert not b.allow(2.1) and not b.available(31.9)
    assert b.retry_after(12.0) == pytest.approx(20.0)


def test_failures_outside_the_window_do_not_count() -> None:
    b = CircuitBreaker(failure_threshold=3, window_s=10, reset_timeout_s=30)
    b.record_failure(0.0)
    b.record_failure(5.0)
    b.record_failure(10.0)  # the one at 0.0 has aged out (window is (0, 10])
    assert b.state is CircuitState.CLOSED
    b.record_failure(11.0)
    assert b.state is CircuitState.OPEN


def test_successes_in_closed_state_do_not_erase_recent_failures() -> None:
    b = CircuitBreaker(failure_threshold=2, window_s=60, reset_timeout_s=5)
    b.record_failure(0.0)
    b.record_success(1.0)
    b.record_failure(2.0)
    assert b.state is CircuitState.OPEN


def test_open_to_half_open_allows_exactly_one_probe() -> None:
    b = CircuitBreaker(failure_threshold=1, window_s=60, reset_timeout_s=30)
    b.record_failure(100.0)
    assert b.state_at(129.9) is CircuitState.OPEN
    assert b.state_at(130.0) is CircuitState.HALF_OPEN  # as seen, before anything passes
    assert b.allow(130.0)  # the probe
    assert b.state is CircuitState.HALF_OPEN
    assert b.blocked_until == math.inf
    assert not b.allow(130.1) and not b.allow(500.0)  # one probe at a time


def test_half_open_success_closes() -> None:
    b = CircuitBreaker(failure_threshold=1, window_s=60, reset_timeout_s=30)
    b.record_failure(0.0)
    assert b.allow(30.0)
    b.record_success(30.5)
    assert b.state is CircuitState.CLOSED
    assert b.allow(30.6) and b.allow(30.7)
    b.record_failure(31.0)  # old failures were cleared; threshold 1 trips again
    assert b.state is CircuitState.OPEN and b.trips == 2


def test_half_open_failure_reopens_with_a_fresh_timeout() -> None:
    b = CircuitBreaker(failure_threshold=1, window_s=60, reset_timeout_s=30)
    b.record_failure(0.0)
    assert b.allow(30.0)
    b.record_failure(31.0)
    assert b.state is CircuitState.OPEN
    assert b.trips == 2
    assert not b.allow(60.0)  # 30 s from the probe's failure, not from the first trip
    assert b.allow(61.0)


def test_success_threshold_needs_several_probes_one_at_a_time() -> None:
    b = CircuitBreaker(failure_threshold=1, window_s=60, reset_timeout_s=10, success_threshold=3)
    b.record_failure(0.0)
    for t in (10.0, 11.0):
        assert b.allow(t)
        assert not b.allow(t)  # the probe is still out
        b.record_success(t)
        assert b.state is CircuitState.HALF_OPEN
    assert b.allow(12.0)
    b.record_success(12.0)
    assert b.state is CircuitState.CLOSED


def test_released_probe_lets_another_through() -> None:
    b = CircuitBreaker(failure_threshold=1, window_s=60, reset_timeout_s=10)
    b.record_failure(0.0)
    assert b.allow(10.0)
    b.release_probe()  # cancelled without an outcome
    assert b.allow(10.5)


def test_late_failure_while_open_changes_nothing() -> None:
    b = CircuitBreaker(failure_threshold=1, window_s=60, reset_timeout_s=10)
    b.record_failure(0.0)
    b.record_failure(5.0)
    assert b.trips == 1 and b.blocked_until == 10.0


def test_config_and_validation() -> None:
    assert CircuitBreaker.from_config(BreakerConfig(enabled=False)) is None
    b = CircuitBreaker.from_config(BreakerConfig(failure_threshold=2, reset_timeout_s=1))
    assert b is not None and b.failure_threshold == 2
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError):
        BreakerConfig(window_s=0)


def test_a_share_travels_as_durations_and_is_adopted_on_another_clock() -> None:
    here = CircuitBreaker(failure_threshold=1, reset_timeout_s=30)
    here.record_failure(1000.0)
    share = here.share(1010.0)  # 20 s left of the 30
    assert share == BreakerShare(CircuitState.OPEN, open_for_s=20.0)
    there = CircuitBreaker(failure_threshold=1, reset_timeout_s=30)
    there.adopt(share, 5.0)  # another machine's clock: it only adds the duration
    assert there.state is CircuitState.OPEN and there.trips == 0  # not a trip of its own
    assert not there.available(24.9) and there.available(25.0)
    assert there.allow(25.0) and there.probing  # then the probe is its to take
    there.record_success(25.5)
    assert there.share(26.0) == BreakerShare(CircuitState.CLOSED)
    here.adopt(there.share(26.0), 1011.0)
    assert here.state is CircuitState.CLOSED and here.allow(1011.0)


def test_half_open_progress_is_shared_and_counts_toward_closing() -> None:
    a = CircuitBreaker(failure_threshold=1, reset_timeout_s=0, success_threshold=2)
    b = CircuitBreaker(failure_threshold=1, reset_timeout_s=0, success_threshold=2)
    a.record_failure(0.0)
    b.adopt(a.share(0.0), 0.0)
    assert a.allow(1.0)
    a.record_success(1.0)
    share = a.share(1.0)
    assert share == BreakerShare(CircuitState.HALF_OPEN, successes=1)
    b.adopt(share, 1.0)
    assert b.state is CircuitState.HALF_OPEN and b.available(1.0)
    assert b.allow(2.0)
    b.record_success(2.0)  # the second success of the fleet closes it, wherever it happens
    assert b.state is CircuitState.CLOSED


def test_a_probe_deferred_to_another_gateway_blocks_then_may_probe_again() -> None:
    b = CircuitBreaker(failure_threshold=1, reset_timeout_s=10)
    b.defer_probe(0.0, 5.0)
    assert b.state is CircuitState.CLOSED and b.allow(0.0)  # closed: nothing to defer
    b.record_failure(0.0)
    assert b.allow(10.0) and b.probing
    b.defer_probe(10.0, 5.0)  # another gateway holds the probe: this one gives its up
    assert not b.probing and b.state_at(12.0) is CircuitState.HALF_OPEN
    assert not b.allow(14.9) and b.retry_after(12.0) == pytest.approx(3.0)
    assert b.allow(15.0) and b.probing
    b.defer_probe(15.0, 0.0)
    b.adopt(BreakerShare(CircuitState.OPEN, open_for_s=30.0), 16.0)
    b.defer_probe(16.0, 1.0)  # never shortens an open breaker's wait
    assert not b.available(45.9) and b.available(46.0)


def test_a_share_is_checked() -> None:
    with pytest.raises(ValueError):
        BreakerShare(CircuitState.OPEN, open_for_s=-1.0)
    with pytest.raises(ValueError):
        BreakerShare(CircuitState.OPEN, open_for_s=math.inf)
    with pytest.raises(ValueError):
        BreakerShare(CircuitState.HALF_OPEN, successes=-1)
