"""Fixtures shared by the whole suite. Everything starts on 127.0.0.1 with port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from relay_mock import Relay


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    """A started relay_mock.Relay on 127.0.0.1 (fresh port, fixed seed); connect to ``relay.url``.

    Change ``relay.faults`` to misbehave; ``await relay.restart()`` keeps the port and events.
    """
    async with Relay(seed=0) as started:
        yield started
