"""The backend interface (router/backends/base.py): what its streaming helpers do with the async
iterator a backend's ``send_stream`` returns."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

from router.backends import LmBackend
from router.request import LmRequest
from router.types import LmResponse, StreamChunk


class _Chunks:
    """A plain async iterator (no ``aclose``): what ``send_stream`` promises, and no more."""

    def __init__(self, texts: list[str]) -> None:
        self._texts = texts

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> StreamChunk:
        if not self._texts:
            raise StopAsyncIteration
        return StreamChunk(text=self._texts.pop(0))


class _PlainIteratorBackend(LmBackend):
    name = "plain"

    async def send(self, request: LmRequest) -> LmResponse:
        return LmResponse(text="ab", model=request.model)

    def send_stream(self, request: LmRequest) -> AsyncIterator[StreamChunk]:
        return _Chunks(["a", "", "b"])


class _GeneratorBackend(LmBackend):
    name = "generator"

    def __init__(self) -> None:
        self.closed = False

    async def send(self, request: LmRequest) -> LmResponse:
        return LmResponse(text="ab", model=request.model)

    async def send_stream(self, request: LmRequest) -> AsyncIterator[StreamChunk]:
        try:
            for text in ("a", "b", "c"):
                yield StreamChunk(text=text)
        finally:
            self.closed = True


async def test_streams_from_a_backend_whose_stream_is_a_plain_async_iterator() -> None:
    backend = _PlainIteratorBackend()
    chunks = [c.text async for c in backend.stream_chunks("m", "x")]
    assert chunks == ["a", "", "b"]
    assert [t async for t in backend.stream("m", "x")] == ["a", "b"]


async def test_a_reader_that_stops_early_closes_the_backends_generator_at_once() -> None:
    backend = _GeneratorBackend()
    stream = backend.stream("m", "x")
    assert isinstance(stream, AsyncGenerator)
    assert await anext(stream) == "a"
    assert not backend.closed
    await stream.aclose()
    assert backend.closed
