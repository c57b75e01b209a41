"""Per-key request limits: which models a key may use, requests and tokens per minute, and
requests in flight. Counted in this process (pure: the caller passes the time; nothing sleeps)
or, when the gateway shares limits (``state.redis``), in :mod:`.shared_limits`' Redis counters,
falling back to this process while Redis is away.

Tokens per minute are counted before a request is sent from its estimate (prompt plus
``max_tokens``) and corrected after it with what the answer really used, so a key cannot
overrun its minute with requests that are all in flight at once.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

from ..rate_limit import TokenBucket
from .errors import ApiError
from .shared_limits import Refused, SharedCounters, Taken


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
    """One key's limits while the gateway runs: :meth:`acquire` counts in the ``shared``
    counters (Redis, across every instance) when given and reachable, else in this process
    (:meth:`admit`, :meth:`release`, :meth:`correct`)."""

    __slots__ = ("_requests", "_tokens", "in_flight", "limits", "name", "shared")

    def __init__(self, name: str, limits: KeyLimits, shared: SharedCounters | None = None) -> None:
        self.name = name
        self.limits = limits
        self.shared = shared
        self.in_flight = 0
        self._requests = TokenBucket(limits.rpm / 60.0, limits.rpm) if limits.rpm else None
        self._tokens = TokenBucket(limits.tpm / 60.0, limits.tpm) if limits.tpm else None

    def allows_model(self, model: str) -> bool:
        pats = self.limits.models
        return pats is None or any(fnmatch.fnmatchcase(model, p) for p in pats)

    def _check_model(self, model: str) -> None:
        if not self.allows_model(model):
            raise ApiError(
                403,
                f"API key '{self.name}' may not use model '{model}' "
                f"(allowed: {', '.join(self.limits.models or ())})",
                type="invalid_request_error",
                param="model",
                code="model_not_allowed",
            )

    async def acquire(self, model: str, tokens: int, now: float) -> Ticket:
        """Admit one request of about ``tokens`` tokens, across the gateways when the limits
        are shared; the ticket releases its slot and corrects its tokens. Raises ApiError 403
        for a model the key may not use and 429 (with Retry-After) over a limit."""
        lim = self.limits
        shared = self.shared
        if shared is not None and (lim.max_parallel is not None or lim.rpm or lim.tpm):
            self._check_model(model)
            counted = min(tokens, lim.tpm) if lim.tpm else 0
            got = await shared.take(
                self.name,
                max_parallel=lim.max_parallel,
                rpm=lim.rpm or None,
                tpm=lim.tpm or None,
                tokens=counted,
            )
            if isinstance(got, Refused):
                raise self._refusal(got, tokens)
            if got is not None:
                self.in_flight += 1
                return Ticket(self, counted, got)
        return Ticket(self, self.admit(model, tokens, now), None)

    def _refusal(self, refused: Refused, tokens: int) -> ApiError:
        lim = self.limits
        if refused.limit == "max_parallel":
            return _limited(
                f"API key '{self.name}' has {lim.max_parallel} requests in flight across the "
                f"gateways (max_parallel {lim.max_parallel})",
                refused.wait_s,
            )
        if refused.limit == "rpm":
            return _limited(
                f"API key '{self.name}' is over its {lim.rpm} requests per minute", refused.wait_s
            )
        return _limited(
            f"API key '{self.name}' is over its {lim.tpm} tokens per minute "
            f"(this request may use {tokens})",
            refused.wait_s,
        )

    def admit(self, model: str, tokens: int, now: float) -> int:
        """Take a slot in this process for one request of about ``tokens`` tokens; returns the
        tokens counted (:meth:`correct` them with what was used; :meth:`release` the slot when
        it ends). Raises ApiError 403 for a model the key may not use and 429 (with
        Retry-After) over a limit."""
        lim = self.limits
        self._check_model(model)
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
        return counted

    def release(self) -> None:
        """A request admitted by :meth:`admit` ended: free its slot."""
        self.in_flight = max(0, self.in_flight - 1)

    def correct(self, counted: int, used: int) -> None:
        """Count what the answer really used instead of what :meth:`admit` estimated."""
        bucket = self._tokens
        if bucket is None:
            return
        extra = counted - used
        if extra > 0:  # give back what it did not use
            bucket.tokens = min(bucket.capacity, bucket.tokens + extra)
        elif extra < 0:  # used more than estimated: the minute pays for it
            bucket.tokens -= -extra


class Ticket:
    """One admitted request: :meth:`release` when it ends (once), then :meth:`correct` its
    tokens with what the answer used. ``taken`` is what it holds in Redis (None: counted in
    this process)."""

    __slots__ = ("counted", "gate", "released", "taken")

    def __init__(self, gate: KeyGate, counted: int, taken: Taken | None) -> None:
        self.gate = gate
        self.counted = counted
        self.taken = taken
        self.released = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        gate, taken = self.gate, self.taken
        if taken is None:
            gate.release()
            return
        gate.in_flight = max(0, gate.in_flight - 1)
        if taken.slot is not None and gate.shared is not None:
            gate.shared.release_slot(gate.name, taken.slot)

    def correct(self, used: int) -> None:
        gate, taken = self.gate, self.taken
        if taken is None:
            gate.correct(self.counted, used)
        elif taken.tokens and gate.shared is not None:
            gate.shared.correct_tokens(gate.name, taken.minute, self.counted - used)
