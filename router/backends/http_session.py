"""A pooled aiohttp session per event loop, shared by the HTTP backends."""

from __future__ import annotations

import asyncio
import weakref

import aiohttp


class SessionPool:
    """Hands out one ``aiohttp.ClientSession`` per running loop (sessions cannot cross loops),
    each with a bounded keep-alive connection pool."""

    def __init__(
        self,
        *,
        timeout_s: float | None,
        connect_timeout_s: float | None,
        max_connections: int,
        headers: dict[str, str],
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_s, sock_connect=connect_timeout_s, connect=connect_timeout_s
        )
        self._max_connections = max_connections
        self._headers = headers
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession]
        self._sessions = weakref.WeakKeyDictionary()

    def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=self._max_connections, ttl_dns_cache=300
            )
            session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, headers=self._headers
            )
            self._sessions[loop] = session
        return session

    async def close(self) -> None:
        """Close this loop's session (sessions of other loops are dropped with their loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        session = self._sessions.pop(loop, None)
        if session is not None and not session.closed:
            await session.close()
