"""An ASGI app served by uvicorn in the test's own event loop, on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn


@asynccontextmanager
async def uvicorn_serving(app: Any, http: str = "httptools", **options: Any) -> AsyncIterator[int]:
    """Serve ``app`` (lifespan on); yields the port. The socket listens before uvicorn starts,
    so a client may connect at once (uvicorn accepts once the app's startup is done)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        http=http,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        **options,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@asynccontextmanager
async def granian_serving(app: Any) -> AsyncIterator[int]:
    """Serve ``app`` on granian's embedded server (lifespan on); yields the port once the
    app's startup is done."""
    from granian.constants import HTTPModes, Interfaces
    from granian.server.embed import Server

    with socket.socket() as probe:  # granian binds by number
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = asyncio.Event()
    startup = app.startup

    async def announced() -> None:
        await startup()
        started.set()

    app.startup = announced
    server = Server(
        app,
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,
        websockets=False,
        log_level="error",  # type: ignore[arg-type]
    )
    task = asyncio.create_task(server.serve())
    try:
        await asyncio.wait_for(started.wait(), 30)
        yield port
    finally:
        server.stop()
        await asyncio.wait_for(task, 10)


SERVERS = {"uvicorn": uvicorn_serving, "granian": granian_serving}
