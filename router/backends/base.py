"""The backend interface every LLM source implements: :class:`LmBackend`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol, Self, runtime_checkable

from ..request import NO_SAMPLING, LmRequest, Sampling, SwarmTerms
from ..types import LmResponse, Prompt, StreamChunk


@runtime_checkable
class _Closable(Protocol):
    def aclose(self) -> Awaitable[object]: ...


@asynccontextmanager
async def _closing(
    chunks: AsyncIterator[StreamChunk],
) -> AsyncIterator[AsyncIterator[StreamChunk]]:
    """``chunks``, closed on exit when it can be: an async generator's clean-up runs when the
    reader stops, not when it is garbage-collected. :meth:`LmBackend.send_stream` promises an
    async iterator, and a plain one has nothing to close."""
    try:
        yield chunks
    finally:
        if isinstance(chunks, _Closable):
            await chunks.aclose()


def _request(
    model: str,
    prompt: Prompt,
    max_tokens: int,
    sampling: Sampling,
    swarm: SwarmTerms | None,
    passthrough: Mapping[str, Any] | None,
) -> LmRequest:
    """The request :meth:`LmBackend.complete` and its streaming forms make of their arguments."""
    return LmRequest(
        model,
        prompt,
        max_tokens,
        sampling=sampling,
        swarm=swarm,
        passthrough={} if passthrough is None else passthrough,
    )


class LmBackend(ABC):
    """An async source of completions (a local server, a remote API, the Nostr swarm, a mock).

    Subclasses set ``name`` and implement :meth:`send`, which takes one typed
    :class:`~router.request.LmRequest`; streaming falls back to one chunk holding the whole
    completion unless :meth:`send_stream` is overridden. :meth:`complete`, :meth:`stream_chunks`
    and :meth:`stream` build the request from their arguments (keyword-only options: a
    misspelled one is a ``TypeError``). Backends raise
    ``router.errors.BackendError`` (or a subclass) for failures, with ``retryable`` set when asking
    again may help.
    """

    name: str = "backend"
    #: Latency the router assumes before it has measured any (latency-based strategies).
    expected_latency_ms: float = 500.0
    #: Cost per 1,000 tokens in USD the router assumes unless configured otherwise.
    cost_per_1k_tokens_usd: float = 0.0
    #: False until a backend that discovers its models (``refresh_models``) has done so once.
    models_known: bool = True

    def supported_models(self) -> list[str]:
        """The model names this backend serves (may be empty for catch-all backends)."""
        return []

    def supports_model(self, model: str) -> bool:
        return model in self.supported_models()

    @abstractmethod
    async def send(self, request: LmRequest) -> LmResponse:
        """Complete ``request``: its prompt (a string or chat messages) with at most
        ``max_tokens`` tokens, its sampling options, and what else it says (see
        :class:`~router.request.LmRequest`)."""

    async def send_stream(self, request: LmRequest) -> AsyncIterator[StreamChunk]:
        """Stream the completion as chunks; the last may carry usage and finish reason.
        Backends that cannot stream answer with one chunk holding the whole completion."""
        resp = await self.send(request)
        yield StreamChunk(resp.text, resp.usage, resp.finish_reason, swarm=resp.swarm)

    async def complete(
        self,
        model: str,
        prompt: Prompt,
        max_tokens: int = 256,
        *,
        sampling: Sampling = NO_SAMPLING,
        swarm: SwarmTerms | None = None,
        passthrough: Mapping[str, Any] | None = None,
    ) -> LmResponse:
        """:meth:`send` for a request made of these arguments."""
        return await self.send(_request(model, prompt, max_tokens, sampling, swarm, passthrough))

    async def stream_chunks(
        self,
        model: str,
        prompt: Prompt,
        max_tokens: int = 256,
        *,
        sampling: Sampling = NO_SAMPLING,
        swarm: SwarmTerms | None = None,
        passthrough: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[StreamChunk]:
        """:meth:`send_stream` for a request made of these arguments."""
        request = _request(model, prompt, max_tokens, sampling, swarm, passthrough)
        async with _closing(self.send_stream(request)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def stream(
        self,
        model: str,
        prompt: Prompt,
        max_tokens: int = 256,
        *,
        sampling: Sampling = NO_SAMPLING,
        swarm: SwarmTerms | None = None,
        passthrough: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[str]:
        """Stream the completion as text deltas."""
        request = _request(model, prompt, max_tokens, sampling, swarm, passthrough)
        async with _closing(self.send_stream(request)) as chunks:
            async for chunk in chunks:
                if chunk.text:
                    yield chunk.text

    async def health_check(self) -> bool:
        """True when the backend can take requests."""
        return True

    async def refresh_models(self) -> list[str]:
        """Ask the upstream which models it serves (backends that can discover them override)."""
        return self.supported_models()

    async def close(self) -> None:
        """Release connections. The backend may be used again afterwards (it reconnects)."""
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
