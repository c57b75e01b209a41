"""Rate limits per backend: a token bucket (requests per second with a burst) and a cap on
concurrent requests. The bucket is pure: it takes ``now`` and never sleeps."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RateLimitConfig(BaseModel):
    """``requests_per_second`` refills the bucket, which holds up to ``burst`` requests (default:
    one second's worth, at least 1); ``max_concurrent`` caps requests in flight. ``None`` means
    no limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests_per_second: float | None = Field(None, gt=0)
    burst: float | None = Field(None, ge=1)
    max_concurrent: int | None = Field(None, ge=1)


class TokenBucket:
    """Holds up to ``capacity`` tokens, refilled at ``rate`` per second; a request takes one."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        if self.capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.tokens = self.capacity
        self.updated: float | None = None

    @classmethod
    def from_config(cls, cfg: RateLimitConfig) -> TokenBucket | None:
        if cfg.requests_per_second is None:
            return None
        return cls(cfg.requests_per_second, cfg.burst)

    def _refill(self, now: float) -> None:
        if self.updated is None:
            self.updated = now
            return
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
            self.updated = now

    def available(self, now: float, n: float = 1.0) -> bool:
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
