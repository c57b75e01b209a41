"""Time sources the router's pure parts take as arguments, so tests control time.

A *clock* is any zero-argument callable returning seconds as a float (``time.monotonic`` by
default); a *sleeper* is an awaitable ``sleep(seconds)`` (``asyncio.sleep`` by default).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleeper = Callable[[float], Awaitable[None]]


class ManualClock:
    """A clock that only moves when told to: ``clock.advance(30)``."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self.now += seconds


class RecordingSleeper:
    """A sleeper that returns at once, remembers each requested delay and (optionally) advances a
    :class:`ManualClock` by it, so retry schedules can be tested without waiting."""

    def __init__(self, clock: ManualClock | None = None) -> None:
        self.delays: list[float] = []
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)
