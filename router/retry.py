"""Retry policy: which errors are worth retrying and how long to wait before each retry.

Everything here is pure: the delay is computed from the attempt number, a random number in
[0, 1) supplied by the caller (so tests fix it) and the server's Retry-After. The router does the
sleeping through an injectable sleeper.
"""

from __future__ import annotations

import email.utils
import math

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RetryPolicy(BaseModel):
    """Exponential backoff with jitter and a cap.

    The n-th retry (n = 0, 1, ...) waits ``min(max_backoff_s, initial_backoff_s * multiplier**n)``,
    scaled by a random factor in ``[1 - jitter, 1 + jitter]`` and capped again at
    ``max_backoff_s``. A server's Retry-After raises the wait to at least that long; if it asks
    for more than ``max_retry_after_s`` the request is not retried on that backend (the router
    fails over instead).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(3, ge=1, description="attempts per backend, the first included")
    initial_backoff_s: float = Field(0.1, ge=0)
    max_backoff_s: float = Field(2.0, ge=0)
    multiplier: float = Field(2.0, ge=1.0)
    jitter: float = Field(0.2, ge=0.0, le=1.0, description="relative spread of each delay")
    max_retry_after_s: float = Field(30.0, ge=0)

    @model_validator(mode="after")
    def _cap_covers_initial(self) -> RetryPolicy:
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("max_backoff_s must be >= initial_backoff_s")
        return self

    @classmethod
    def none(cls) -> RetryPolicy:
        """No retries: one attempt per backend."""
        return cls(max_attempts=1)

    def backoff(
        self, retry: int, rand: float = 0.5, retry_after: float | None = None
    ) -> float | None:
        """Seconds to wait before retry number ``retry`` (0-based), or ``None`` for "do not retry".

        ``rand`` in [0, 1) picks the jitter (0.5 means none).
        """
        if retry + 1 >= self.max_attempts:
            return None
        base = self.initial_backoff_s * self.multiplier**retry
        base = min(self.max_backoff_s, base) if math.isfinite(base) else self.max_backoff_s
        delay = min(self.max_backoff_s, base * (1.0 + self.jitter * (2.0 * rand - 1.0)))
        if retry_after is not None:
            if retry_after > self.max_retry_after_s:
                return None
            delay = max(delay, retry_after)
        return delay

    def schedule(self, rands: list[float] | None = None) -> list[float]:
        """All the waits a request that keeps failing would see (without Retry-After)."""
        out: list[float] = []
        for i in range(self.max_attempts - 1):
            r = rands[i] if rands is not None else 0.5
            d = self.backoff(i, r)
            assert d is not None
            out.append(d)
        return out


def is_retryable(exc: BaseException) -> bool:
    """Whether asking the same backend again may help: errors that say so (``retryable``),
    timeouts and connection failures."""
    flag = getattr(exc, "retryable", None)
    if flag is not None:
        return bool(flag)
    return isinstance(exc, (TimeoutError, ConnectionError))


#: Upstream statuses that say the request itself is wrong (too long, malformed, unprocessable):
#: the caller's to fix, not the backend's fault. 401/403 (our credentials) and 404 (the model
#: is not on that backend) are not among them: another backend may serve the request.
CALLER_STATUSES = frozenset({400, 413, 415, 422})


def is_caller_error(exc: BaseException) -> bool:
    """Whether an upstream refused the request as the caller's mistake: such an error goes
    back to the caller as it is, never counts toward a breaker and never fails over."""
    status = getattr(exc, "status", None)
    return isinstance(status, int) and status in CALLER_STATUSES


def retry_after_of(exc: BaseException) -> float | None:
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, (int, float)) and value >= 0 else None


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """An HTTP Retry-After header as seconds from ``now_epoch``: delta-seconds or an HTTP-date.
    Returns ``None`` when absent or unparseable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        return max(0.0, when.timestamp() - now_epoch)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds
