"""Fixtures for provider tests: real ProviderNodes on the shared relay fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from client.nostr.keys import Keys
from provider.node import ProviderNode
from relay_mock import Relay
from tests.support.customer import Customer
from tests.support.nodes import NodeFactory, mock_backend


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
