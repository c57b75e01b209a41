"""Limits: per-customer token bucket with an injected clock, the admission queue."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from provider.limits import AdmissionQueue, CustomerRateLimiter, Limits


def test_rate_limit_per_customer_with_burst_and_refill() -> None:
    rl = CustomerRateLimiter(per_minute=60, burst=2)
    assert rl.check("a", 0.0).allowed
    assert rl.check("a", 0.0).allowed
    third = rl.check("a", 0.0)
    assert not third.allowed and third.notify and third.retry_after == pytest.approx(1.0)
    # Another refusal in the same window is not announced again.
    assert not rl.check("a", 0.1).notify
    # Other customers have their own bucket.
    assert rl.check("b", 0.1).allowed
    # One token per second comes back.
    assert rl.check("a", 1.1).allowed


def test_rate_limit_off_and_bounded_memory() -> None:
    assert all(CustomerRateLimiter(None, None).check("x", 0).allowed for _ in range(1000))
    assert all(CustomerRateLimiter(0, 1).check("x", 0).allowed for _ in range(1000))
    rl = CustomerRateLimiter(per_minute=1, burst=1, max_customers=3)
    for c in "abcd":
        assert rl.check(c, 0).allowed
    assert len(rl._buckets) == 3
    # "a" was forgotten, so it has a fresh bucket again.
    assert rl.check("a", 0).allowed


def test_admission_queue_runs_queues_and_refuses() -> None:
    q: AdmissionQueue[str] = AdmissionQueue(max_concurrent=2, queue_size=1)
    assert [q.submit(x) for x in "abcd"] == ["run", "run", "queued", "busy"]
    assert q.submit("paid", force=True) == "queued"
    assert q.release() == "c" and q.running == 2
    assert q.release() == "paid"
    assert q.release() is None and q.running == 1
    assert q.release() is None and q.running == 0
    assert q.release() is None and q.running == 0  # never negative


def test_admission_queue_without_waiting_room() -> None:
    q: AdmissionQueue[int] = AdmissionQueue(max_concurrent=1, queue_size=0)
    assert q.submit(1) == "run"
    assert not q.has_room()
    assert q.submit(2) == "busy"
    q.submit(3, force=True)
    assert q.drain() == [3] and q.waiting == 0


def test_limits_validation() -> None:
    with pytest.raises(ValidationError):
        Limits(max_tokens=100, default_max_tokens=200)
    with pytest.raises(ValidationError):
        Limits(max_concurrent=0)


def test_release_without_starting_the_next() -> None:
    q: AdmissionQueue[str] = AdmissionQueue(max_concurrent=1, queue_size=2)
    q.submit("a")
    q.submit("b")
    assert q.release(start_next=False) is None
    assert q.running == 0 and q.drain() == ["b"]
