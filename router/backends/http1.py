"""A lean keep-alive HTTP/1.1 client for one origin: :class:`Http1Pool`.

Built on ``asyncio.Protocol`` and httptools (llhttp) because the general-purpose aiohttp client
cost more CPU per upstream call than the rest of the gateway's request path. It does one thing:
send a request with a ready body to one origin and read the answer, reusing connections.
It sends no ``Accept-Encoding`` (answers arrive uncompressed) and follows no redirects.

Nothing is sent twice unless that is safe: a reused connection that the upstream closed before
answering is retried once on a new connection only when no byte of the request went out, or the
method is idempotent (GET, HEAD, OPTIONS, PUT, DELETE, TRACE). A POST that may have reached the
upstream fails with :class:`NotResent` instead (a paid upstream must not bill twice; the caller
decides about asking again).

Headers: the client owns Host, Content-Length and the connection's framing. Configured
``headers`` may replace Host (a virtual host reached by address) and the default Content-Type;
Content-Length, Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE, Trailer and Expect are
refused with a ValueError, as is any name that is not a token or a value with CR, LF or NUL.

Timeouts: ``timeout_s`` bounds a whole non-streamed call (waiting for a free connection,
connecting, sending, and reading the complete body). For streamed calls it bounds the time until
the response headers, then separately each wait for more body bytes (a slow but live stream is
never cut; time the consumer spends between reads does not count). ``connect_timeout_s``
additionally bounds each TCP/TLS connect. While an exchange runs, its deadline is checked by one
periodic timer per pool and loop (every ``timeout_s / 10``, at most every second), not by a timer
per request: an expired exchange fails up to that period late, and the hot path saves the cost
of scheduling and cancelling a timer. Nothing here cancels tasks, so a caller's own cancellation
is never swallowed.

A stream left early: leaving ``async with pool.stream(...)`` without an exception before the body
is complete (an SSE reader stops at ``data: [DONE]``, and the chunked terminator often comes in a
later packet) does not close the connection if the answer is framed (chunked or Content-Length),
keep-alive, and at most ``LINGER_MAX_BYTES`` of it are still expected. The connection *lingers*:
its protocol goes on reading and drops the bytes, and when the answer ends it goes back to the
pool (or straight to a waiting request) like any other. It is closed instead if the answer does
not end within ``linger_s`` or more than ``LINGER_MAX_BYTES`` arrive. No task is involved, nor a
timer per stream: the bound is checked by the same periodic sweep as deadlines (which then runs
at least every ``linger_s``, so a linger lasts at most about twice that); the bound only matters
for an upstream that never finishes, as the usual linger ends when the terminator arrives.
A lingering connection still holds its ``max_connections`` slot: a request waiting for a slot
gets the connection when the linger completes, or the slot when it is closed; a request that
finds a slot free does not wait for a lingering connection but opens a new one. Leaving the block
with an exception (cancellation and ``aclose()`` of an enclosing generator included) closes the
connection at once, as does leaving it early when the rest is unframed or too large.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import weakref
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping
from types import TracebackType
from typing import NoReturn
from urllib.parse import unquote, urlsplit

import httptools

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# A streamed line (``iter_lines``) longer than this fails with LineTooLong.
DEFAULT_MAX_LINE_BYTES = 1024 * 1024
# A streamed answer stops reading from the socket when this much is waiting for the consumer.
STREAM_HIGH_WATER = 256 * 1024
# A stream left before its end lingers (reads and drops the rest, then goes back to the pool) for
# at most this long, by default, and only while at most LINGER_MAX_BYTES more arrive.
LINGER_S = 1.0
LINGER_MAX_BYTES = 64 * 1024
# Bodies up to this size go out in the same write as the head (one send).
_JOIN_LIMIT = 64 * 1024
# Request heads (per method + path) remembered per pool, so the hot path skips building them.
_HEAD_CACHE_SIZE = 256

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_BAD_TARGET = re.compile(r"[^\x21-\x7e]")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# RFC 9110 9.2.2: sending one of these twice has the effect of sending it once.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Headers only the client sets: they frame the request or manage the connection.
_CLIENT_OWNED = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "expect",
    }
)


class Http1Error(ConnectionError):
    """Base of this client's transport errors (a ``ConnectionError``, so callers that map
    transport failures by builtin class see them)."""


class ConnectFailed(Http1Error):
    """The TCP or TLS connection could not be made."""


class UpstreamClosed(Http1Error):
    """The connection ended before the answer was complete. ``before_answer`` says that not a
    single response byte had arrived; ``request_sent`` that the request (some of it at least)
    went out."""

    def __init__(
        self, message: str, *, before_answer: bool = False, request_sent: bool = True
    ) -> None:
        super().__init__(message)
        self.before_answer = before_answer
        self.request_sent = request_sent


class NotResent(UpstreamClosed):
    """A request that is not idempotent (POST, PATCH) went out on a reused connection, and the
    upstream closed it without answering: it may have been processed, so it is not sent
    again."""


class LineTooLong(Http1Error):
    """A streamed line (``iter_lines``) is longer than ``max_line_bytes``."""


async def capped_lines(
    chunks: AsyncIterable[bytes], limit: int, too_long: Callable[[], NoReturn]
) -> AsyncIterator[bytes]:
    """The lines of a streamed body without their ``\\n`` (or ``\\r\\n``), partial lines kept
    across chunks, a last line without a newline at the end. ``too_long`` raises as soon as a
    line is longer than ``limit`` bytes, before the rest of it is buffered."""
    rest = b""
    async for chunk in chunks:
        data = rest + chunk if rest else chunk
        lines = data.split(b"\n")
        rest = lines.pop()
        if len(rest) > limit:
            too_long()
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > limit:
                too_long()
            yield line
    if rest:
        yield rest


class BadResponse(Http1Error):
    """The upstream's bytes are not a valid HTTP/1.x response."""


