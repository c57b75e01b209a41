"""OpenAICompatBackend streams reuse their upstream connection even when the chunked terminator
comes after ``data: [DONE]`` in a later packet (the backend stops reading at ``[DONE]``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from aiohttp import web

from router.backends import OpenAICompatBackend
from tests.support.raw_server import RawServer
from tests.support.upstreams import FakeOpenAI

TERMINATOR = b"0\r\n\r\n"


@dataclass
class CountingOpenAI(FakeOpenAI):
    """FakeOpenAI that records the peer (address, port) of every chat request's connection."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peers: set[Any] = set()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername"))
        return await super()._chat(request)


class TerminatorHoldingRelay(RawServer):
    """A TCP relay on 127.0.0.1 in front of ``upstream_port`` that holds back every chunked
    answer's terminator until ``release`` is set, so the terminator reaches the client in a
    later packet than ``data: [DONE]``, as it often does over a real network."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__(self._relay)
        self.upstream_port = upstream_port
        self.release = asyncio.Event()

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        await asyncio.gather(
            self._pipe(reader, up_writer, hold=False),
            self._pipe(up_reader, writer, hold=True),
        )

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if hold and (data == TERMINATOR or data.endswith(b"\r\n" + TERMINATOR)):
                    writer.write(data[: -len(TERMINATOR)])
                    await writer.drain()
                    await self.release.wait()
                    data = TERMINATOR
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def _collect(backend: OpenAICompatBackend) -> list[str]:
    return [c.text async for c in backend.stream_chunks("m", "x", 10)]


async def test_streams_reuse_the_connection_when_the_terminator_comes_late() -> None:
    async with CountingOpenAI(reply="one two three") as up:
        port = int(up.base_url.rsplit(":", 1)[1])
        async with TerminatorHoldingRelay(port) as relay:
            # one slot: the second stream waits for the first one's connection to finish its
            # linger rather than opening another while the terminator is on its way
            async with OpenAICompatBackend(relay.url, max_connections=1) as backend:
                first = await asyncio.wait_for(_collect(backend), 5)
                relay.release.set()  # the first answer's terminator goes out only now
                second = await asyncio.wait_for(_collect(backend), 5)
            assert "".join(first) == "".join(second) == "one two three"
            assert up.stream_calls == 2
            assert len(up.peers) == 1 and relay.accepted == 1


async def test_back_to_back_streams_use_one_connection() -> None:
    async with CountingOpenAI(reply="a b c") as up, OpenAICompatBackend(up.base_url) as backend:
        for _ in range(3):
            assert "".join([c.text async for c in backend.stream_chunks("m", "x", 10)]) == "a b c"
        assert up.stream_calls == 3 and len(up.peers) == 1


CHAT_ANSWER = (
    b'{"id":"c","object":"chat.completion","model":"m","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)


@pytest.mark.parametrize("transport", ["http1", "aiohttp"])
async def test_a_completion_is_not_sent_twice_when_a_reused_connection_drops(
    transport: Literal["http1", "aiohttp"],
) -> None:
    """The upstream takes the second completion on the kept-alive connection and hangs up
    without answering: a paid upstream may have billed it, so it is not sent again."""
    from router.errors import BackendError
    from tests.support.raw_server import RawServer as Raw

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await srv.read(r, i)
        w.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(CHAT_ANSWER), CHAT_ANSWER)
        )
        await w.drain()
        await srv.read(r, i)  # and hang up

    async with (
        Raw(script) as srv,
        OpenAICompatBackend(srv.url, models=["m"], transport=transport) as backend,
    ):
        assert (await backend.complete("m", "x", 5)).text == "hi"
        try:
            await asyncio.wait_for(backend.complete("m", "x", 5), 5)
        except BackendError as exc:
            assert exc.retryable  # the router decides whether to ask again
            assert transport == "aiohttp" or "not sent again" in str(exc)
        else:
            raise AssertionError("the dropped completion did not fail")
        assert [h[:5] for _, h in srv.heads] == [b"POST ", b"POST "]
        assert srv.accepted == 1


@pytest.mark.parametrize("transport", ["http1", "aiohttp"])
async def test_both_transports_complete_and_stream(transport: Literal["http1", "aiohttp"]) -> None:
    async with (
        CountingOpenAI(reply="a b c") as up,
        OpenAICompatBackend(up.base_url, transport=transport) as backend,
    ):
        assert backend.transport == transport
        assert (await backend.complete("m", "x", 10)).text == "a b c"
        assert "".join([c.text async for c in backend.stream_chunks("m", "x", 10)]) == "a b c"
        assert await backend.refresh_models()


def test_an_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="transport"):
        OpenAICompatBackend("http://127.0.0.1:1", transport="curl")  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["http1", "aiohttp"])
async def test_no_transport_asks_for_compression(transport: Literal["http1", "aiohttp"]) -> None:
    """Answers are read as they arrive: neither client may invite a gzip body it would not
    undo."""
    from tests.support.raw_server import RawServer as Raw

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await srv.read(r, i)
        w.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(CHAT_ANSWER), CHAT_ANSWER)
        )
        await w.drain()

    async with (
        Raw(script) as srv,
        OpenAICompatBackend(srv.url, models=["m"], transport=transport) as backend,
    ):
        assert (await backend.complete("m", "x", 5)).text == "hi"
        assert b"accept-encoding" not in srv.heads[0][1].lower()
