"""A provider-shaped attacker on a real relay pool: it watches job requests like a provider and
publishes whatever its script says (forged, replayed, over-priced, many votes ...).

    async with Attacker([relay.url], lambda a, req: [build_result(a.keys, req, "5")]) as evil:
        ...
        evil.sent  # every event it got a relay to accept
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from client.dvm.nip90 import JobRequest, parse_request
from client.net.pool import RelayPool
from client.nostr.errors import PublishError
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys

Script = Callable[["Attacker", JobRequest], Awaitable[Sequence[Event]] | Sequence[Event]]


class Attacker:
    def __init__(self, urls: list[str], script: Script, *, keys: Keys | None = None) -> None:
        self.keys = keys or Keys.generate()
        self.urls = urls
        self.script = script
        self.pool = RelayPool(urls, keys=self.keys)
        self.seen: list[JobRequest] = []
        self.sent: list[Event] = []
        self.refused: list[tuple[Event, str]] = []
        self.done = asyncio.Event()  # set after the script's events for a job are out
        self._task: asyncio.Task[None] | None = None

    @property
    def pubkey(self) -> str:
        return self.keys.public_key

    async def __aenter__(self) -> Attacker:
        await self.pool.start()
        sub = self.pool.subscribe(Filter(kinds=[5050]))
        await sub.wait_eose()
        self._task = asyncio.create_task(self._serve(sub))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.pool.close()

    async def publish(self, event: Event) -> bool:
        try:
            await self.pool.publish(event)
        except PublishError as exc:
            self.refused.append((event, str(exc)))
            return False
        self.sent.append(event)
        return True

    async def _serve(self, sub: Any) -> None:
        async for event in sub:
            try:
                req = parse_request(event, keys=self.keys, verify=False)
            except Exception:
                continue
            self.seen.append(req)
            out = self.script(self, req)
            events = await out if isinstance(out, Awaitable) else out
            for ev in events:
                await self.publish(ev)
            self.done.set()
