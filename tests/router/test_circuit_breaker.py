"""Every breaker transition, driven by explicit times (no clock, no sleeping)."""

from __future__ import annotations

import math

import pytest

from router.circuit_breaker import BreakerConfig, CircuitBreaker, CircuitState


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
