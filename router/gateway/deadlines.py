"""The gateway's request timeout, enforced by one periodic check instead of a timer per request.

A per-request ``asyncio.timeout`` schedules and cancels a loop timer on every request; the
request timeout is a safety net measured in seconds to minutes, so checking all requests in
flight every ``tick_s`` is precise enough and keeps the request path to two dict operations.
A request past its deadline has its task cancelled; the handler sees ``CancelledError``, asks
:meth:`Deadlines.expired` whether that was the reason, and answers 504.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Deadlines:
    __slots__ = ("_clock", "_due", "_late", "_task", "tick_s")

    def __init__(self, tick_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.tick_s = tick_s
        self._clock = clock
        self._due: dict[asyncio.Task[object], float] = {}
        self._late: set[asyncio.Task[object]] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, task: asyncio.Task[object], timeout_s: float) -> None:
        self._due[task] = self._clock() + timeout_s

    def discard(self, task: asyncio.Task[object]) -> None:
        self._due.pop(task, None)
        self._late.discard(task)

    def expired(self, task: asyncio.Task[object] | None) -> bool:
        """Whether ``task`` was cancelled for running past its deadline (and undo the
        cancellation, so the handler can still answer)."""
        if task is None or task not in self._late:
            return False
        self._late.discard(task)
        task.uncancel()
        return True

    def overdue(self, now: float) -> list[asyncio.Task[object]]:
        """Tasks past their deadline at ``now`` that were not cancelled yet (pure)."""
        return [t for t, due in self._due.items() if due <= now and t not in self._late]

    def check(self) -> int:
        """Cancel every overdue request; returns how many."""
        late = self.overdue(self._clock())
        for t in late:
            self._late.add(t)
            t.cancel()
        return len(late)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            if self._due:
                self.check()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
