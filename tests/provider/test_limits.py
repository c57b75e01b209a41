"""Limits: per-customer token bucket with an injected clock, validation. (Slots and the queue:
tests/provider/test_jobs.py.)"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from provider.limits import CustomerRateLimiter, Limits


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


def test_limits_validation() -> None:
    with pytest.raises(ValidationError):
        Limits(max_tokens=100, default_max_tokens=200)
    with pytest.raises(ValidationError):
        Limits(max_concurrent=0)
