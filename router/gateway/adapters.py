"""What the gateway adds around the router: the routing decision and the serving backend of the
current request (for the response headers), and the ``swarm/<model>`` namespace.

Both are reported through context variables: the router runs a request inside the handler's task,
so a variable set during ``complete``/``stream_chunks`` is visible to the handler afterwards, with
no per-request objects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

from ..backends.base import LmBackend
from ..router import LmRouter
from ..strategy import RoutingDecision
from ..types import LmResponse, Prompt, StreamChunk
from .config import SWARM_PREFIX

#: The decision the router made for the current request.
current_decision: ContextVar[RoutingDecision | None] = ContextVar("decision", default=None)
#: The backend whose stream the current request is receiving.
serving_backend: ContextVar[str | None] = ContextVar("serving_backend", default=None)

#: Request parameters only the swarm understands; other backends never see them.
SWARM_PARAMS = ("quorum", "bid_sats")


class GatewayRouter(LmRouter):
    """An :class:`LmRouter` that remembers each request's routing decision for the headers."""

    def route(self, model: str) -> RoutingDecision:
        decision = super().route(model)
        current_decision.set(decision)
        return decision


class Served(LmBackend):
    """Wraps a backend: records which backend serves a stream, and for swarm backends maps
    ``swarm/<model>`` to ``<model>`` and passes the request's quorum and bid on.

    Everything the router reads about a backend (name, hints, models) is the inner backend's.
    """

    def __init__(self, inner: LmBackend, *, swarm: bool = False) -> None:
        self.inner = inner
        self.name = inner.name
        self.swarm = swarm
        self.expected_latency_ms = inner.expected_latency_ms
        self.cost_per_1k_tokens_usd = inner.cost_per_1k_tokens_usd

    @property  # type: ignore[override]
    def models_known(self) -> bool:
        return self.inner.models_known

    def supported_models(self) -> list[str]:
        models = self.inner.supported_models()
        if self.swarm:
            return [SWARM_PREFIX + m for m in models]
        return models

    def supports_model(self, model: str) -> bool:
        if self.swarm:
            return model.startswith(SWARM_PREFIX) and self.inner.supports_model(
                model[len(SWARM_PREFIX) :]
            )
        return self.inner.supports_model(model)

    def _args(self, model: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if self.swarm:
            if model.startswith(SWARM_PREFIX):
                model = model[len(SWARM_PREFIX) :]
            return model, params
        if "quorum" in params or "bid_sats" in params:
            params = {k: v for k, v in params.items() if k not in SWARM_PARAMS}
        return model, params

    async def complete(
        self, model: str, prompt: Prompt, max_tokens: int = 256, **params: Any
    ) -> LmResponse:
        model, params = self._args(model, params)
        resp = await self.inner.complete(model, prompt, max_tokens, **params)
        if self.swarm and resp.model and not resp.model.startswith(SWARM_PREFIX):
            resp.model = SWARM_PREFIX + resp.model
        return resp

    async def stream_chunks(
        self, model: str, prompt: Prompt, max_tokens: int = 256, **params: Any
    ) -> AsyncIterator[StreamChunk]:
        model, params = self._args(model, params)
        first = True
        async for chunk in self.inner.stream_chunks(model, prompt, max_tokens, **params):
            if first:
                serving_backend.set(self.name)
                first = False
            yield chunk

    async def health_check(self) -> bool:
        return await self.inner.health_check()

    async def refresh_models(self) -> list[str]:
        await self.inner.refresh_models()
        return self.supported_models()

    async def close(self) -> None:
        await self.inner.close()

    def __repr__(self) -> str:
        return f"Served({self.inner!r}, swarm={self.swarm})"
