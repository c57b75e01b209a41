"""Which HTTP answer each router error becomes (pure: an exception in, an ApiError out).

- the caller's mistakes: 400; unknown model: 404
- rate limits (the router's own or the upstream's 429): 429 with Retry-After
- every candidate's breaker open, no providers: 503 with Retry-After
- timeouts (upstream, the gateway's own, no quorum in time): 504
- any other upstream failure: 502
"""

from __future__ import annotations

import asyncio
import math

from client.nostr.errors import BudgetExceeded, NoProvidersAvailable, PaymentError, QuorumNotReached

from ..errors import (
    AllProvidersFailed,
    BackendError,
    BackendNotFound,
    CircuitBreakerOpen,
    InvalidRequest,
    PaidFailure,
    RateLimited,
    StreamInterrupted,
)
from ..retry import is_caller_error
from ..state_db import StateUnavailable
from .errors import ApiError


def _retry_after(seconds: float | None) -> dict[str, str] | None:
    if seconds is None or not math.isfinite(seconds):
        return None
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, QuorumNotReached)):
        return True
    if isinstance(exc, BackendError):
        if exc.status in (408, 504):
            return True
        cause = exc.__cause__ or exc.__context__
        if cause is not None and isinstance(cause, (TimeoutError, asyncio.TimeoutError)):
            return True
        return exc.status is None and "no answer within" in str(exc)
    return False


def _upstream(exc: BackendError) -> ApiError:
    """A single backend's failure."""
    status = exc.status
    if isinstance(exc, RateLimited):
        return ApiError(
            429,
            f"Rate limit reached: {exc}",
            type="requests",
            code="rate_limit_exceeded",
            headers=_retry_after(exc.retry_after),
        )
    if _is_timeout(exc):
        return ApiError(
            504,
            f"The upstream did not answer in time: {exc}",
            type="timeout",
            code="upstream_timeout",
        )
    if is_caller_error(exc):
        # The upstream refused the request itself: the caller's to fix, answered as worded.
        assert status is not None
        d = exc.detail or {}
        code = d.get("code")
        return ApiError(
            status,
            str(d.get("message") or f"The upstream rejected the request: {exc}"),
            type=str(d.get("type") or "invalid_request_error"),
            param=d.get("param") if isinstance(d.get("param"), str) else None,
            code=code if isinstance(code, str) else "upstream_rejected",
        )
    if status == 404:
        return ApiError(
            404,
            f"The upstream does not know the model: {exc}",
            code="model_not_found",
            param="model",
        )
    if status == 413:
        return ApiError(
            413, f"The upstream says the request is too large: {exc}", code="request_too_large"
        )
    return ApiError(502, f"The upstream failed: {exc}", type="server_error", code="upstream_error")


def api_error(exc: BaseException) -> ApiError:
    """The answer for an exception raised while serving a completion."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidRequest):
        return ApiError(400, str(exc))
    if isinstance(exc, BackendNotFound):
        return ApiError(
            404,
            f"The model '{exc.model}' does not exist or no backend serves it",
            param="model",
            code="model_not_found",
        )
    if isinstance(exc, CircuitBreakerOpen):
        return ApiError(
            503,
            f"No backend can take the request now ({exc}); try again later",
            type="server_error",
            code="backend_unavailable",
            headers=_retry_after(exc.retry_after),
        )
    if isinstance(exc, NoProvidersAvailable):
        return ApiError(
            503, f"No providers available: {exc}", type="server_error", code="no_providers"
        )
    if isinstance(exc, StateUnavailable):
        return ApiError(
            503,
            f"The gateway's state store is unavailable, so nothing that costs money is served "
            f"now; try again shortly ({exc})",
            type="server_error",
            code="state_unavailable",
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, PaidFailure):
        return ApiError(
            504,
            f"The swarm did not agree in time: {exc}",
            type="timeout",
            code="quorum_not_reached",
        )
    if isinstance(exc, QuorumNotReached):
        return ApiError(
            504,
            f"The swarm did not agree in time: {exc}",
            type="timeout",
            code="quorum_not_reached",
        )
    if isinstance(exc, BudgetExceeded):
        return ApiError(
            429,
            f"Swarm budget exceeded: {exc}",
            type="insufficient_quota",
            code="insufficient_quota",
        )
    if isinstance(exc, PaymentError):
        return ApiError(
            502, f"Paying the swarm failed: {exc}", type="server_error", code="payment_failed"
        )
    if isinstance(exc, StreamInterrupted):
        return ApiError(502, str(exc), type="server_error", code="stream_interrupted")
    if isinstance(exc, AllProvidersFailed):
        errors = list(exc.errors.values())
        if errors and all(_is_timeout(e) for e in errors):
            return ApiError(
                504, f"Every backend timed out: {exc}", type="timeout", code="upstream_timeout"
            )
        if errors and all(isinstance(e, (RateLimited, CircuitBreakerOpen)) for e in errors):
            waits = [w for e in errors if (w := getattr(e, "retry_after", None))]
            return ApiError(
                503,
                f"Every backend is busy or unavailable: {exc}",
                type="server_error",
                code="backend_unavailable",
                headers=_retry_after(min(waits) if waits else None),
            )
        return ApiError(
            502, f"Every backend failed: {exc}", type="server_error", code="upstream_error"
        )
    if isinstance(exc, BackendError):
        return _upstream(exc)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return ApiError(
            504,
            "The request took longer than the gateway allows",
            type="timeout",
            code="gateway_timeout",
        )
    return ApiError(
        500, "Internal error in the gateway", type="server_error", code="internal_error"
    )
