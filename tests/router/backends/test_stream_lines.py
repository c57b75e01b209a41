"""Streamed lines on both upstream transports (our HTTP/1.1 client and aiohttp's): the same
split, wherever the server cuts its chunks, and the same cap on a line that never ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import NoReturn

import pytest

from router.backends.aiohttp_pool import AiohttpPool
from router.backends.http1 import Http1Pool, LineTooLong, capped_lines
from tests.support.raw_server import RawServer, Script, read_request

BODY = b"data: one\r\n\r\ndata: two\n\ndata: [DONE]\n\ntail without newline"
LINES = [b"data: one", b"", b"data: two", b"", b"data: [DONE]", b"", b"tail without newline"]


def chunked(body: bytes, size: int) -> Script:
    """A server that sends ``body`` in chunks of ``size`` bytes, then ends it."""

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for k in range(0, len(body), size):
            piece = body[k : k + size]
            w.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await w.drain()
        w.write(b"0\r\n\r\n")
        await w.drain()
        w.close()

    return script


POOLS = {"http1": Http1Pool, "aiohttp": AiohttpPool}


@pytest.mark.parametrize("transport", sorted(POOLS))
@pytest.mark.parametrize("size", [1, 3, 7, 1000])
async def test_lines_are_the_same_wherever_chunks_are_cut(transport: str, size: int) -> None:
    async with RawServer(chunked(BODY, size)) as srv:
        pool = POOLS[transport](srv.url)
        try:
            async with pool.stream("GET", "/") as answer:
                lines = [line async for line in answer.iter_lines()]
        finally:
            await pool.close()
    assert lines == LINES


@pytest.mark.parametrize("transport", sorted(POOLS))
async def test_a_line_that_never_ends_is_refused_at_the_cap(transport: str) -> None:
    async with RawServer(chunked(b"data: " + b"x" * 10_000, 500)) as srv:
        pool = POOLS[transport](srv.url, max_line_bytes=4096)
        try:
            with pytest.raises(LineTooLong, match="4096"):
                async with pool.stream("GET", "/") as answer:
                    async for _ in answer.iter_lines():
                        pass
        finally:
            await pool.close()


async def test_the_cap_is_checked_before_the_line_is_whole() -> None:
    """The split raises once the partial line passes the cap, without reading further."""
    read: list[bytes] = []

    async def endless() -> AsyncIterator[bytes]:
        while True:
            read.append(b"z" * 100)
            yield read[-1]

    def too_long() -> NoReturn:
        raise LineTooLong("too long")

    with pytest.raises(LineTooLong):
        async for _ in capped_lines(endless(), 1000, too_long):
            pass
    assert len(read) == 11  # 1,100 bytes buffered: the first chunk past the cap
