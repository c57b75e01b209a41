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
from ..errors import InvalidRequest
from ..router import LmRouter
from ..strategy import RoutingDecision
from ..types import EmbeddingInput, LmResponse, Prompt, StreamChunk
from .config import SWARM_PREFIX

#: The decision the router made for the current request.
current_decision: ContextVar[RoutingDecision | None] = ContextVar("decision", default=None)
#: The backend whose stream the current request is receiving.
serving_backend: ContextVar[str | None] = ContextVar("serving_backend", default=None)

#: Request parameters only the swarm understands; other backends never see them.
SWARM_PARAMS = ("quorum", "bid_sats", "hold")


class GatewayRouter(LmRouter):
    """An :class:`LmRouter` that remembers each request's routing decision for the headers, and
    keeps ``swarm/<model>`` requests on the swarm backends: a quorum-verified answer must not
    silently become an unverified one from the default or fallback backend."""

    #: Names of the swarm backends (set by the gateway's builder).
    swarm_backends: frozenset[str] = frozenset()

    def route(self, model: str) -> RoutingDecision:
        decision = super().route(model)
        if self.swarm_backends and model.startswith(SWARM_PREFIX):
            names = self.swarm_backends
            every = decision.candidates
            kept = [c for c in every if c.name in names]
            if kept and len(kept) < len(every):
                decision = RoutingDecision.fixed(model, kept, decision.score, decision.reason)
        current_decision.set(decision)
        return decision


class Served(LmBackend):
    """Wraps a backend to record which backend serves a stream, and to keep the swarm's request
    parameters (``quorum``, ``bid_sats``) away from backends that would pass them upstream.

    Everything the router reads about a backend (name, hints, models) is the inner backend's.
    """

    def __init__(self, inner: LmBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self.expected_latency_ms = inner.expected_latency_ms
        self.cost_per_1k_tokens_usd = inner.cost_per_1k_tokens_usd
        self.owns_deadline = bool(getattr(inner, "owns_deadline", False))
        fn = getattr(inner, "max_cost_msats", None)
        if fn is not None:
            self.max_cost_msats = fn

    @property  # type: ignore[override]
    def models_known(self) -> bool:
        return self.inner.models_known

    def supported_models(self) -> list[str]:
        return self.inner.supported_models()

    def supports_model(self, model: str) -> bool:
        return self.inner.supports_model(model)

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        if "quorum" in params or "bid_sats" in params or "hold" in params:
            return {k: v for k, v in params.items() if k not in SWARM_PARAMS}
        return params

    async def complete(
        self, model: str, prompt: Prompt, max_tokens: int = 256, **params: Any
    ) -> LmResponse:
        if type(prompt) is EmbeddingInput and not getattr(self.inner, "embeds", False):
            # a completion backend would answer an embedding request with text
            raise InvalidRequest(f"backend {self.name!r} cannot compute embeddings ({model!r})")
        return await self.inner.complete(model, prompt, max_tokens, **self._params(params))

    async def stream_chunks(
        self, model: str, prompt: Prompt, max_tokens: int = 256, **params: Any
    ) -> AsyncIterator[StreamChunk]:
        first = True
        async for chunk in self.inner.stream_chunks(
            model, prompt, max_tokens, **self._params(params)
        ):
            if first:
                serving_backend.set(self.name)
                first = False
            yield chunk

    async def health_check(self) -> bool:
        return await self.inner.health_check()

    async def refresh_models(self) -> list[str]:
        await self.inner.refresh_models()
        return self.supported_models()

    async def open(self) -> None:
        """Connect what the backend needs before serving (the swarm's relays)."""

    async def close(self) -> None:
        await self.inner.close()

    def __repr__(self) -> str:
        return f"Served({self.inner!r})"
