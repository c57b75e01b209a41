"""Helpers for provider tests: start real ProviderNodes on the shared relay fixture."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from client.nostr.keys import Keys
from provider.node import ProviderNode
from relay_mock import Relay
from router.backends import MockBackend
from tests.provider.customer import Customer


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


@pytest.fixture
def start_node(relay: Relay) -> NodeFactory:
    """``async with start_node(backend=..., **kw) as node``: a ProviderNode on the relay."""

    @asynccontextmanager
    async def factory(
        backend: Any = None,
        *,
        relays: list[str] | None = None,
        keys: Keys | None = None,
        **kw: Any,
    ) -> AsyncIterator[ProviderNode]:
        kw.setdefault("connect_timeout", 3.0)
        node = ProviderNode(
            keys or Keys.generate(),
            relays or [relay.url],
            backend if backend is not None else mock_backend(),
            **kw,
        )
        async with node:
            yield node

    return factory


@pytest.fixture
async def customer(relay: Relay) -> AsyncIterator[Customer]:
    async with Customer([relay.url]) as c:
        yield c
