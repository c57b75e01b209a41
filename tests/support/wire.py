"""A small raw websocket client for the relay tests: send a message, await the next replies."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State

from client.nostr.event import Event

TIMEOUT = 5.0


class Wire:
    """One raw websocket to the relay; replies are parsed JSON lists."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str) -> Wire:
        return cls(await connect(url, compression=None, max_size=None))

    async def close(self) -> None:
        # Closing a connection the relay already closed can raise AttributeError from inside
        # asyncio when a large frame was still being written (a race in CPython's selector
        # transport, which then calls abort() on a fully closed transport): skip it.
        if self.ws.state is not State.CLOSED:
            await self.ws.close()

    async def __aenter__(self) -> Wire:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, message: Any) -> None:
        await self.ws.send(message if isinstance(message, str | bytes) else json.dumps(message))

    async def recv(self, wait: float = TIMEOUT) -> list[Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), wait))

    async def publish(self, event: Event) -> list[Any]:
        """Send EVENT and return its OK (other messages before it are skipped)."""
        await self.send('["EVENT",' + event.to_json() + "]")
        while True:
            msg = await self.recv()
            if msg[0] == "OK" and msg[1] == event.id:
                return msg

    async def req(
        self, sub_id: str, *filters: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        """Send REQ; return the stored events up to EOSE and the closing message (EOSE/CLOSED)."""
        await self.send(["REQ", sub_id, *filters])
        events: list[dict[str, Any]] = []
        while True:
            msg = await self.recv()
            if msg[0] == "EVENT" and msg[1] == sub_id:
                events.append(msg[2])
            elif msg[0] in ("EOSE", "CLOSED") and msg[1] == sub_id:
                return events, msg

    async def next_of(self, verb: str, wait: float = TIMEOUT) -> list[Any]:
        while True:
            msg = await self.recv(wait)
            if msg[0] == verb:
                return msg
