"""Start a gateway from a config dict on 127.0.0.1 port 0 and talk to it with the official
``openai`` client (retries off, so every error surfaces once)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai

from router.backends.mock import MockBackend
from router.gateway.adapters import Served
from router.gateway.app import Gateway
from router.gateway.config import parse_config


def config(data: dict[str, Any]) -> dict[str, Any]:
    """Test defaults: port 0, no retries, quick breaker, discovery only when asked."""
    out = {"refresh_interval": 0, **data}
    out.setdefault("server", {})["port"] = 0
    res = out.setdefault("resilience", {})
    res.setdefault("retry", {"max_attempts": 1})
    return out


_clients: dict[int, list[openai.AsyncOpenAI]] = {}


@asynccontextmanager
async def gateway(
    data: dict[str, Any], env: dict[str, str] | None = None
) -> AsyncIterator[Gateway]:
    gw = Gateway(parse_config(config(data), env=env or {}))
    await gw.start()
    try:
        yield gw
    finally:
        for c in _clients.pop(id(gw), []):
            await c.close()
        await gw.stop(grace_s=5)


def client(gw: Gateway, key: str = "unused") -> openai.AsyncOpenAI:
    """An openai client for ``gw``, closed when the ``gateway`` context ends. (Plain HTTP on
    127.0.0.1: ``verify=False`` skips loading the CA bundle, ~0.1 s per client.)"""
    http = openai.DefaultAsyncHttpxClient(verify=False)
    c = openai.AsyncOpenAI(
        base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20, http_client=http
    )
    _clients.setdefault(id(gw), []).append(c)
    return c


def mock_of(gw: Gateway, name: str) -> MockBackend:
    backend = gw.router.backends[name]
    assert isinstance(backend, Served) and isinstance(backend.inner, MockBackend)
    return backend.inner


class HeldMock(MockBackend):
    """A MockBackend whose calls wait at ``gate``; ``await arrivals(n)`` returns once n calls
    are waiting there."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.gate = asyncio.Event()
        self._arrived = asyncio.Condition()
        self.arrived = 0

    async def _wait(self) -> None:
        async with self._arrived:
            self.arrived += 1
            self._arrived.notify_all()
        await super()._wait()

    async def arrivals(self, n: int) -> None:
        async with self._arrived:
            await self._arrived.wait_for(lambda: self.arrived >= n)


def hold(gw: Gateway, name: str) -> HeldMock:
    """Replace backend ``name``'s mock by a HeldMock with the same models and answer."""
    served = gw.router.backends[name]
    assert isinstance(served, Served) and isinstance(served.inner, MockBackend)
    old = served.inner
    held = HeldMock(name).with_models(*old.supported_models()).with_response(old.response)
    held.usage = old.usage
    served.inner = held
    return held


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]
