"""A token bucket: ``rate`` tokens a second, at most ``capacity`` saved up; full at the start.

The one rate limiter of the project (relay_mock's events per connection, the router's requests
per backend, the gateway's requests and tokens per key, the provider's jobs per customer): it
sits at the bottom, in ``client``, because every package may import ``client``. Pure: the caller
passes the time; it never sleeps and never reads a clock.
"""

from __future__ import annotations


class TokenBucket:
    """Holds up to ``capacity`` tokens (default: one second's worth, at least 1), refilled at
    ``rate`` per second; a request takes one (or ``n``)."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.capacity = float(capacity) if capacity is not None else max(1.0, self.rate)
        if self.capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.tokens = self.capacity
        # The time of the last refill; None until first used (the bucket is full until then).
        self.updated: float | None = None

    def _refill(self, now: float) -> None:
        if self.updated is None:
            self.updated = now
            return
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
            self.updated = now

    def available(self, now: float, n: float = 1.0) -> bool:
        """Whether ``n`` tokens could be taken now (takes none)."""
        self._refill(now)
        return self.tokens >= n

    def try_acquire(self, now: float, n: float = 1.0) -> bool:
        """Take ``n`` tokens if there are that many; otherwise take none and return False."""
        self._refill(now)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def wait_time(self, now: float, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens will be available."""
        self._refill(now)
        missing = n - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate
