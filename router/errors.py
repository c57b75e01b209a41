"""Errors the router raises.

Everything derives from ``client.nostr.errors.NostrSwarmError``. The errors the swarm side raises
(``QuorumNotReached``, ``BudgetExceeded``, ``NoProvidersAvailable``) are defined in
``client.nostr.errors`` and re-exported here, so ``router.errors`` is the one place a user imports
from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from client.nostr.errors import (
    BudgetExceeded,
    NoProvidersAvailable,
    NostrSwarmError,
    QuorumNotReached,
)

__all__ = [
    "AllProvidersFailed",
    "BackendError",
    "BackendNotFound",
    "BudgetExceeded",
    "CircuitBreakerOpen",
    "InvalidRequest",
    "NoProvidersAvailable",
    "PaidFailure",
    "QuorumNotReached",
    "RateLimited",
    "RouterError",
    "StreamInterrupted",
]


class RouterError(NostrSwarmError):
    """Base of the router's own errors."""


class InvalidRequest(RouterError, ValueError):
    """The caller's request is malformed (empty model, bad messages, max_tokens < 1, ...)."""


class BackendNotFound(RouterError, LookupError):
    """No backend is routed to, supports, or defaults for ``model``."""

    def __init__(self, model: str) -> None:
        super().__init__(f"no backend found for model {model!r}")
        self.model = model


class BackendError(RouterError):
    """A backend failed to complete a request.

    ``retryable`` says whether asking the same backend again may succeed (timeouts, connection
    errors, HTTP 408/429/5xx); ``retry_after`` is the server's Retry-After in seconds, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str | None = None,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.backend = backend
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        #: The upstream's own error object (OpenAI's ``{"message", "type", "param", "code"}``),
        #: so a caller's mistake can be answered as the upstream worded it.
        self.detail = detail


class PaidFailure(BackendError):
    """An attempt that failed after money moved (a swarm job whose providers were paid in
    advance and then did not agree). Never retried, never failed over: another job would pay
    again. ``msats_paid`` and ``msats_unknown`` say what left, or may have left, the wallet."""

    def __init__(
        self, message: str, *, backend: str | None, msats_paid: int, msats_unknown: int
    ) -> None:
        super().__init__(message, backend=backend, retryable=False)
        self.msats_paid = msats_paid
        self.msats_unknown = msats_unknown


class RateLimited(BackendError):
    """A rate limit refused the request: the router's own token bucket or concurrency cap, or the
    upstream's HTTP 429. ``retry_after`` says when capacity is expected back, in seconds."""

    def __init__(
        self,
        message: str,
        *,
        backend: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(
            message, backend=backend, status=status, retryable=True, retry_after=retry_after
        )


class CircuitBreakerOpen(RouterError):
    """Every backend that could serve the request has its circuit breaker open."""

    def __init__(self, backends: str | list[str], retry_after: float | None = None) -> None:
        names = [backends] if isinstance(backends, str) else list(backends)
        super().__init__(f"circuit breaker open for {', '.join(names)}")
        self.backends = names
        self.retry_after = retry_after


class AllProvidersFailed(BackendError):
    """Every backend in the fallback chain was tried and failed. ``errors`` maps backend name to
    the last error it raised, in the order they were tried."""

    def __init__(self, errors: Mapping[str, BaseException]) -> None:
        self.errors = dict(errors)
        detail = "; ".join(f"{name}: {type(e).__name__}: {e}" for name, e in self.errors.items())
        super().__init__(f"all providers failed ({detail})")


class StreamInterrupted(BackendError):
    """A streamed completion failed after text had been delivered, so it could not fail over.
    ``text_so_far`` holds what the caller already received."""

    def __init__(self, message: str, *, backend: str | None = None, text_so_far: str = "") -> None:
        super().__init__(message, backend=backend, retryable=False)
        self.text_so_far = text_so_far