class ResponseTooLarge(Http1Error):
    """A non-streamed answer's body exceeded ``max_response_bytes``."""


class PoolClosed(Http1Error):
    """``close()`` was called while this request waited for a connection."""


class RequestTimeout(TimeoutError):
    """No (complete) answer within ``timeout_s``."""


class Headers(Mapping[str, str]):
    """Response headers with case-insensitive lookup. Built from the raw header bytes on first
    use (most successful calls never look); repeated headers are joined with ``", "``."""

    __slots__ = ("_d", "_raw")

    def __init__(self, raw: list[bytes]) -> None:
        self._raw = raw  # name, value, name, value, ...
        self._d: dict[str, str] | None = None

    def _dict(self) -> dict[str, str]:
        d = self._d
        if d is None:
            d = {}
            raw = self._raw
            for i in range(0, len(raw), 2):
                key = raw[i].decode("latin-1").lower()
                value = raw[i + 1].decode("latin-1")
                old = d.get(key)
                d[key] = value if old is None else f"{old}, {value}"
            self._d = d
        return d

    def __getitem__(self, name: str) -> str:
        return self._dict()[name.lower()]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._dict().get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._dict()

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._dict())

    def __repr__(self) -> str:
        return f"Headers({self._dict()!r})"


class HttpAnswer:
    """A complete (non-streamed) answer: ``status``, ``headers``, ``body``."""

    __slots__ = ("_headers", "_raw", "body", "status")

    def __init__(self, status: int, raw_headers: list[bytes], body: bytes) -> None:
        self.status = status
        self.body = body
        self._raw = raw_headers
        self._headers: Headers | None = None

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(self._raw)
        return self._headers

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"HttpAnswer(status={self.status}, {len(self.body)} body bytes)"


