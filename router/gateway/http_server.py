"""A lean HTTP/1.1 server on ``asyncio.Protocol`` and ``httptools`` (llhttp), for the gateway.

Why not aiohttp's server: on 2 cores the gateway's throughput is set by its CPU per request, and
aiohttp's request/response machinery cost about a quarter of it. This layer does only what the
gateway needs: requests with bodies (Content-Length or chunked) read whole up to a limit, answers
with a body or streamed in chunks, keep-alive, pipelining (answered in order), flow control both
ways, and a graceful close.

Limits (each answered with a JSON error and the connection closed, never with a crash):
the request head (line and headers) over ``max_head_bytes`` -> 431; a body over ``max_body_bytes``
-> 413 (as soon as Content-Length says so, or while reading a chunked body); bytes that are not
HTTP -> 400. A WebSocket upgrade or a ``CONNECT`` is refused (501) without the app seeing it; a
request asking to ``Upgrade`` to anything else (h2c) gets an ordinary HTTP/1.1 answer, then the
connection closes. HTTP/1.0 connections close after their answer. Idle keep-alive connections
close after ``keepalive_s``; a request head must arrive within that time too (slow-loris).

The application is one coroutine ``app(request) -> HttpResponse | None``. To stream, it calls
``await request.stream(status, headers)`` and writes to the :class:`ResponseStream` it gets, then
returns None. The same objects are served by any ASGI server through :mod:`.asgi`.

The server owns an answer's framing and its connection: an app's header naming
Content-Length, Transfer-Encoding, Keep-Alive, Upgrade, TE or Trailer, any Connection header but
``Connection: close`` (which the server honours: the connection closes after that answer), or a
name that is not a token or a value with CR, LF or NUL, is refused: ``request.stream()`` raises
:class:`HeaderError`; a whole answer carrying one becomes a 500 (logged as the app's bug). An app
that fails after its stream started gets the connection cut (reset) without the terminating
chunk, so the client sees a truncated answer, never a complete-looking one.

The head limit counts the bytes of one request head, wherever it starts in what the socket
delivers (pipelined requests before it do not count). A ``100 Continue`` for a request pipelined
behind an answer still being written goes out after that answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl

import httptools

log = logging.getLogger("router.gateway.http")

_DISCARD_MAX = 16 << 20  # what a refused request may still send before the connection closes
# ... and how long it may take (the client got its answer with Connection: close).
_DISCARD_S = 5.0
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
# Headers only the server may set: they frame the answer or manage the connection.
_SERVER_OWNED = frozenset(
    {"content-length", "transfer-encoding", "keep-alive", "upgrade", "te", "trailer"}
)
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


class HeaderError(ValueError):
    """An answer header the server will not send (framing, hop-by-hop, CR/LF, not a token)."""


# Header names already checked (an app uses a handful over and over); name -> is Connection.
_checked: dict[str, bool] = {}
_CHECKED_MAX = 4096


def _check_name(name: str) -> bool:
    """Whether ``name`` is Connection; raises HeaderError for a name the app may not send."""
    kind = _checked.get(name)
    if kind is not None:
        return kind
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise HeaderError(f"invalid header name: {name!r}")
    lower = name.lower()
    if lower in _SERVER_OWNED:
        raise HeaderError(f"the server sets {name}; an app may not")
    kind = lower == "connection"
    if len(_checked) < _CHECKED_MAX:
        _checked[name] = kind
    return kind


def answer_headers(headers: Iterable[tuple[str, str]]) -> tuple[list[tuple[str, str]], bool]:
    """An app's answer headers checked: the ones to send, and whether the app asked for the
    connection to close (``Connection: close``, which is left to the server to send). Raises
    :class:`HeaderError` for one the server may not pass on."""
    out: list[tuple[str, str]] = []
    close = False
    for name, value in headers:
        if not isinstance(value, str) or _BAD_VALUE.search(value):
            raise HeaderError(f"header {name!r} has a CR, LF or NUL in its value (or no text)")
        if _check_name(name):
            if value.strip().lower() != "close":
                raise HeaderError(f"an app may send Connection: close only, not {value!r}")
            close = True
            continue
        out.append((name, value))
    return out, close


def error_body(status: int, message: str, code: str) -> bytes:
    kind = "invalid_request_error" if status < 500 else "server_error"
    err = {"message": message, "type": kind, "param": None, "code": code}
    return json.dumps({"error": err}).encode()


def _error_answer(status: int, message: str, code: str) -> bytes:
    """A whole error answer that closes the connection."""
    body = error_body(status, message, code)
    extra = f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return _head(status, [("Content-Type", "application/json")], extra) + body


class HttpRequest:
    """One request, read whole. ``headers`` has lower-case names; repeated headers are joined
    with ``", "``."""

    __slots__ = (
        "_conn",
        "_query",
        "body",
        "headers",
        "keep_alive",
        "method",
        "path",
        "query_string",
        "target",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        version: str,
        keep_alive: bool,
        conn: StreamStarter | None,
    ) -> None:
        self.method = method
        self.target = target
        path, _, query = target.partition("?")
        if not path.startswith("/"):  # absolute-form (a proxy-style request)
            try:
                url = httptools.parse_url(target.encode())
                path = (url.path or b"/").decode("latin-1")
                query = (url.query or b"").decode("latin-1")
            except httptools.HttpParserInvalidURLError:  # CONNECT's host:port, or junk
                path, query = target, ""
        self.path = path
        self.query_string = query
        self.headers = headers
        self.body = body
        self.version = version
        self.keep_alive = keep_alive
        self._conn = conn
        self._query: dict[str, str] | None = None

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            self._query = dict(parse_qsl(self.query_string))
        return self._query

    async def stream(self, status: int, headers: dict[str, str]) -> ResponseStream:
        """Start a streamed answer (chunked on HTTP/1.1). Raises :class:`HeaderError` for a
        header the server may not send, ConnectionResetError when the client has left."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("this request has no connection to stream to")
        return await conn.start_stream(self, status, headers)


