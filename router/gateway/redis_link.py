"""The gateway's link to Redis (``state.redis``): one asyncio client for the key limits, the
breakers and the response cache, with short timeouts and what happens when Redis is away.

Redis holds counters that may be lost: when a call fails, every user of the link falls back to
its own process (limits count per process, breakers trip per process, the cache is the
process's), the link says so once, and the next call after ``retry_s`` tries Redis again. Money
never depends on it (budgets live in the state database).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger("router.gateway.redis")

T = TypeVar("T")

MAX_CONNECTIONS = 64  # per gateway; a call waits for a free one within the timeout
ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError, TimeoutError)


class RedisLink:
    """``await link.call(lambda r: r.get(key))``: the result, or None when Redis is away (or
    just failed). ``spawn`` runs a call in the background (giving a slot back must not wait)."""

    def __init__(self, url: str, *, retry_s: float = 5.0, timeout_s: float = 0.5) -> None:
        self.url = url
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        #: Tells this gateway's messages from the others' (breaker transitions, probe locks).
        self.origin = secrets.token_hex(8)
        self.client: Any = redis.asyncio.Redis(
            connection_pool=redis.asyncio.BlockingConnectionPool.from_url(
                url,
                max_connections=MAX_CONNECTIONS,
                timeout=timeout_s,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                # One immediate retry on a broken connection (a pooled one from before a
                # restart), none on a timeout: the caller falls back instead of waiting.
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            )
        )
        self._down_until = 0.0
        self._down = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False

    @property
    def available(self) -> bool:
        """False while Redis is known to be away (until the next retry)."""
        return not self._down or time.monotonic() >= self._down_until

    def retry_in(self) -> float:
        """Seconds until the next try while Redis is away (0: try now)."""
        if not self._down:
            return 0.0
        return max(0.0, self._down_until - time.monotonic())

    @property
    def down(self) -> bool:
        """Whether the last call failed (the gateway runs per process)."""
        return self._down

    def failed(self, exc: BaseException) -> None:
        """A call failed: fall back for ``retry_s`` (with one warning per outage)."""
        if not self._down:
            log.warning(
                "Redis at %s is unreachable (%s): key limits, breakers and the response cache "
                "work per process until it is back",
                self.url,
                str(exc) or type(exc).__name__,
            )
        self._down = True
        self._down_until = time.monotonic() + self.retry_s

    def answered(self) -> None:
        """A call succeeded: shared again after an outage."""
        if self._down:
            self._down = False
            log.warning(
                "Redis at %s answers again: limits, breakers and cache are shared", self.url
            )

    async def call(self, fn: Callable[[Any], Awaitable[T]]) -> T | None:
        """``fn(client)`` within the timeout; None when Redis is away or the call fails."""
        if self.closed or not self.available:
            return None
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await fn(self.client)
        except ERRORS as exc:
            self.failed(exc)
            return None
        self.answered()
        return result

    def spawn(self, fn: Callable[[Any], Awaitable[Any]]) -> None:
        """Run ``fn(client)`` in the background (its failure counts as Redis away)."""
        if self.closed or not self.available:
            return
        try:
            task = asyncio.get_running_loop().create_task(self.call(fn))
        except RuntimeError:  # no loop (a synchronous caller): nothing to give back through
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.closed = True
        try:
            await self.client.aclose()
        except ERRORS:
            pass
