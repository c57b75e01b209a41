"""The one token bucket: the relay's per-connection event rate, the router's per-backend rate, the
gateway's per-key limits and the provider's per-customer rate are all this class."""

from __future__ import annotations

import pytest

from client.token_bucket import TokenBucket


def test_starts_full_then_refills_at_the_rate_up_to_the_capacity() -> None:
    b = TokenBucket(rate=2.0, capacity=3)
    assert [b.try_acquire(100.0) for _ in range(4)] == [True, True, True, False]
    assert not b.available(100.2) and b.wait_time(100.2) == pytest.approx(0.3)
    assert b.try_acquire(100.5) and not b.try_acquire(100.5)
    assert b.try_acquire(200.0, n=3) and not b.available(200.0)  # never more than capacity
    assert not b.try_acquire(199.0)  # time going backwards adds nothing


def test_defaults_and_bad_values() -> None:
    assert TokenBucket(0.2).capacity == 1.0 and TokenBucket(5).capacity == 5.0
    for rate, capacity in ((0, None), (-1, None), (1, 0.5)):
        with pytest.raises(ValueError):
            TokenBucket(rate, capacity)


def test_every_user_has_the_same_class() -> None:
    from provider import limits
    from relay_mock import core
    from router import rate_limit
    from router.gateway import key_limits

    assert core.TokenBucket is rate_limit.TokenBucket is TokenBucket
    assert limits.TokenBucket is key_limits.TokenBucket is TokenBucket
