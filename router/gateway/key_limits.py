"""Per-key request limits: which models a key may use, requests and tokens per minute, and
requests in flight. Pure: the caller passes the time; nothing sleeps.

Tokens per minute are counted before a request is sent from its estimate (prompt plus
``max_tokens``) and corrected after it with what the answer really used, so a key cannot
overrun its minute with requests that are all in flight at once.
"""

from __future__ import annotations

import fnmatch
import math
import time
from dataclasses import dataclass

from ..rate_limit import TokenBucket
from .errors import ApiError
from .shared_limits import SLOT_TTL_S, SharedCounters, minute_key


@dataclass(frozen=True, slots=True)
class KeyLimits:
    models: tuple[str, ...] | None = None  # fnmatch patterns; None: every model
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None


def _limited(message: str, retry_after: float | None) -> ApiError:
    headers = None
    if retry_after is not None and math.isfinite(retry_after):
        headers = {"Retry-After": str(max(1, math.ceil(retry_after)))}
    return ApiError(429, message, type="requests", code="rate_limit_exceeded", headers=headers)


class KeyGate:
    """One key's limits while the gateway runs: in ``shared`` counters (Redis, across every
    instance) when given and reachable, else in this process."""

    __slots__ = ("_requests", "_shared_slot", "_tokens", "in_flight", "limits", "name", "shared")

    def __init__(self, name: str, limits: KeyLimits, shared: SharedCounters | None = None) -> None:
        self.name = name
        self.limits = limits
        self.shared = shared
        self._shared_slot: list[bool] = []  # per admitted request: was its slot taken in Redis
        self.in_flight = 0
        self._requests = TokenBucket(limits.rpm / 60.0, limits.rpm) if limits.rpm else None
        self._tokens = TokenBucket(limits.tpm / 60.0, limits.tpm) if limits.tpm else None

    def allows_model(self, model: str) -> bool:
        pats = self.limits.models
        return pats is None or any(fnmatch.fnmatchcase(model, p) for p in pats)

    def admit(self, model: str, tokens: int, now: float) -> int:
        """Take a slot for one request of about ``tokens`` tokens; returns the tokens counted
        (:meth:`correct` them with what was used; :meth:`release` the slot when it ends).
        Raises ApiError 403 for a model the key may not use and 429 (with Retry-After) over
        a limit."""
        lim = self.limits
        if not self.allows_model(model):
            raise ApiError(
                403,
                f"API key '{self.name}' may not use model '{model}' "
                f"(allowed: {', '.join(lim.models or ())})",
                type="invalid_request_error",
                param="model",
                code="model_not_allowed",
            )
        if self.shared is not None:
            counted = self._admit_shared(tokens, time.time())
            if counted is not None:
                return counted
        if lim.max_parallel is not None and self.in_flight >= lim.max_parallel:
            raise _limited(
                f"API key '{self.name}' has {self.in_flight} requests in flight "
                f"(max_parallel {lim.max_parallel})",
                1.0,
            )
        req = self._requests
        if req is not None and not req.try_acquire(now):
            raise _limited(
                f"API key '{self.name}' is over its {lim.rpm} requests per minute",
                req.wait_time(now),
            )
        counted = 0
        bucket = self._tokens
        if bucket is not None:
            counted = min(tokens, int(bucket.capacity))  # one huge request may use a full minute
            if not bucket.try_acquire(now, counted):
                if req is not None:
                    req.tokens = min(req.capacity, req.tokens + 1)  # nothing was sent
                raise _limited(
                    f"API key '{self.name}' is over its {lim.tpm} tokens per minute "
                    f"(this request may use {tokens})",
                    bucket.wait_time(now, counted),
                )
        self.in_flight += 1
        self._shared_slot.append(False)
        return counted

    def _admit_shared(self, tokens: int, now: float) -> int | None:
        """The same checks in Redis; None when it is away (then counted here instead)."""
        shared = self.shared
        assert shared is not None
        lim = self.limits
        taken: list[tuple[str, int]] = []

        def undo() -> None:
            for key, n in taken:
                shared.give(key, n)

        if lim.max_parallel is not None:
            key = f"swarm:parallel:{self.name}"
            ok = shared.take(key, 1, lim.max_parallel, SLOT_TTL_S)
            if ok is None:
                return None
            if not ok:
                raise _limited(
                    f"API key '{self.name}' has {lim.max_parallel} requests in flight across "
                    f"the gateways (max_parallel {lim.max_parallel})",
                    1.0,
                )
            taken.append((key, 1))
        if lim.rpm:
            key, wait = minute_key("rpm", self.name, now)
            ok = shared.take(key, 1, lim.rpm, 120)
            if not ok:
                undo()
                if ok is None:
                    return None
                raise _limited(
                    f"API key '{self.name}' is over its {lim.rpm} requests per minute", wait
                )
            taken.append((key, 1))
        counted = 0
        if lim.tpm:
            counted = min(tokens, lim.tpm)
            key, wait = minute_key("tpm", self.name, now)
            ok = shared.take(key, counted, lim.tpm, 120)
            if not ok:
                undo()
                if ok is None:
                    return None
                raise _limited(
                    f"API key '{self.name}' is over its {lim.tpm} tokens per minute "
                    f"(this request may use {tokens})",
                    wait,
                )
        self.in_flight += 1
        self._shared_slot.append(lim.max_parallel is not None)
        return counted

    def release(self) -> None:
        """The request ended: free its slot."""
        self.in_flight = max(0, self.in_flight - 1)
        in_redis = self._shared_slot.pop() if self._shared_slot else False
        if in_redis and self.shared is not None:
            self.shared.give(f"swarm:parallel:{self.name}", 1)

    def correct(self, counted: int, used: int) -> None:
        """Count what the answer really used instead of what :meth:`admit` estimated."""
        if self.shared is not None and self.limits.tpm and self.shared.available:
            key, _ = minute_key("tpm", self.name, time.time())
            self.shared.give(key, counted - used)
            return
        bucket = self._tokens
        if bucket is None:
            return
        extra = counted - used
        if extra > 0:  # give back what it did not use
            bucket.tokens = min(bucket.capacity, bucket.tokens + extra)
        elif extra < 0:  # used more than estimated: the minute pays for it
            bucket.tokens -= -extra
