"""What the gateway adds around the router: ``swarm/<model>`` requests stay on the swarm
backends (:class:`GatewayRouter`), and each backend is wrapped (:class:`Served`) so the gateway
can connect it before serving and refuse what it cannot answer.

The routing decision and the serving backend reach the handler with the answer itself
(``LmResponse.decision``/``backend``, ``LmStream.decision``/``backend``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..backends.base import LmBackend
from ..errors import InvalidRequest
from ..request import LmRequest
from ..router import LmRouter
from ..strategy import RoutingDecision
from ..types import EmbeddingInput, LmResponse, Prompt, StreamChunk
from .config import SWARM_PREFIX


class GatewayRouter(LmRouter):
    """An :class:`LmRouter` that keeps ``swarm/<model>`` requests on the swarm backends: a
    quorum-verified answer must not silently become an unverified one from the default or
    fallback backend."""

    #: Names of the swarm backends (set by the gateway's builder).
    swarm_backends: frozenset[str] = frozenset()

    def route(
        self, model: str, prompt: Prompt | None = None, max_tokens: int | None = None
    ) -> RoutingDecision:
        decision = super().route(model, prompt, max_tokens)
        if self.swarm_backends and model.startswith(SWARM_PREFIX):
            names = self.swarm_backends
            every = decision.candidates
            kept = [c for c in every if c.name in names]
            if kept and len(kept) < len(every):
                decision = RoutingDecision.fixed(model, kept, decision.score, decision.reason)
        return decision


class Served(LmBackend):
    """Wraps a backend the gateway serves: it refuses an embedding request for a backend that
    cannot compute embeddings, and gives the gateway a hook to connect the backend before
    serving (:meth:`open`).

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

    @property
    def models_known(self) -> bool:
        return self.inner.models_known

    @models_known.setter
    def models_known(self, value: bool) -> None:
        self.inner.models_known = value

    def supported_models(self) -> list[str]:
        return self.inner.supported_models()

    def supports_model(self, model: str) -> bool:
        return self.inner.supports_model(model)

    async def send(self, request: LmRequest) -> LmResponse:
        if type(request.prompt) is EmbeddingInput and not getattr(self.inner, "embeds", False):
            # a completion backend would answer an embedding request with text
            raise InvalidRequest(
                f"backend {self.name!r} cannot compute embeddings ({request.model!r})"
            )
        return await self.inner.send(request)

    def send_stream(self, request: LmRequest) -> AsyncIterator[StreamChunk]:
        return self.inner.send_stream(request)

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