class HttpResponse:
    """An answer with its whole body."""

    __slots__ = ("body", "headers", "status")

    def __init__(
        self, body: bytes = b"", status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        self.body = body
        self.status = status
        self.headers = headers


App = Callable[[HttpRequest], Awaitable[HttpResponse | None]]


class StreamStarter(Protocol):
    """What serves a request: starts its streamed answer (this server's connection, or the
    ASGI adapter)."""

    async def start_stream(
        self, request: HttpRequest, status: int, headers: dict[str, str]
    ) -> ResponseStream: ...


class _Limits:
    __slots__ = ("keepalive_s", "max_body", "max_head")

    def __init__(self, max_head: int, max_body: int, keepalive_s: float) -> None:
        self.max_head = max_head
        self.max_body = max_body
        self.keepalive_s = keepalive_s


class _DateCache:
    """The Date header, formatted once per second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def get(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True)
        return self._value


_date = _DateCache()


def _head(status: int, headers: Iterable[tuple[str, str]], extra: str) -> bytes:
    """An answer head; ``headers`` are checked already (or the server's own)."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\nDate: {_date.get()}\r\n"]
    for name, value in headers:
        lines.append(f"{name}: {value}\r\n")
    lines.append(extra)
    return "".join(lines).encode("latin-1", "replace")


class ResponseStream:
    """A streamed answer: ``await write(data)`` per piece, then ``await write_eof()``. Writes
    wait while the client reads slowly; after the client left they raise ConnectionResetError.
    A stream the app leaves without ``write_eof()`` is ended for it when the app returns, and
    cut (no clean end) when the app raises."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    async def write_eof(self) -> None:
        raise NotImplementedError


class _SocketStream(ResponseStream):
    """This server's streamed answer: chunked on HTTP/1.1, ended by the close on HTTP/1.0."""

    __slots__ = ("_chunked", "_conn", "keep")

    def __init__(self, conn: HttpConnection, chunked: bool, keep: bool) -> None:
        super().__init__()
        self._conn = conn
        self._chunked = chunked
        self.keep = keep  # the connection may serve another request after this answer

    async def write(self, data: bytes) -> None:
        conn = self._conn
        transport = conn.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        if self.done:
            raise RuntimeError("the stream has ended")
        if not data:
            return
        if self._chunked:
            transport.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            transport.write(data)
        if conn.write_paused:
            await conn.drain()

    async def write_eof(self) -> None:
        if self.done:
            return
        self.done = True
        transport = self._conn.transport
        if self._chunked and transport is not None and not transport.is_closing():
            transport.write(b"0\r\n\r\n")


class HttpConnection(asyncio.Protocol):
    """One client connection. Requests are answered one at a time, in order; while one is
    being answered, further pipelined requests wait (reading pauses after the first)."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._limits = server.limits
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url: list[bytes] = []
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        # The head limit: bytes of the socket's reads that began at or inside the current head
        # (exact for a head at the start of a read; one that starts mid-read is counted from the
        # next read on), and the bytes the parser handed over for it (URL, names and values).
        self._in_head = True  # in a head, or between requests (the next bytes are a head)
        self._head_raw = 0
        self._head_parsed = 0
        self._heads = 0  # heads completed on this connection
        self._discard = False  # reading the rest of a refused request's body, then closing
        self._method = ""
        self._version = "1.1"
        self._keep_alive = True
        self._continue = False  # a 100 Continue waits for the answers before it
        self._queue: deque[HttpRequest] = deque()
        self._task: asyncio.Task[None] | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._streaming: _SocketStream | None = None
        self.closing = False
        self._eof = False
        self._refusal: bytes | None = None

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if not self._server.admit(self):
            self.transport.abort()
            return
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.pop(self, None)
        self._cancel_idle()
        self.transport = None
        self._queue.clear()
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ConnectionResetError("the client closed the connection"))
            self._drain.exception()  # nobody may be waiting; don't log it as unretrieved
        # A running request finishes (a swarm answer may be paid already); its answer is dropped.

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    async def drain(self) -> None:
        if not self.write_paused:
            return
        if self._drain is None:
            self._drain = self._loop.create_future()
        await self._drain

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            room = self._limits.max_head - self._head_raw
            if len(data) > room:
                # Feed only what the head may still take; the rest (a body, further requests)
                # only once the head has ended within it.
                heads = self._heads
                if not self._feed(data[:room]):
                    return
                if self._heads == heads:
                    self._refuse(
                        431, "The request line and headers are too large", "headers_too_large"
                    )
                    return
                data = data[room:]
            else:
                self._head_raw += len(data)  # reset when the head ends inside this read
        self._feed(data)

    def _feed(self, data: bytes) -> bool:
        """Parse ``data``; False when the connection was refused or cannot go on."""
        if self.transport is None or self.transport.is_closing() or self._refusal is not None:
            return False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # We speak no other protocol: a request asking to switch gets an ordinary answer
            # (RFC 9110 lets a server ignore Upgrade); what follows it is not HTTP, so the
            # connection closes after that answer.
            self.closing = True
            if self._task is None and not self._queue:
                self._refuse(501, "Switching protocols is not supported", "not_implemented")
            elif self.transport is not None:
                self.transport.pause_reading()
            return False
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse(431, "The request line and headers are too large", "headers_too_large")
                return False
            # a bug in a callback: don't take others down
            log.exception("HTTP parser callback failed")
            self._close()
            return False
        except httptools.HttpParserError as exc:
            self._refuse(400, f"Malformed HTTP request: {exc}", "bad_http")
            return False
        return True

    def eof_received(self) -> bool | None:
        # A client that half-closes after its request still gets the answer; then the
        # connection closes (nothing more can come).
        self._eof = True
        return self._task is not None or bool(self._queue)

    # --- httptools callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = []
        self._headers = {}
        self._body = []
        self._body_size = 0
        self._in_head = True
        self._head_parsed = 0

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._head_parsed += len(url)
        if self._head_parsed > self._limits.max_head:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_parsed += len(name) + len(value) + 4  # ": " and CRLF
        if self._head_parsed > self._limits.max_head:
            raise _HeadTooLarge
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        old = self._headers.get(key)
        self._headers[key] = text if old is None else f"{old}, {text}"

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_raw = 0
        self._heads += 1
        parser = self._parser
        self._method = parser.get_method().decode("ascii", "replace")
        self._version = parser.get_http_version()
        self._keep_alive = parser.should_keep_alive() and self._version == "1.1"
        if parser.should_upgrade():
            if self._method == "CONNECT":
                self._refuse(501, "CONNECT is not supported", "not_implemented")
                return
            if "websocket" in self._headers.get("upgrade", "").lower():
                self._refuse(501, "WebSocket is not supported", "not_implemented")
                return
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._limits.max_body:
            self._refuse_body(int(length))
            return
        if self._headers.get("expect", "").lower() == "100-continue" and self._version == "1.1":
            if self._task is None and not self._queue:
                assert self.transport is not None
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            else:  # after the answers in progress (see _answer), or never if the body comes
                self._continue = True

    def on_body(self, body: bytes) -> None:
        if self._refusal is not None:
            return
        self._continue = False  # it sent the body without waiting
        self._body_size += len(body)
        if self._discard:
            if self._body_size > self._limits.max_body + _DISCARD_MAX:
                self._close()
            return
        if self._body_size > self._limits.max_body:
            self._refuse_body(None)
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_head = True  # what follows is the next request's head
        self._continue = False
        transport = self.transport
        if self._refusal is not None or transport is None or transport.is_closing():
            return  # refused (now, or after the answers in progress)
        if self._discard:
            self._close()
            return
        self._cancel_idle()  # head and body arrived in time
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = HttpRequest(
            self._method,
            b"".join(self._url).decode("latin-1"),
            self._headers,
            body,
            self._version,
            self._keep_alive,
            self,
        )
        if self._task is None:
            self._task = self._loop.create_task(self._answer(request))
        else:
            self._queue.append(request)
            if self.transport is not None:
                self.transport.pause_reading()

    # --- answering ------------------------------------------------------------------------------

    async def _answer(self, request: HttpRequest) -> None:
        try:
            await self._answer_all(request)
        finally:
            self._task = None
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if self._refusal is not None:  # a later pipelined request was unusable
                transport.write(self._refusal)
                self._close()
            elif self._eof:
                self._close()
            else:
                if self._continue:  # a request behind the answers just written waits for it
                    self._continue = False
                    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self._arm_idle()

    async def _answer_all(self, request: HttpRequest) -> None:
        while True:
            try:
                response = await self._server.app(request)
            except Exception:
                log.exception("%s %s failed", request.method, request.path)
                stream = self._streaming
                if stream is not None and not stream.done:
                    self._streaming = None
                    self._reset()  # the client must see a cut answer, not a complete one
                    break
                response = internal_error()
            keep = request.keep_alive and not self.closing and not self._server.closing
            stream = self._streaming
            self._streaming = None
            if stream is not None:
                await stream.write_eof()
                keep = keep and stream.keep
            elif response is not None:
                keep = self._write(request, response, keep)
            else:
                log.error("%s %s: the app gave no answer", request.method, request.path)
                keep = self._write(request, internal_error(), keep)
            transport = self.transport
            if transport is None or transport.is_closing():
                break
            if not keep:
                self._close()
                break
            if not self._queue:
                break
            request = self._queue.popleft()
            if not self._queue:
                transport.resume_reading()

    def _write(self, request: HttpRequest, response: HttpResponse, keep: bool) -> bool:
        """Send a whole answer; whether the connection may go on."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        body = response.body
        try:
            items, close = (
                answer_headers(response.headers.items()) if response.headers else ((), False)
            )
        except HeaderError as exc:
            log.error("%s %s: answer refused: %s", request.method, request.path, exc)
            response = internal_error()
            body = response.body
            items, close = [("Content-Type", "application/json")], False
        keep = keep and not close
        extra = f"Content-Length: {len(body)}\r\n"
        if not keep:
            extra += "Connection: close\r\n"
        head = _head(response.status, items, extra + "\r\n")
        if request.method == "HEAD" or not body:
            transport.write(head)
        else:
            transport.write(head + body)
        return keep

    async def start_stream(
        self, request: HttpRequest, status: int, headers: dict[str, str]
    ) -> ResponseStream:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        if self._streaming is not None:
            raise RuntimeError("this request's answer has started already")
        items, close = answer_headers(headers.items())
        chunked = request.version != "1.0"  # HTTP/1.0: the body ends when the connection does
        keep = (
            chunked
            and not close
            and request.keep_alive
            and not self.closing
            and not self._server.closing
        )
        if not chunked:
            extra = "Connection: close\r\n\r\n"
        elif keep:
            extra = "Transfer-Encoding: chunked\r\n\r\n"
        else:
            extra = "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        transport.write(_head(status, items, extra))
        self._streaming = _SocketStream(self, chunked, keep)
        return self._streaming

    # --- refusing and closing -------------------------------------------------------------------

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answer an unusable request with an error and close the connection. Requests before
        it on this connection (pipelined) are answered first."""
        log.info("refused a request (%d): %s", status, message)
        transport = self.transport
        if transport is None or transport.is_closing() or self._discard:
            self._close()  # closed already, or an error is out already
            return
        answer = _error_answer(status, message, code)
        if self._task is not None:  # sent after the answers in progress (see _answer)
            self._refusal = answer
            transport.pause_reading()
            return
        transport.write(answer)
        self._close()

    def _refuse_body(self, length: int | None) -> None:
        """413 at once; the rest of the body is read and dropped for a few seconds (a client
        still sending would otherwise see a reset instead of the answer), then the connection
        closes."""
        limit = self._limits.max_body
        message = (
            f"Request body of {length} bytes is larger than the limit of {limit}"
            if length is not None
            else f"Request body is larger than the limit of {limit} bytes"
        )
        transport = self.transport
        can_drain = transport is not None and not transport.is_closing() and self._task is None
        if can_drain and transport is not None:
            transport.write(_error_answer(413, message, "request_too_large"))
            self._discard = True
            self._body = []
            self._arm_idle(min(self._limits.keepalive_s, _DISCARD_S))
        else:
            self._refuse(413, message, "request_too_large")

    def _close(self) -> None:
        self._cancel_idle()
        if self.transport is not None:
            self.transport.close()

    def _reset(self) -> None:
        """Cut the connection with a reset: what was sent ends without a clean close."""
        self._cancel_idle()
        transport = self.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:  # pragma: no cover - closed under us
                pass
        transport.abort()

    def _arm_idle(self, after: float | None = None) -> None:
        self._cancel_idle()
        wait = self._limits.keepalive_s if after is None else after
        self._idle_timer = self._loop.call_later(wait, self._idle_timeout)

    def _cancel_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle_timeout(self) -> None:
        self._idle_timer = None
        if self._task is None:
            self._close()

    @property
    def busy(self) -> bool:
        return self._task is not None

    def close_when_idle(self) -> None:
        """For shutdown: close now if idle, else after the answer being written."""
        self.closing = True
        if self._task is None:
            self._close()

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.transport is not None:
            self.transport.abort()


class _HeadTooLarge(Exception):
    """Raised in a parser callback: the request head passed the limit."""


def internal_error() -> HttpResponse:
    return HttpResponse(
        error_body(500, "Internal error in the gateway", "internal_error"),
        500,
        {"Content-Type": "application/json"},
    )


class HttpServer:
    """Serves ``app`` on a host and port. ``await start()``, then ``await close()``: stops
    listening, closes idle connections, and lets the ones answering finish their answer
    (``abort_all()`` cuts them off)."""

    def __init__(
        self,
        app: App,
        *,
        max_body_bytes: int = 1 << 20,
        max_head_bytes: int = 64 * 1024,
        keepalive_s: float = 75.0,
        max_connections: int | None = None,
    ) -> None:
        self.app = app
        self.limits = _Limits(max_head_bytes, max_body_bytes, keepalive_s)
        #: Open connections, oldest first (a dict keeps insertion order).
        self.connections: dict[HttpConnection, None] = {}
        self.max_connections = _fit_descriptors(max_connections)
        self.evicted = 0
        self.closing = False
        self._server: asyncio.base_events.Server | None = None

    def admit(self, conn: HttpConnection) -> bool:
        """Take a new connection. At the cap, the oldest connection that is not answering a
        request (idle keep-alive, or a head still trickling in) is cut to make room, so slow or
        idle clients can never lock out a new one; only when every connection is busy
        answering is the new one refused."""
        conns = self.connections
        cap = self.max_connections
        if cap is not None and len(conns) >= cap:
            victim = next((c for c in conns if not c.busy), None)
            if victim is None:
                return False
            conns.pop(victim, None)
            self.evicted += 1
            victim.abort()
        conns[conn] = None
        return True

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; returns the bound (host, port)."""
        self._server = await asyncio.get_running_loop().create_server(
            lambda: HttpConnection(self), host, port, reuse_address=True, backlog=1024
        )
        sock = self._server.sockets[0]
        bound: Any = sock.getsockname()
        return bound[0], bound[1]

    async def close(self) -> None:
        """Stop listening; idle connections close now, busy ones after their answer."""
        self.closing = True
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self.connections):
            conn.close_when_idle()

    def busy(self) -> int:
        return sum(1 for c in self.connections if c.busy)

    def abort_all(self) -> None:
        for conn in list(self.connections):
            conn.abort()
        self.connections.clear()


# Descriptors kept free for upstream connections, the relays, databases and logs.
_RESERVED_FDS = 64


def _fit_descriptors(cap: int | None) -> int | None:
    """The connection cap, lowered to what the process's descriptor limit allows: past it,
    accept() fails and nobody gets in."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, ValueError, OSError):  # pragma: no cover - not on POSIX
        return cap
    if soft == resource.RLIM_INFINITY:
        return cap
    room = max(16, soft - _RESERVED_FDS)
    if cap is None or cap > room:
        if cap is not None:
            log.warning(
                "server.max_connections %d is above what %d descriptors allow: using %d",
                cap,
                soft,
                room,
            )
        return room
    return cap


__all__ = [
    "App",
    "HeaderError",
    "HttpRequest",
    "HttpResponse",
    "HttpServer",
    "ResponseStream",
    "StreamStarter",
    "answer_headers",
    "error_body",
    "internal_error",
]
