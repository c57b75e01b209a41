"""Clocks that disagree inside one process, for clock-skew tests.

Nostr stamps every event with its author's wall clock (``created_at``, NIP-40 ``expiration``).
To give a customer and a provider different clocks in one event loop, the modules that read the
wall clock for the protocol (event stamps, job expirations, resubscription ``since``) read it
through :data:`OFFSET`, a context variable: a task started under :func:`skewed` (and every task
it starts) sees the wall clock moved by that many seconds. The relay and the ledger keep true time.

    with wall_clock_skew(monkeypatch):
        node = await skewed(+45, ProviderNode(..., clock=skewed_clock(+45)).start())
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
OFFSET: contextvars.ContextVar[float] = contextvars.ContextVar("wall_clock_offset", default=0.0)
_real_time = time.time
# Modules whose protocol timestamps come from time.time().
PATCHED = ("client.nostr.event", "client.customer.swarm", "client.net.relay")


class _SkewedTime:
    """Stands in for the ``time`` module inside the patched modules."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def time() -> float:
        return _real_time() + OFFSET.get()


def wall_clock_skew(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    for name in PATCHED:
        monkeypatch.setattr(importlib.import_module(name), "time", _SkewedTime())


def skewed_clock(offset: float) -> Callable[[], float]:
    return lambda: _real_time() + offset


async def skewed(offset: float, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` (and every task it starts) with the wall clock moved by ``offset`` s."""
    ctx = contextvars.copy_context()
    ctx.run(OFFSET.set, offset)
    return await asyncio.create_task(coro, context=ctx)
