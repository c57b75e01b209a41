"""Rate limits per backend: a token bucket (requests per second with a burst) and a cap on
concurrent requests. The bucket is :class:`client.token_bucket.TokenBucket` (pure: it takes
``now`` and never sleeps), the project's one rate limiter."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from client.token_bucket import TokenBucket as TokenBucket


class RateLimitConfig(BaseModel):
    """``requests_per_second`` refills the bucket, which holds up to ``burst`` requests (default:
    one second's worth, at least 1); ``max_concurrent`` caps requests in flight. ``None`` means
    no limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests_per_second: float | None = Field(None, gt=0)
    burst: float | None = Field(None, ge=1)
    max_concurrent: int | None = Field(None, ge=1)


def bucket_for(cfg: RateLimitConfig) -> TokenBucket | None:
    """The bucket ``cfg`` asks for, or None when it sets no request rate."""
    if cfg.requests_per_second is None:
        return None
    return TokenBucket(cfg.requests_per_second, cfg.burst)
