"""Turning HTTP statuses and transport failures into the router's typed errors (pure)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from ..errors import BackendError, RateLimited
from ..retry import parse_retry_after

# Statuses where asking again later may succeed.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def error_message(body: str) -> str:
    """The human message inside an error body: OpenAI's ``{"error": {"message"}}``, Ollama's
    ``{"error": "..."}``, or the (shortened) text itself."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurd nesting
        return body.strip()[:300] or "(empty body)"
    if isinstance(obj, dict):
        err = obj.get("error", obj.get("detail", obj.get("message")))
        if isinstance(err, dict):
            msg = err.get("message")
            if isinstance(msg, str):
                return msg
        if isinstance(err, str):
            return err
    return body.strip()[:300]


def http_error(
    backend: str, status: int, body: str, headers: Mapping[str, str], now_epoch: float | None = None
) -> BackendError:
    """The error for a non-2xx answer. 429 becomes ``RateLimited``; Retry-After is kept."""
    now = time.time() if now_epoch is None else now_epoch
    retry_after = parse_retry_after(headers.get("Retry-After"), now)
    message = f"{backend}: HTTP {status}: {error_message(body)}"
    if status == 429:
        return RateLimited(message, backend=backend, retry_after=retry_after, status=status)
    return BackendError(
        message,
        backend=backend,
        status=status,
        retryable=status in RETRYABLE_STATUSES,
        retry_after=retry_after,
        detail=error_detail(body),
    )


def error_detail(body: str) -> dict[str, Any] | None:
    """OpenAI's error object inside an error body (``{"error": {...}}``), if it is one."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return None
    err = obj.get("error") if isinstance(obj, dict) else None
    if not isinstance(err, dict) or not isinstance(err.get("message"), str):
        return None
    return {k: err.get(k) for k in ("message", "type", "param", "code")}


def transport_error(backend: str, exc: BaseException) -> BackendError:
    """The error for a connection that failed, was reset, or timed out (all retryable)."""
    if isinstance(exc, TimeoutError):
        return BackendError(f"{backend}: timed out", backend=backend, retryable=True)
    detail = str(exc) or type(exc).__name__
    return BackendError(f"{backend}: connection failed: {detail}", backend=backend, retryable=True)
