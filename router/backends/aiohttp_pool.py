"""The OpenAI-compatible backend's other transport: :class:`AiohttpPool`, aiohttp's client
behind the calls :class:`~.http1.Http1Pool` offers (``request``, ``stream``, ``close``).

``OpenAICompatBackend(transport="aiohttp")`` (config: ``transport: aiohttp``) uses it. It keeps
Http1Pool's contract where it matters: failures are ``ConnectionError``s, timeouts
``TimeoutError``s, a non-idempotent request is never sent twice (aiohttp retries a dropped
reused connection for idempotent methods only), answers and streamed lines are capped
(``max_response_bytes``, ``max_line_bytes``), and configured headers cannot set the framing.
``timeout_s`` bounds a whole non-streamed call; for a stream, each wait for more body bytes.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import NoReturn

import aiohttp

from .http1 import (
    _CLIENT_OWNED,
    DEFAULT_MAX_LINE_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    Http1Error,
    LineTooLong,
    ResponseTooLarge,
    UpstreamClosed,
    capped_lines,
    configured_headers,
)


class AiohttpAnswer:
    """A complete answer: ``status``, ``headers`` (case-insensitive), ``body``."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class AiohttpStreamAnswer:
    """A streamed answer: ``status`` and ``headers``, then ``read()``, ``iter_chunks()`` or
    ``iter_lines()``."""

    __slots__ = ("_max_body", "_max_line", "_origin", "_resp", "headers", "status")

    def __init__(
        self, resp: aiohttp.ClientResponse, origin: str, max_line: int, max_body: int
    ) -> None:
        self._resp = resp
        self._origin = origin
        self._max_line = max_line
        self._max_body = max_body
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except aiohttp.ClientError as exc:
            if isinstance(exc, TimeoutError):  # aiohttp's read timeout is both
                raise
            raise UpstreamClosed(f"{self._origin}: {exc}") from exc

    async def read(self) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in self.iter_chunks():
            size += len(chunk)
            if size > self._max_body:
                raise ResponseTooLarge(f"{self._origin}: answer larger than {self._max_body} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def iter_lines(self) -> AsyncIterator[bytes]:
        """Lines as :meth:`~.http1.StreamAnswer.iter_lines` gives them, with the same cap."""
        return capped_lines(self.iter_chunks(), self._max_line, self._too_long)

    def _too_long(self) -> NoReturn:
        raise LineTooLong(f"{self._origin}: a streamed line is longer than {self._max_line} bytes")


class _StreamContext:
    __slots__ = ("_args", "_pool", "_resp")

    def __init__(
        self,
        pool: AiohttpPool,
        method: str,
        path: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        self._pool = pool
        self._args = (method, path, body, headers)
        self._resp: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> AiohttpStreamAnswer:
        pool = self._pool
        method, path, body, headers = self._args
        session = pool._session()
        try:
            self._resp = await session.request(
                method,
                pool.root + path,
                data=body,
                headers=pool._headers(body, headers),
                timeout=pool._stream_timeout,
                auto_decompress=False,
            )
        except aiohttp.ClientError as exc:
            if isinstance(exc, TimeoutError):
                raise
            raise Http1Error(f"{pool.root}: {exc}") from exc
        return AiohttpStreamAnswer(
            self._resp, pool.root, pool.max_line_bytes, pool.max_response_bytes
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        resp = self._resp
        self._resp = None
        if resp is not None:
            if exc_type is not None:
                resp.close()  # the connection is in an unknown state
            else:
                resp.release()


class AiohttpPool:
    """aiohttp sessions (one per event loop) to one origin ``root``, with Http1Pool's calls."""

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
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.root = root.rstrip("/")
        fixed, host, content_type = configured_headers(headers, content_type)
        if host is not None:  # aiohttp sends a configured Host instead of its own
            fixed["Host"] = host
        fixed.setdefault("User-Agent", "nostr-swarm")
        self._fixed = fixed
        self._content_type = content_type
        self.max_connections = max_connections
        self.max_response_bytes = max_response_bytes
        self.max_line_bytes = max_line_bytes
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_s, sock_connect=connect_timeout_s, connect=connect_timeout_s
        )
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=timeout_s
        )
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession]
        self._sessions = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"AiohttpPool({self.root})"

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections, limit_per_host=self.max_connections
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers=self._fixed,
                # as Http1Pool: answers arrive uncompressed (and are read as they are)
                skip_auto_headers=("Accept-Encoding",),
            )
            self._sessions[loop] = session
        return session

    def _headers(self, body: bytes | None, extra: Mapping[str, str] | None) -> dict[str, str]:
        out: dict[str, str] = {}
        if body is not None and self._content_type is not None:
            out["Content-Type"] = self._content_type
        if extra:
            for name in extra:
                if name.lower() in _CLIENT_OWNED or name.lower() == "host":
                    raise ValueError(f"header {name!r} is set by the HTTP client itself")
            out.update(extra)
        return out

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AiohttpAnswer:
        session = self._session()
        try:
            async with session.request(
                method,
                self.root + path,
                data=body,
                headers=self._headers(body, headers),
                auto_decompress=False,
            ) as resp:
                length = resp.content_length
                if length is not None and length > self.max_response_bytes:
                    raise ResponseTooLarge(
                        f"{self.root}: answer larger than {self.max_response_bytes} bytes"
                    )
                parts: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_any():
                    size += len(chunk)
                    if size > self.max_response_bytes:
                        raise ResponseTooLarge(
                            f"{self.root}: answer larger than {self.max_response_bytes} bytes"
                        )
                    parts.append(chunk)
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                return AiohttpAnswer(resp.status, resp.headers, data)
        except aiohttp.ClientError as exc:
            if isinstance(exc, TimeoutError):
                raise
            raise Http1Error(f"{self.root}: {exc}") from exc

    def stream(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _StreamContext:
        return _StreamContext(self, method, path, body, headers)

    async def close(self) -> None:
        """Close this event loop's session (other loops' go with their loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        session = self._sessions.pop(loop, None)
        if session is not None and not session.closed:
            await session.close()
