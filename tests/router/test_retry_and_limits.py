"""Backoff schedule, Retry-After, retryable errors, and the token bucket (pure, explicit times)."""

from __future__ import annotations

import pytest

from router.errors import BackendError, RateLimited
from router.rate_limit import RateLimitConfig, TokenBucket, bucket_for
from router.retry import RetryPolicy, is_retryable, parse_retry_after, retry_after_of


def test_exponential_schedule_with_cap() -> None:
    p = RetryPolicy(
        max_attempts=6, initial_backoff_s=0.1, multiplier=2, max_backoff_s=1.0, jitter=0
    )
    assert p.schedule() == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])
    assert p.backoff(5) is None  # six attempts made: no more


def test_jitter_spreads_within_bounds_and_respects_the_cap() -> None:
    p = RetryPolicy(
        max_attempts=4, initial_backoff_s=1.0, multiplier=2, max_backoff_s=3.0, jitter=0.5
    )
    assert p.backoff(0, rand=0.0) == pytest.approx(0.5)
    assert p.backoff(0, rand=0.999999) == pytest.approx(1.5, rel=1e-5)
    assert p.backoff(1, rand=0.5) == pytest.approx(2.0)
    assert p.backoff(2, rand=0.999) == pytest.approx(3.0)  # 4 * 1.5 capped at 3
    assert p.schedule([0.0, 0.0, 0.0]) == pytest.approx([0.5, 1.0, 1.5])  # min(3, 4) * 0.5


def test_retry_after_raises_the_wait_or_refuses_when_too_long() -> None:
    p = RetryPolicy(max_attempts=3, initial_backoff_s=0.1, jitter=0, max_retry_after_s=10)
    assert p.backoff(0, retry_after=2.5) == pytest.approx(2.5)
    assert p.backoff(0, retry_after=0.01) == pytest.approx(0.1)
    assert p.backoff(0, retry_after=11) is None


def test_single_attempt_policy_never_retries() -> None:
    assert RetryPolicy.none().backoff(0) is None
    assert RetryPolicy.none().schedule() == []
    with pytest.raises(ValueError):
        RetryPolicy(initial_backoff_s=2, max_backoff_s=1)


def test_retryable_classification() -> None:
    assert is_retryable(BackendError("x", retryable=True))
    assert not is_retryable(BackendError("bad request", status=400))
    assert is_retryable(RateLimited("slow down", retry_after=3))
    assert is_retryable(TimeoutError())
    assert is_retryable(ConnectionResetError())
    assert not is_retryable(ValueError("bug"))
    assert retry_after_of(RateLimited("x", retry_after=3)) == 3.0
    assert retry_after_of(ValueError()) is None


def test_parse_retry_after() -> None:
    assert parse_retry_after("7", 0) == 7.0
    assert parse_retry_after(" 1.5 ", 0) == 1.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490.0) == 0.0
    for bad in (None, "", "soon", "-3", "nan"):
        assert parse_retry_after(bad, 0) is None


def test_token_bucket_burst_then_refill() -> None:
    b = TokenBucket(rate=2.0, capacity=3)
    assert [b.try_acquire(10.0) for _ in range(4)] == [True, True, True, False]
    assert b.wait_time(10.0) == pytest.approx(0.5)
    assert not b.try_acquire(10.4)
    assert b.try_acquire(10.5)
    assert b.try_acquire(12.0) and b.try_acquire(12.0) and b.try_acquire(12.0)
    assert not b.try_acquire(12.0)  # refill never exceeds capacity (3)


def test_token_bucket_defaults_and_config() -> None:
    b = TokenBucket(rate=0.5)
    assert b.capacity == 1.0
    assert b.try_acquire(0.0) and not b.try_acquire(1.9) and b.try_acquire(2.0)
    assert bucket_for(RateLimitConfig()) is None
    bucket = bucket_for(RateLimitConfig(requests_per_second=5, burst=10))
    assert bucket is not None and bucket.capacity == 10
    with pytest.raises(ValueError):
        TokenBucket(rate=0)
    with pytest.raises(ValueError):
        RateLimitConfig(max_concurrent=0)
