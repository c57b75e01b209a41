"""What one node takes on: concurrency, a bounded queue, a per-customer rate limit and size caps.
Pure: the rate limiter takes ``now``. The slots and the queue themselves are the job book's
(:mod:`provider.jobs`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from router.rate_limit import TokenBucket


class Limits(BaseModel):
    """Limits of one provider node (the ``[limits]`` table of provider.toml)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_concurrent: int = Field(2, ge=1, description="jobs running on the backend at once")
    queue_size: int = Field(16, ge=0, description="jobs waiting for a slot; beyond: 'busy'")
    max_unpaid: int = Field(
        64, ge=0, description="jobs waiting for their payment-required invoice to be paid"
    )
    rate_per_minute: float | None = Field(
        30.0, ge=0, description="jobs one customer may send per minute (0 or None: unlimited)"
    )
    rate_burst: int | None = Field(
        10, ge=1, description="jobs one customer may send at once before the rate applies"
    )
    max_prompt_chars: int = Field(32_000, ge=1, description="longest prompt accepted")
    max_tokens: int = Field(2048, ge=1, description="largest max_tokens accepted")
    default_max_tokens: int = Field(
        256, ge=1, description="max_tokens for requests that do not say"
    )
    job_timeout: float = Field(300.0, gt=0, description="seconds a backend call may take")
    shutdown_grace: float = Field(
        30.0, ge=0, description="seconds in-flight jobs get to finish when the node stops"
    )

    @model_validator(mode="after")
    def _defaults_fit(self) -> Limits:
        if self.default_max_tokens > self.max_tokens:
            raise ValueError("default_max_tokens must not exceed max_tokens")
        return self


@dataclass(frozen=True, slots=True)
class RateDecision:
    """``allowed``; else ``retry_after`` seconds, and ``notify`` once per customer per window so
    a flood of refused jobs does not become a flood of refusals."""

    allowed: bool
    retry_after: float = 0.0
    notify: bool = False


class CustomerRateLimiter:
    """A token bucket per customer public key, the least recently seen forgotten beyond
    ``max_customers`` (memory stays bounded whoever floods us)."""

    def __init__(
        self, per_minute: float | None, burst: int | None, *, max_customers: int = 10_000
    ) -> None:
        self.rate = per_minute / 60.0 if per_minute else None
        self.burst = float(burst) if burst is not None else None
        self.max_customers = max_customers
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._noticed: dict[str, float] = {}

    def check(self, customer: str, now: float) -> RateDecision:
        if self.rate is None:
            return RateDecision(True)
        bucket = self._buckets.get(customer)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst if self.burst is not None else 1.0)
            self._buckets[customer] = bucket
            if len(self._buckets) > self.max_customers:
                old, _ = self._buckets.popitem(last=False)
                self._noticed.pop(old, None)
        else:
            self._buckets.move_to_end(customer)
        if bucket.try_acquire(now):
            self._noticed.pop(customer, None)
            return RateDecision(True)
        wait = bucket.wait_time(now)
        last = self._noticed.get(customer)
        notify = last is None or now - last >= max(wait, 1.0)
        if notify:
            self._noticed[customer] = now
        return RateDecision(False, wait, notify)
