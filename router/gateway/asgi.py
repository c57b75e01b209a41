"""The gateway served by any ASGI server (uvicorn, granian, hypercorn): :class:`AsgiApp`.

Each ASGI HTTP request becomes the same :class:`~.http_server.HttpRequest` the built-in server
makes, and the app's :class:`~.http_server.HttpResponse` or :class:`~.http_server.ResponseStream`
goes back as ASGI messages, so one app runs on either. What the built-in server checks, this
adapter checks too: the request head (``max_head_bytes``, 431) and body (``max_body_bytes``,
413, as soon as Content-Length says so or while reading); answer headers through the same rules
(:func:`~.http_server.answer_headers`: framing and hop-by-hop headers or CR/LF are refused, a 500
for a whole answer, :class:`~.http_server.HeaderError` for a stream; ``Connection: close`` is
passed on for the server to honour). The framing is the ASGI server's: the adapter gives a whole
answer its Content-Length and leaves a stream without one (chunked on HTTP/1.1).

A client that leaves mid-stream is seen through ``http.disconnect`` (or a failing ``send``):
the stream's next write raises ConnectionResetError, as on the built-in server. An app that
fails after its stream started has its exception passed to the ASGI server, which cuts the
connection without ending the body; before that, the client gets a JSON 500.

Run the gateway under an ASGI server with the config file in ``SWARM_GATEWAY_CONFIG``::

    SWARM_GATEWAY_CONFIG=config.yaml uvicorn --factory router.gateway.asgi:app_from_env
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .http_server import (
    App,
    HeaderError,
    HttpRequest,
    HttpResponse,
    ResponseStream,
    answer_headers,
    error_body,
    internal_error,
)

if TYPE_CHECKING:
    from .app import Gateway
    from .config import GatewayConfig

log = logging.getLogger("router.gateway.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CONFIG_ENV = "SWARM_GATEWAY_CONFIG"
_JSON = [(b"content-type", b"application/json")]
_CLOSE = (b"connection", b"close")


def _error(status: int, message: str, code: str) -> tuple[int, bytes]:
    return status, error_body(status, message, code)


def _encode(items: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1", "replace")) for name, value in items]


class _Exchange:
    """One request's way back to the ASGI server: starts its stream, watches for the client
    leaving once it streams."""

    __slots__ = ("gone", "receive", "send", "started", "stream", "watch")

    def __init__(self, receive: Receive, send: Send) -> None:
        self.receive = receive
        self.send = send
        self.started = False
        self.gone = False
        self.stream: _AsgiStream | None = None
        self.watch: asyncio.Task[None] | None = None

    async def start_stream(
        self, request: HttpRequest, status: int, headers: dict[str, str]
    ) -> ResponseStream:
        if self.gone:
            raise ConnectionResetError("the client closed the connection")
        if self.started:
            raise RuntimeError("this request's answer has started already")
        items, close = answer_headers(headers.items())
        raw = _encode(items)
        if close:
            raw.append(_CLOSE)
        self.started = True
        try:
            await self.send({"type": "http.response.start", "status": status, "headers": raw})
        except OSError as exc:
            self.gone = True
            raise ConnectionResetError("the client closed the connection") from exc
        # the body was read whole: the next message is http.disconnect, when the client leaves
        self.watch = asyncio.create_task(self._watch())
        self.stream = _AsgiStream(self)
        return self.stream

    async def _watch(self) -> None:
        message = await self.receive()
        if message.get("type") == "http.disconnect":
            self.gone = True

    def close(self) -> None:
        if self.watch is not None and not self.watch.done():
            self.watch.cancel()


class _AsgiStream(ResponseStream):
    __slots__ = ("_x",)

    def __init__(self, exchange: _Exchange) -> None:
        super().__init__()
        self._x = exchange

    async def write(self, data: bytes) -> None:
        x = self._x
        if x.gone:
            raise ConnectionResetError("the client closed the connection")
        if self.done:
            raise RuntimeError("the stream has ended")
        if not data:
            return
        try:
            await x.send({"type": "http.response.body", "body": data, "more_body": True})
        except OSError as exc:  # ASGI 2.4: a server may raise an OSError once the client left
            x.gone = True
            raise ConnectionResetError("the client closed the connection") from exc
        # A server may drop writes to a client that left without waiting (uvicorn does): give
        # the watcher its turn, or a stream that never waits would never learn of it.
        await asyncio.sleep(0)

    async def write_eof(self) -> None:
        if self.done:
            return
        self.done = True
        if self._x.gone:
            return
        try:
            await self._x.send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            self._x.gone = True


class AsgiApp:
    """An ASGI 3 application serving ``app`` (``app(request) -> HttpResponse | None``, as for
    :class:`~.http_server.HttpServer`). ``startup()`` and ``shutdown()`` run at the ASGI
    lifespan's start and end; a subclass fills them in."""

    def __init__(
        self,
        app: App | None,
        *,
        max_body_bytes: int = 1 << 20,
        max_head_bytes: int = 64 * 1024,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_head_bytes = max_head_bytes

    async def startup(self) -> None:
        """Called once before the first request (ASGI lifespan startup)."""

    async def shutdown(self) -> None:
        """Called once after the last request (ASGI lifespan shutdown)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1003})
        else:
            raise ValueError(f"unsupported ASGI scope type {kind!r}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("gateway start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                try:
                    await self.shutdown()
                except Exception as exc:
                    log.exception("gateway shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.app
        if app is None:
            await self._send_error(
                send, *_error(503, "The gateway is starting or stopping", "unavailable")
            )
            return
        headers: dict[str, str] = {}
        head = 0
        for raw_name, raw_value in scope["headers"]:
            head += len(raw_name) + len(raw_value) + 4
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            old = headers.get(name)
            headers[name] = value if old is None else f"{old}, {value}"
        raw_path: bytes | None = scope.get("raw_path")
        path = (
            raw_path.decode("latin-1") if raw_path else quote(scope["path"], safe="/%:@!$&'()*+,;=")
        )
        query: bytes = scope.get("query_string") or b""
        target = f"{path}?{query.decode('latin-1')}" if query else path
        head += len(target)
        if head > self.max_head_bytes:
            await self._send_error(
                send,
                *_error(431, "The request line and headers are too large", "headers_too_large"),
            )
            return
        limit = self.max_body_bytes
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            detail = f"Request body of {int(length)} bytes is larger than the limit of {limit}"
            await self._send_error(send, *_error(413, detail, "request_too_large"))
            return
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before its request was whole: nobody to answer
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    text = f"Request body is larger than the limit of {limit} bytes"
                    await self._send_error(send, *_error(413, text, "request_too_large"))
                    return
                parts.append(chunk)
            if not message.get("more_body", False):
                break
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        version = scope.get("http_version", "1.1")
        keep_alive = "close" not in headers.get("connection", "").lower() and version != "1.0"
        method = scope["method"]
        exchange = _Exchange(receive, send)
        request = HttpRequest(method, target, headers, body, version, keep_alive, exchange)
        try:
            try:
                response = await app(request)
            except Exception:
                stream = exchange.stream
                if exchange.started and (stream is None or not stream.done):
                    raise  # the ASGI server cuts the connection: the body stays unfinished
                log.exception("%s %s failed", method, request.path)
                response = internal_error()
            if exchange.started:
                if exchange.stream is not None:
                    await exchange.stream.write_eof()
                return
            if response is None:
                log.error("%s %s: the app gave no answer", method, request.path)
                response = internal_error()
            await self._send_whole(send, method, request, response)
        finally:
            exchange.close()

    async def _send_whole(
        self, send: Send, method: str, request: HttpRequest, response: HttpResponse
    ) -> None:
        body = response.body
        try:
            items, close = (
                answer_headers(response.headers.items()) if response.headers else ([], False)
            )
        except HeaderError as exc:
            log.error("%s %s: answer refused: %s", method, request.path, exc)
            response = internal_error()
            body = response.body
            items, close = [("Content-Type", "application/json")], False
        raw = _encode(items)
        raw.append((b"content-length", str(len(body)).encode()))
        if close:
            raw.append(_CLOSE)
        await send({"type": "http.response.start", "status": response.status, "headers": raw})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

    @staticmethod
    async def _send_error(send: Send, status: int, body: bytes) -> None:
        headers = [*_JSON, (b"content-length", str(len(body)).encode()), _CLOSE]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class GatewayAsgi(AsgiApp):
    """A :class:`~.app.Gateway` for ``config`` as an ASGI application. The gateway (``gateway``
    when given, else one built from ``config`` in the ASGI server's event loop) is opened at
    lifespan startup and stopped at shutdown."""

    def __init__(self, config: GatewayConfig, gateway: Gateway | None = None) -> None:
        srv = config.server
        super().__init__(
            None, max_body_bytes=srv.max_body_bytes, max_head_bytes=srv.max_header_bytes
        )
        self.config = config
        self._built = gateway
        self.gateway: Gateway | None = None

    async def startup(self) -> None:
        from .app import Gateway

        gw = self._built or Gateway(self.config)
        self._built = None
        try:
            await gw.open()
        except BaseException:
            await gw.stop(grace_s=0)
            raise
        self.gateway = gw
        self.app = gw.app

    async def shutdown(self) -> None:
        gw = self.gateway
        self.app = None
        if gw is not None:
            self.gateway = None
            await gw.stop()


def app_from_env() -> GatewayAsgi:
    """The gateway for the config file named by ``SWARM_GATEWAY_CONFIG`` (for an ASGI
    server's ``--factory``)."""
    from .config import load_config

    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{CONFIG_ENV} must name the gateway's config file")
    return GatewayAsgi(load_config(path))


__all__ = ["CONFIG_ENV", "AsgiApp", "GatewayAsgi", "app_from_env"]
