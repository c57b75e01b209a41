"""A circuit breaker as a pure state machine: every method takes ``now`` (seconds) and nothing
sleeps or reads a clock, so each transition is tested by passing times.

closed --(failure_threshold failures within window_s)--> open
open --(reset_timeout_s elapsed; one request allowed through as a probe)--> half-open
half-open --(success_threshold probe successes)--> closed
half-open --(probe fails)--> open (the reset timeout starts again)

Gateways that share their breakers (router/gateway/shared_breakers.py) tell each other every
transition as a :class:`BreakerShare` (:meth:`CircuitBreaker.share`) and take the others' with
:meth:`CircuitBreaker.adopt`. A share carries durations, not times, so machines whose clocks
disagree still agree on how long a breaker stays open.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerShare:
    """A breaker's state as one gateway tells the others: ``open_for_s`` (open: how long until
    a probe may go) and ``successes`` (half-open: probe successes so far)."""

    state: CircuitState
    open_for_s: float = 0.0
    successes: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.open_for_s) and self.open_for_s >= 0) or self.successes < 0:
            raise ValueError(f"not a breaker state: {self!r}")


class BreakerConfig(BaseModel):
    """Circuit breaker settings (per backend)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    failure_threshold: int = Field(5, ge=1, description="failures within the window that open it")
    window_s: float = Field(60.0, gt=0, description="how far back failures count")
    reset_timeout_s: float = Field(30.0, ge=0, description="time open before a probe is allowed")
    success_threshold: int = Field(1, ge=1, description="probe successes needed to close again")


class CircuitBreaker:
    """Per-backend breaker. ``blocked_until`` is the time before which no request may pass
    (0 when closed, ``inf`` while a half-open probe is in flight), so checking availability on
    the hot path is one float comparison."""

    __slots__ = (
        "_failures",
        "_successes",
        "blocked_until",
        "failure_threshold",
        "opened_at",
        "reset_timeout_s",
        "state",
        "success_threshold",
        "trips",
        "window_s",
    )

    def __init__(
        self,
        failure_threshold: int = 5,
        window_s: float = 60.0,
        reset_timeout_s: float = 30.0,
        success_threshold: int = 1,
    ) -> None:
        if failure_threshold < 1 or success_threshold < 1:
            raise ValueError("thresholds must be at least 1")
        if window_s <= 0 or reset_timeout_s < 0:
            raise ValueError("window_s must be > 0 and reset_timeout_s >= 0")
        self.failure_threshold = failure_threshold
        self.window_s = window_s
        self.reset_timeout_s = reset_timeout_s
        self.success_threshold = success_threshold
        self.state = CircuitState.CLOSED
        self.blocked_until = 0.0
        self.opened_at = 0.0
        self.trips = 0
        self._failures: deque[float] = deque()
        self._successes = 0

    @classmethod
    def from_config(cls, cfg: BreakerConfig) -> CircuitBreaker | None:
        if not cfg.enabled:
            return None
        return cls(cfg.failure_threshold, cfg.window_s, cfg.reset_timeout_s, cfg.success_threshold)

    def state_at(self, now: float) -> CircuitState:
        """The state as seen at ``now`` (an open breaker whose timeout passed reads half-open)."""
        if self.state is CircuitState.OPEN and now >= self.blocked_until:
            return CircuitState.HALF_OPEN
        return self.state

    def available(self, now: float) -> bool:
        """Whether a request could pass at ``now`` (does not change state)."""
        return now >= self.blocked_until

    def allow(self, now: float) -> bool:
        """Let one request through if possible. An open breaker whose reset timeout has passed
        turns half-open and lets exactly this request through as the probe."""
        if now < self.blocked_until:
            return False
        if self.state is not CircuitState.CLOSED:
            # open with the timeout passed, or half-open with no probe in flight: take the probe
            self.state = CircuitState.HALF_OPEN
            self.blocked_until = math.inf
        return True

    @property
    def probing(self) -> bool:
        """A half-open probe is in flight (no other request may pass)."""
        return self.blocked_until == math.inf

    def share(self, now: float) -> BreakerShare:
        """This breaker's state for the other gateways."""
        if self.state is CircuitState.OPEN:
            return BreakerShare(self.state, open_for_s=max(0.0, self.blocked_until - now))
        if self.state is CircuitState.HALF_OPEN:
            return BreakerShare(self.state, successes=self._successes)
        return BreakerShare(self.state)

    def adopt(self, share: BreakerShare, now: float) -> None:
        """Take another gateway's transition: open for ``open_for_s`` from ``now``, half-open
        with its probe successes (the next request here may probe), or closed. Not a trip of
        this breaker (``trips`` counts this gateway's own)."""
        if share.state is CircuitState.OPEN:
            self.state = CircuitState.OPEN
            self.opened_at = now
            self.blocked_until = now + share.open_for_s
            self._failures.clear()
            self._successes = 0
        elif share.state is CircuitState.HALF_OPEN:
            self.state = CircuitState.HALF_OPEN
            self.blocked_until = 0.0
            self._failures.clear()
            self._successes = min(share.successes, self.success_threshold - 1)
        else:
            self._close()

    def defer_probe(self, now: float, wait_s: float) -> None:
        """Another gateway is probing: no request passes here for ``wait_s`` (its outcome
        usually arrives sooner, through :meth:`adopt`), then the next one may probe."""
        if self.state is CircuitState.CLOSED:
            return
        if self.probing:  # this gateway's probe is given up
            self.blocked_until = 0.0
        self.blocked_until = max(self.blocked_until, now + max(0.0, wait_s))

    def release_probe(self) -> None:
        """The probe ended without an outcome (cancelled): let another request probe."""
        if self.state is CircuitState.HALF_OPEN:
            self.blocked_until = 0.0

    def record_success(self, now: float) -> None:
        if self.state is CircuitState.HALF_OPEN:
            self._successes += 1
            if self._successes >= self.success_threshold:
                self._close()
            else:
                self.blocked_until = 0.0  # the next request is the next probe

    def record_failure(self, now: float) -> None:
        if self.state is CircuitState.HALF_OPEN:
            self._open(now)
            return
        if self.state is CircuitState.OPEN:
            return  # a request admitted before the trip finished late; it changes nothing
        failures = self._failures
        failures.append(now)
        horizon = now - self.window_s
        while failures and failures[0] <= horizon:
            failures.popleft()
        if len(failures) >= self.failure_threshold:
            self._open(now)

    def retry_after(self, now: float) -> float:
        """Seconds until a request may pass (0 if it may now; while a probe is in flight, the
        reset timeout as an estimate)."""
        if self.blocked_until == math.inf:
            return self.reset_timeout_s
        return max(0.0, self.blocked_until - now)

    def _open(self, now: float) -> None:
        self.state = CircuitState.OPEN
        self.opened_at = now
        self.blocked_until = now + self.reset_timeout_s
        self.trips += 1
        self._failures.clear()
        self._successes = 0

    def _close(self) -> None:
        self.state = CircuitState.CLOSED
        self.blocked_until = 0.0
        self._failures.clear()
        self._successes = 0

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state.value}, trips={self.trips})"
