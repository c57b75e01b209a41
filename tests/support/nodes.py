"""Real provider nodes for tests: a mock backend, a settable clock, and the factory type."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from router.backends import MockBackend


class OffsetClock:
    """Wall-clock time plus an adjustable offset: a node started at real time can later be told
    that time has jumped ahead (expirations, invoice deadlines) without waiting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def mock_backend(model: str = "m1", reply: str = "Echo: {prompt}") -> MockBackend:
    return MockBackend("mock").with_model(model).with_response(reply).with_usage(7, 3)


NodeFactory = Callable[..., Any]
