"""A response cache for identical deterministic requests (``cache: {ttl_s, max_entries}``).

A request is deterministic when it asks for ``temperature: 0`` or gives a ``seed``; identical
means the same endpoint, model and body (``stream`` aside). Concurrent identical requests are
answered once: the first one goes upstream, the others wait for its answer. Bounded in entries
and in the size of each answer; least recently used entries go first. Pure except for the
futures it hands out; time comes from the caller.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

MAX_ENTRY_BYTES = 1 << 20  # answers larger than this are not kept


@dataclass(frozen=True, slots=True)
class Cached:
    body: bytes
    headers: dict[str, str]
    stored_at: float


def deterministic(body: dict[str, Any]) -> bool:
    return body.get("temperature") == 0 or isinstance(body.get("seed"), int)


def cache_key(endpoint: str, model: str, body: dict[str, Any]) -> str | None:
    """The key for a cacheable request, or None (streamed, or not deterministic)."""
    if body.get("stream") is True or not deterministic(body):
        return None
    rest = {k: v for k, v in body.items() if k not in ("stream", "stream_options", "user")}
    try:
        raw = json.dumps([endpoint, model, rest], sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(raw.encode()).hexdigest()


class ResponseCache:
    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Cached] = OrderedDict()
        self._flights: dict[str, asyncio.Future[Cached | None]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float) -> Cached | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now - entry.stored_at > self.ttl_s:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def in_flight(self, key: str) -> asyncio.Future[Cached | None] | None:
        """The answer an identical request in progress will give (await it), if any."""
        return self._flights.get(key)

    def begin(self, key: str) -> None:
        """This request goes upstream; identical ones arriving now wait for it."""
        self.misses += 1
        self._flights[key] = asyncio.get_running_loop().create_future()

    def finish(self, key: str, entry: Cached | None) -> None:
        """The upstream answered (``entry``) or failed (None: the waiters go upstream too)."""
        fut = self._flights.pop(key, None)
        if entry is not None and len(entry.body) <= MAX_ENTRY_BYTES:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        if fut is not None and not fut.done():
            fut.set_result(entry)
