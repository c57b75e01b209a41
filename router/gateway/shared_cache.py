"""The response cache shared through Redis (``state.redis`` with ``cache:`` on): a deterministic
request one gateway answered is a hit on every other. The same rules as the process's cache
(:mod:`.cache`: which requests, which answers, what a hit costs) and the same bounds: entries
live ``ttl_s``, at most ``max_entries`` are kept (least recently used go first, scored by
Redis' own clock) and an answer over ``MAX_ENTRY_BYTES`` is not kept. Identical requests that
arrive together are answered once per gateway (the waiting is the process's); across gateways
each may go upstream once before the first answer is stored.

While Redis is away the process's cache answers alone.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from .cache import MAX_ENTRY_BYTES, Cached

if TYPE_CHECKING:
    from .redis_link import RedisLink

log = logging.getLogger("router.gateway.cache")

MAX_HEADER_BYTES = 16 << 10  # an answer's headers, stored beside its body
_INDEX = "swarm:cache:index"
_PREFIX = "swarm:cache:entry:"

# KEYS: the entry, the index (a sorted set of entries by last use). ARGV: the entry's name in
# the index. Returns {value, ms left} and marks it used, or nil.
_GET = """
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return false
end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
return {v, redis.call('PTTL', KEYS[1])}
"""

# KEYS: the entry, the index. ARGV: value, ttl ms, max entries, the entry's name, the entries'
# key prefix. Stores it, forgets entries past their ttl, and evicts the least recently used
# beyond max entries (standalone Redis: their keys are named here).
_PUT = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl, most = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now_ms, ARGV[4])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms - ttl)
local n = redis.call('ZCARD', KEYS[2])
if n > most then
  local old = redis.call('ZRANGE', KEYS[2], 0, n - most - 1)
  for _, name in ipairs(old) do
    redis.call('DEL', ARGV[5] .. name)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - most - 1)
end
return 0
"""


def encode(entry: Cached) -> bytes | None:
    """The stored form: the headers as one JSON line, then the body; None when too large."""
    head = json.dumps(entry.headers, separators=(",", ":")).encode()
    if len(entry.body) > MAX_ENTRY_BYTES or len(head) > MAX_HEADER_BYTES:
        return None
    return head + b"\n" + entry.body


def decode(raw: bytes, stored_at: float) -> Cached:
    """An entry as :func:`encode` stored it; ValueError for anything else."""
    head, sep, body = raw.partition(b"\n")
    headers = json.loads(head) if sep else None
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ValueError("not a cached answer")
    if len(body) > MAX_ENTRY_BYTES:
        raise ValueError("a cached answer over the size limit")
    return Cached(body, headers, stored_at)


class SharedCache:
    """The answers of every gateway on ``link``'s Redis, under the process's cache."""

    def __init__(self, link: RedisLink, ttl_s: float, max_entries: int) -> None:
        self.link = link
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._get = link.client.register_script(_GET)
        self._put = link.client.register_script(_PUT)
        self.hits = 0

    async def get(self, key: str, now: float) -> Cached | None:
        """The stored answer for ``key`` (``stored_at`` set so that it expires here when it
        does in Redis; ``now`` is the process's clock), or None."""
        keys = [_PREFIX + key, _INDEX]

        async def run(_client: Any) -> Any:
            return await self._get(keys=keys, args=[key])

        got = await self.link.call(run)
        if not got:
            return None
        try:
            left_s = max(0, int(got[1])) / 1000
            entry = decode(bytes(got[0]), now - max(0.0, self.ttl_s - left_s))
        except (ValueError, TypeError, IndexError) as exc:
            log.warning("ignoring a cache entry in Redis that is not one: %s", exc)
            return None
        self.hits += 1
        return entry

    async def put(self, key: str, entry: Cached) -> None:
        """Keep ``entry`` for every gateway (an answer too large is not kept)."""
        raw = encode(entry)
        if raw is None:
            return
        keys = [_PREFIX + key, _INDEX]
        args = [raw, max(1, int(self.ttl_s * 1000)), self.max_entries, key, _PREFIX]

        async def run(_client: Any) -> Any:
            return await self._put(keys=keys, args=args)

        await self.link.call(run)
