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


@pytest.fixture(autouse=True)
def _private_state(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default ledgers (payments, reputation) go to a temporary folder, never to the real home."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("NOSTR_SWARM_HOME", str(home / "nostr-swarm"))
    monkeypatch.setenv("SWARM_REPUTATION", str(home / "reputation.sqlite"))
