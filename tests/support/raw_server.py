"""A raw TCP server on 127.0.0.1 for HTTP edge cases aiohttp will not produce: each connection
runs a script (stale keep-alive, odd framing, bad bytes, relays that hold bytes back)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Self

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One request's head and body, or None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return head, body


class RawServer:
    """``asyncio.start_server`` on 127.0.0.1 port 0; connection number i runs ``script(r, w, i)``.
    ``heads`` records every request head read through ``self.read``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.accepted = 0
        self.heads: list[tuple[int, bytes]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def read(self, reader: asyncio.StreamReader, conn: int) -> tuple[bytes, bytes] | None:
        got = await read_request(reader)
        if got is not None:
            self.heads.append((conn, got[0]))
        return got

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        index = self.accepted
        self.accepted += 1
        try:
            await self.script(reader, writer, index)
        except ConnectionError:
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