class _Conn(asyncio.Protocol):
    """One connection and the state of the exchange running on it. Parser callbacks only record
    and wake the waiting caller; they never raise."""

    __slots__ = (
        "active",
        "buffered",
        "chunks",
        "complete",
        "counted",
        "deadline",
        "drain_waiter",
        "error",
        "finished",
        "got_data",
        "head",
        "headers_done",
        "idle",
        "keep_alive",
        "linger_left",
        "lingering",
        "lost",
        "max_bytes",
        "parser",
        "raw",
        "read_paused",
        "reset_parser",
        "size",
        "state",
        "status",
        "streaming",
        "transport",
        "waiter",
        "write_paused",
    )

    def __init__(self, state: _LoopState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.counted = True  # holds one of the pool's max_connections slots
        self.idle = False
        self.active = False
        self.lost = False
        self.streaming = False
        self.lingering = False  # the consumer left early: the rest is read and dropped
        self.linger_left = 0  # bytes a lingering connection may still drop before it is closed
        self.head = False
        self.max_bytes = 0
        self.deadline: float | None = None  # checked by the pool's sweep while waiting
        self.waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None
        self.write_paused = False
        self.read_paused = False
        self.got_data = False
        self.headers_done = False
        self.finished = False  # complete or failed: later parser events are ignored
        self.complete = False
        self.keep_alive = False
        self.reset_parser = False
        self.error: Exception | None = None
        self.status = 0
        self.raw: list[bytes] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.buffered = 0

    # --- driving an exchange (called by the pool) --------------------------------------------

    def begin(
        self, data: bytes, body: bytes | None, head: bool, streaming: bool, deadline: float | None
    ) -> None:
        self.active = True
        self.lingering = False
        self.head = head
        self.streaming = streaming
        self.deadline = deadline
        self.got_data = False
        self.headers_done = False
        self.finished = False
        self.complete = False
        self.keep_alive = False
        self.error = None
        self.status = 0
        self.raw = []
        self.chunks = []
        self.size = 0
        self.buffered = 0
        transport = self.transport
        if self.lost or transport is None or transport.is_closing():
            # closed while handed from one caller to the next: the keep-alive race, retryable
            self.error = UpstreamClosed(
                f"{self.state.pool.origin}: connection closed before the request went out",
                before_answer=True,
                request_sent=False,
            )
            self.finished = True
            return
        if self.read_paused:
            self.read_paused = False
            transport.resume_reading()
        transport.write(data)
        if body is not None:
            transport.write(body)
        if deadline is not None:
            self.state.arm()

    def wait(self) -> asyncio.Future[None]:
        fut = self.state.loop.create_future()
        self.waiter = fut
        return fut

    async def drain(self) -> None:
        while self.write_paused and not self.finished and not self.lost:
            fut = self.state.loop.create_future()
            self.drain_waiter = fut
            await fut

    def _wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def _wake_drain(self) -> None:
        d = self.drain_waiter
        if d is not None:
            self.drain_waiter = None
            if not d.done():
                d.set_result(None)

    def fail(self, exc: Exception) -> None:
        """End the exchange with ``exc`` and drop the connection."""
        if self.finished:
            return
        self.error = exc
        self.finished = True
        self.keep_alive = False
        if self.transport is not None:
            self.transport.abort()
        self._wake()
        self._wake_drain()

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self.active:
            # bytes nobody asked for: the connection's framing can no longer be trusted
            self.keep_alive = False
            if self.transport is not None:
                self.transport.abort()
            return
        self.got_data = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(BadResponse(f"{self.state.pool.origin}: upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self.keep_alive = False
            self.fail(BadResponse(f"{self.state.pool.origin}: malformed HTTP response: {exc}"))
        if self.reset_parser:
            # the HEAD answer ended at its headers; llhttp would wait for a body that never comes
            self.reset_parser = False
            self.parser = httptools.HttpResponseParser(self)
        if self.lingering and self.finished:
            # settled after the parser returned, so bytes past the answer's end are seen first
            self.state.end_linger(self)

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost settles the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.keep_alive = False
        if self.active and not self.finished:
            self.finished = True
            if exc is None and self.headers_done and not _framed(self.raw):
                # a body delimited by the connection's end (HTTP/1.0 style) is now complete
                # (a reset instead of an orderly close may have cut it: that stays an error)
                self.complete = True
            else:
                origin = self.state.pool.origin
                if exc is not None:
                    msg = f"{origin}: connection lost: {exc}"
                elif self.got_data:
                    msg = f"{origin}: upstream closed the connection mid-answer"
                else:
                    msg = f"{origin}: upstream closed the connection without answering"
                self.error = UpstreamClosed(msg, before_answer=not self.got_data)
        self._wake()
        self._wake_drain()
        self.state.forget(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain()

    # --- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.finished:
            self.keep_alive = False  # a second answer to one request: do not reuse

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.finished:
            self.raw += (name, value)

    def on_headers_complete(self) -> None:
        if self.finished:
            return
        status = self.parser.get_status_code()
        if status < 200:
            self.raw = []  # 100 Continue and friends: the real answer follows
            return
        self.status = status
        self.headers_done = True
        if self.head:
            self.reset_parser = True
            self._complete()
        elif self.streaming:
            self._wake()

    def on_body(self, body: bytes) -> None:
        if self.finished:
            return
        if self.streaming:
            self.size += len(body)
            if self.lingering:
                self.linger_left -= len(body)
                if self.linger_left < 0:
                    self.fail(Http1Error(f"{self.state.pool.origin}: too much left after a stream"))
                return
            self.chunks.append(body)
            self.buffered += len(body)
            if self.buffered > STREAM_HIGH_WATER and not self.read_paused:
                self.read_paused = True
                assert self.transport is not None
                self.transport.pause_reading()
            self._wake()
            return
        self.size += len(body)
        if self.size > self.max_bytes:
            self.fail(
                ResponseTooLarge(
                    f"{self.state.pool.origin}: answer larger than {self.max_bytes} bytes"
                )
            )
            return
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.finished or not self.headers_done:
            return  # (not headers_done: the end of a 1xx answer)
        self._complete()

    def _complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True
        self.finished = True
        self._wake()
        if self.drain_waiter is not None:
            self._wake_drain()  # answered before reading all of our body


def _content_length(raw: list[bytes]) -> int | None:
    """The Content-Length header's value, if there is one (the parser has checked it)."""
    for i in range(0, len(raw), 2):
        if raw[i].lower() == b"content-length":
            try:
                return int(raw[i + 1])
            except ValueError:
                return None
    return None


def _framed(raw: list[bytes]) -> bool:
    """Whether the answer says where its body ends (Content-Length or chunked)."""
    for i in range(0, len(raw), 2):
        name = raw[i].lower()
        if name == b"content-length" or (
            name == b"transfer-encoding" and b"chunked" in raw[i + 1].lower()
        ):
            return True
    return False


class _LoopState:
    """The connections of one pool on one event loop."""

    __slots__ = ("closed", "conns", "idle", "loop", "open", "pool", "sweeper", "waiters")

    def __init__(self, pool: Http1Pool, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.idle: list[_Conn] = []  # LIFO: the warmest connection is reused first
        self.waiters: deque[asyncio.Future[_Conn | None]] = deque()
        self.open = 0  # connections holding a slot (connecting, busy or idle)
        self.conns: set[_Conn] = set()
        self.closed = False
        self.sweeper: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        if self.sweeper is None:
            self.sweeper = self.loop.call_later(self.pool.sweep_every, self.sweep)

    def sweep(self) -> None:
        """Fail the exchanges whose deadline passed and close the lingering connections whose
        bound passed; run again while any is waiting."""
        self.sweeper = None
        now = self.loop.time()
        pending = False
        for conn in list(self.conns):
            deadline = conn.deadline
            if deadline is None or not conn.active or conn.finished:
                continue
            if now >= deadline:
                if conn.lingering:
                    conn.lingering = False
                    self.discard(conn)
                    continue
                conn.fail(
                    RequestTimeout(f"{self.pool.origin}: no answer within {self.pool.timeout_s} s")
                )
            else:
                pending = True
        if pending:
            self.arm()

    def take_idle(self) -> _Conn | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            conn.idle = False
            transport = conn.transport
            if transport is not None and not transport.is_closing():
                return conn
            self.discard(conn)
        return None

    async def acquire(self, deadline: float | None) -> tuple[_Conn, bool]:
        """A connection and whether it is new. Waits (first come, first served) when all
        ``max_connections`` are busy."""
        first = True
        while True:
            if self.closed:
                raise PoolClosed(f"{self.pool.origin}: pool closed")
            conn = self.take_idle()
            if conn is not None:
                return conn, False
            if self.open < self.pool.max_connections:
                return await self.connect(deadline), True
            fut: asyncio.Future[_Conn | None] = self.loop.create_future()
            if first:
                self.waiters.append(fut)
            else:
                self.waiters.appendleft(fut)  # woken but beaten to the slot: keep its turn
            first = False
            try:
                async with asyncio.timeout_at(deadline):
                    got = await fut
            except BaseException:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    passed = fut.result()  # handed over as we were cancelled: pass it on
                    if passed is None:
                        self.wake_one()
                    else:
                        self.release(passed)
                raise
            if got is not None:
                return got, False

    async def connect(self, deadline: float | None) -> _Conn:
        self.open += 1
        try:
            conn = await self._connect(deadline)
        except BaseException:
            self.open -= 1
            self.wake_one()
            raise
        self.conns.add(conn)
        return conn

    async def _connect(self, deadline: float | None) -> _Conn:
        pool = self.pool
        if pool.connect_timeout_s is not None:
            limit = self.loop.time() + pool.connect_timeout_s
            deadline = limit if deadline is None else min(deadline, limit)
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await self.loop.create_connection(
                    lambda: _Conn(self),
                    pool.host,
                    pool.port,
                    ssl=pool.ssl_context,
                    server_hostname=pool.host if pool.ssl_context is not None else None,
                )
        except TimeoutError:
            raise
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {pool.origin}: {exc}") from exc
        return conn

    def linger(self, conn: _Conn) -> bool:
        """Let a stream left before its end read the rest in the background (see the module
        docstring); False when it cannot, and the caller closes it."""
        transport = conn.transport
        if (
            conn.finished
            or conn.lost
            or self.closed
            or transport is None
            or transport.is_closing()
            or self.pool.linger_s <= 0
            # false for close-delimited bodies and for "Connection: close"
            or not conn.parser.should_keep_alive()
        ):
            return False
        length = _content_length(conn.raw)
        if length is not None and length - conn.size > LINGER_MAX_BYTES:
            return False
        conn.lingering = True
        conn.linger_left = LINGER_MAX_BYTES
        conn.chunks = []
        conn.buffered = 0
        conn.deadline = self.loop.time() + self.pool.linger_s
        if conn.read_paused:
            conn.read_paused = False
            transport.resume_reading()
        self.arm()
        return True

    def end_linger(self, conn: _Conn) -> None:
        """A lingering connection's answer ended (or failed): back to the pool, or closed."""
        if not conn.lingering:
            return
        conn.lingering = False
        conn.deadline = None
        if conn.complete and conn.error is None:
            self.release(conn)
        else:
            self.discard(conn)

    def release(self, conn: _Conn) -> None:
        """Back to the idle list (or straight to a waiter) if reusable, else closed."""
        conn.active = False
        transport = conn.transport
        if (
            not conn.keep_alive
            or conn.lost
            or self.closed
            or transport is None
            or transport.is_closing()
        ):
            self.discard(conn)
            return
        if conn.read_paused:  # a stream that ended unread: listen again (for EOF, at least)
            conn.read_paused = False
            transport.resume_reading()
        waiters = self.waiters
        while waiters:
            w = waiters.popleft()
            if not w.done():
                w.set_result(conn)
                return
        conn.idle = True
        self.idle.append(conn)

    def discard(self, conn: _Conn, wake: bool = True) -> None:
        conn.active = False
        transport = conn.transport
        if transport is not None and not transport.is_closing():
            transport.abort()
        if conn.counted:
            conn.counted = False
            self.open -= 1
            self.conns.discard(conn)
            if wake:
                self.wake_one()

    def forget(self, conn: _Conn) -> None:
        """The connection is gone (called from connection_lost)."""
        if conn.idle:
            conn.idle = False
            try:
                self.idle.remove(conn)
            except ValueError:
                pass
        if conn.counted:
            conn.counted = False
            self.open -= 1
            self.conns.discard(conn)
            self.wake_one()

    def wake_one(self) -> None:
        """A slot freed up: let the longest waiter try to connect."""
        waiters = self.waiters
        while waiters:
            w = waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    def close(self) -> None:
        self.closed = True
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        for conn in list(self.conns):
            conn.fail(PoolClosed(f"{self.pool.origin}: pool closed"))
            self.discard(conn, wake=False)
        self.idle.clear()
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_exception(PoolClosed(f"{self.pool.origin}: pool closed"))


class StreamAnswer:
    """A streamed answer: ``status`` and ``headers`` are known, the body arrives as it comes.
    Read it with one of ``read()``, ``iter_chunks()`` or ``iter_lines()``."""

    __slots__ = ("_conn", "_max_body", "_max_line", "_timeout", "headers", "status")

    def __init__(
        self, conn: _Conn, timeout_s: float | None, max_line_bytes: int, max_body_bytes: int
    ) -> None:
        self.status = conn.status
        self.headers = Headers(conn.raw)
        self._conn = conn
        self._timeout = timeout_s
        self._max_line = max_line_bytes
        self._max_body = max_body_bytes

    async def _take(self) -> list[bytes] | None:
        """The body bytes that arrived since the last call (waiting for some), None at the end."""
        conn = self._conn
        while True:
            chunks = conn.chunks
            if chunks:
                conn.chunks = []
                conn.buffered = 0
                if conn.read_paused:
                    conn.read_paused = False
                    if conn.transport is not None and not conn.lost:
                        conn.transport.resume_reading()
                return chunks
            if conn.error is not None:
                raise conn.error
            if conn.complete:
                return None
            if self._timeout is not None:
                conn.deadline = conn.state.loop.time() + self._timeout
                conn.state.arm()
            try:
                await conn.wait()
            finally:
                conn.deadline = None  # the consumer's own time between reads does not count

    async def read(self) -> bytes:
        """The rest of the body, at most the pool's ``max_response_bytes`` (else
        :class:`ResponseTooLarge`)."""
        parts: list[bytes] = []
        size = 0
        while (chunks := await self._take()) is not None:
            for chunk in chunks:
                size += len(chunk)
            if size > self._max_body:
                raise ResponseTooLarge(
                    f"{self._conn.state.pool.origin}: answer larger than {self._max_body} bytes"
                )
            parts.extend(chunks)
        return b"".join(parts)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive (chunked encoding already removed)."""
        while (chunks := await self._take()) is not None:
            for chunk in chunks:
                yield chunk

    def iter_lines(self) -> AsyncIterator[bytes]:
        """Body lines without their ``\\n`` (or ``\\r\\n``), partial lines kept across chunks;
        a last line without a newline comes at the end. A line longer than the pool's
        ``max_line_bytes`` raises :class:`LineTooLong`."""
        return capped_lines(self._joined(), self._max_line, self._too_long)

    async def _joined(self) -> AsyncIterator[bytes]:
        while (chunks := await self._take()) is not None:
            yield b"".join(chunks)

    def _too_long(self) -> NoReturn:
        raise LineTooLong(
            f"{self._conn.state.pool.origin}: a streamed line is longer than {self._max_line} bytes"
        )


class _StreamContext:
    __slots__ = ("_answer", "_body", "_headers", "_method", "_path", "_pool")

    def __init__(
        self,
        pool: Http1Pool,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        self._pool = pool
        self._method = method
        self._path = path
        self._body = body
        self._headers = headers
        self._answer: StreamAnswer | None = None

    async def __aenter__(self) -> StreamAnswer:
        self._answer = await self._pool._open_stream(
            self._method, self._path, self._body, self._headers
        )
        return self._answer

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        answer = self._answer
        if answer is None:
            return
        self._answer = None
        conn = answer._conn
        state = conn.state
        # only a fully received answer leaves a connection in a known state; one left early
        # without an exception may linger until it is (an exception, cancellation included,
        # closes it at once: the caller is not done in an orderly way)
        if conn.complete and conn.error is None:
            state.release(conn)
        elif exc_type is not None or not state.linger(conn):
            state.discard(conn)


class Http1Pool:
    """Keep-alive HTTP/1.1 connections to one origin, taken from ``root`` (``http://host:port``
    or ``https://host``, optionally with a path prefix put before every request path).

    At most ``max_connections`` are open per event loop; further requests wait first come, first
    served, within their timeout. ``headers`` go out with every request (auth, user agent...);
    ``content_type`` with every request that has a body unless the call names its own.
    A reused connection that the upstream closed before sending any byte of the answer (the
    keep-alive race) is retried once on a new connection when that is safe (see the module
    docstring); nothing else is retried. ``max_line_bytes`` caps a line of ``iter_lines()``.
    ``linger_s`` bounds how long a stream left before its end may read the rest in the
    background (0: such a stream's connection is closed at once); see the module docstring.
    Each event loop gets its own connections; ``close()`` closes the current loop's.
    """

    def __init__(
        self,
        root: str,
        *,
        timeout_s: float | None = 120.0,
        connect_timeout_s: float | None = 10.0,
        max_connections: int = 64,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = "application/json",
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        linger_s: float = LINGER_S,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if max_response_bytes < 0:
            raise ValueError("max_response_bytes must not be negative")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError("timeout_s must be positive (or None for no limit)")
        if linger_s < 0:
            raise ValueError("linger_s must not be negative (0: streams left early are closed)")
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        parts = urlsplit(root)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {root!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"a root URL takes no query or fragment: {root!r}")
        self.host: str = parts.hostname
        tls = parts.scheme == "https"
        default_port = 443 if tls else 80
        self.port: int = parts.port or default_port
        self.ssl_context: ssl.SSLContext | None = None
        if tls:
            self.ssl_context = ssl_context or ssl.create_default_context()
        host = f"[{self.host}]" if ":" in self.host else self.host
        authority = host if self.port == default_port else f"{host}:{self.port}"
        self.origin = f"{parts.scheme}://{authority}"
        prefix = parts.path.rstrip("/")
        if _BAD_TARGET.search(prefix):
            raise ValueError(f"root URL path has spaces or control characters: {root!r}")
        self._prefix = prefix
        self.timeout_s = timeout_s
        sweep_every = 1.0 if timeout_s is None else min(max(timeout_s / 10, 0.005), 1.0)
        if linger_s > 0:
            sweep_every = min(sweep_every, max(linger_s, 0.005))
        self.sweep_every = sweep_every
        self.linger_s = linger_s
        self.connect_timeout_s = connect_timeout_s
        self.max_connections = max_connections
        self.max_response_bytes = max_response_bytes
        self.max_line_bytes = max_line_bytes
        all_headers, virtual_host, content_type = configured_headers(headers, content_type)
        host = authority if virtual_host is None else virtual_host
        lower_names = {k.lower() for k in all_headers}
        if parts.username is not None and "authorization" not in lower_names:
            cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            all_headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        if "user-agent" not in lower_names:
            all_headers["User-Agent"] = "nostr-swarm"
        # the constant part of every request head, built once
        self._fixed = _header_block({"Host": host}) + _header_block(all_headers)
        self._content_type = (
            _header_block({"Content-Type": content_type}) if content_type is not None else b""
        )
        self._heads: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        self._last: _LoopState | None = None  # the state used last: skips the dict lookup
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState]
        self._states = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"Http1Pool({self.origin}{self._prefix})"

    # --- public ------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpAnswer:
        """Send one request and read the whole answer (at most ``max_response_bytes``)."""
        data, body = self._build(method, path, body, headers)
        state = self._state()
        loop = state.loop
        deadline = None if self.timeout_s is None else loop.time() + self.timeout_s
        conn = state.take_idle()
        fresh = False
        if conn is None:
            conn, fresh = await state.acquire(deadline)
        while True:
            conn.max_bytes = self.max_response_bytes
            try:
                conn.begin(data, body, method == "HEAD", False, deadline)
                if conn.write_paused:
                    await conn.drain()
                while not conn.finished:
                    fut = loop.create_future()
                    conn.waiter = fut
                    await fut
            except BaseException:
                state.discard(conn)
                raise
            err = conn.error
            if err is None:
                break
            conn = await self._after_failure(state, conn, err, fresh, deadline, method)
            fresh = True
        chunks = conn.chunks
        answer = HttpAnswer(
            conn.status, conn.raw, chunks[0] if len(chunks) == 1 else b"".join(chunks)
        )
        state.release(conn)
        return answer

    def stream(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _StreamContext:
        """``async with pool.stream(...) as answer:`` — the body is read as it arrives. Leaving
        the block before the body is complete lets a small framed rest be read and dropped in
        the background (the connection then returns to the pool) when the block ends without an
        exception; otherwise the connection is closed."""
        return _StreamContext(self, method, path, body, headers)

    async def close(self) -> None:
        """Close this event loop's connections (other loops' go with their loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        state = self._states.pop(loop, None)
        if state is not None:
            state.close()

    # --- internals ---------------------------------------------------------------------------

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._last
        if state is not None and state.loop is loop and not state.closed:
            return state
        state = self._states.get(loop)
        if state is None:
            state = self._states[loop] = _LoopState(self, loop)
        self._last = state
        return state

    async def _after_failure(
        self,
        state: _LoopState,
        conn: _Conn,
        err: Exception,
        fresh: bool,
        deadline: float | None,
        method: str,
    ) -> _Conn:
        """A new connection for the one retry of a reused connection that the upstream closed
        before answering, when sending again is safe (nothing went out, or the method is
        idempotent); otherwise raise ``err`` (:class:`NotResent` for a request that may have
        been processed)."""
        unanswered = (
            not fresh and not state.closed and isinstance(err, UpstreamClosed) and err.before_answer
        )
        retry = unanswered and (method in _IDEMPOTENT or not getattr(err, "request_sent", True))
        state.discard(conn, wake=not retry)
        if not retry:
            if unanswered:
                raise NotResent(
                    f"{self.origin}: the upstream closed a reused connection after the {method} "
                    "request went out, without answering; not sent again (it may have been "
                    "processed)",
                    before_answer=True,
                ) from err
            raise err
        return await state.connect(deadline)

    async def _open_stream(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> StreamAnswer:
        data, body = self._build(method, path, body, headers)
        state = self._state()
        deadline = None if self.timeout_s is None else state.loop.time() + self.timeout_s
        conn = state.take_idle()
        fresh = False
        if conn is None:
            conn, fresh = await state.acquire(deadline)
        while True:
            try:
                conn.begin(data, body, method == "HEAD", True, deadline)
                if conn.write_paused:
                    await conn.drain()
                while not conn.headers_done and conn.error is None:
                    await conn.wait()
            except BaseException:
                state.discard(conn)
                raise
            if conn.headers_done:
                break
            assert conn.error is not None
            conn = await self._after_failure(state, conn, conn.error, fresh, deadline, method)
            fresh = True
        conn.deadline = None  # from here the timeout bounds each wait for body bytes
        return StreamAnswer(conn, self.timeout_s, self.max_line_bytes, self.max_response_bytes)

    def _build(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[bytes, bytes | None]:
        """The request head (with the body appended when small) and the body still to send."""
        heads = self._heads.get((method, path))
        if heads is None:
            heads = self._make_heads(method, path)
        extra = b""
        typed = False
        if headers:
            for name in headers:
                lower = name.lower()
                if lower in _CLIENT_OWNED or lower == "host":
                    raise ValueError(f"header {name!r} is set by the HTTP client itself")
                typed = typed or lower == "content-type"
            extra = _header_block(headers)
        if body:
            head = heads[0] if typed else heads[1]
            length = b"Content-Length: %d\r\n\r\n" % len(body)
            if len(body) <= _JOIN_LIMIT:
                return b"".join((head, extra, length, body)), None
            return b"".join((head, extra, length)), body
        if body is not None or method in _BODY_METHODS:
            return b"".join((heads[0], extra, b"Content-Length: 0\r\n\r\n")), None
        return b"".join((heads[0], extra, b"\r\n")), None

    def _make_heads(self, method: str, path: str) -> tuple[bytes, bytes]:
        """The request line and fixed headers, without and with the default Content-Type."""
        if not _TOKEN.fullmatch(method):
            raise ValueError(f"invalid HTTP method: {method!r}")
        if not path.startswith("/") or _BAD_TARGET.search(path):
            raise ValueError(f"invalid request path: {path!r}")
        head = f"{method} {self._prefix}{path} HTTP/1.1\r\n".encode("ascii") + self._fixed
        heads = (head, head + self._content_type)
        if len(self._heads) < _HEAD_CACHE_SIZE:
            self._heads[(method, path)] = heads
        return heads


def configured_headers(
    headers: Mapping[str, str] | None, content_type: str | None
) -> tuple[dict[str, str], str | None, str | None]:
    """A pool's configured ``headers``, checked (token names, no CR, LF or NUL, none the client
    owns) and split: (the headers every request carries, a ``Host`` for a virtual host reached
    by address or None, the ``Content-Type`` for requests with a body)."""
    fixed: dict[str, str] = {}
    host: str | None = None
    for name, value in (headers or {}).items():
        lower = name.lower()
        if lower in _CLIENT_OWNED:
            raise ValueError(
                f"header {name!r} cannot be configured: the HTTP client sets it itself"
            )
        _header_block({name: value})
        if lower == "host":
            host = value
        elif lower == "content-type":
            content_type = value
        else:
            fixed[name] = value
    return fixed, host, content_type


def _header_block(headers: Mapping[str, str]) -> bytes:
    """``Name: value\\r\\n`` lines; names must be tokens and values free of CR, LF and NUL, so
    nothing can be smuggled into the request head."""
    out = []
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"invalid header name: {name!r}")
        if _BAD_VALUE.search(value):
            raise ValueError(f"header {name!r} has a CR, LF or NUL in its value")
        out.append(f"{name}: {value}\r\n")
    return "".join(out).encode("utf-8")
