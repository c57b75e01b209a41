"""Key limits counted in Redis (``state.redis``), so rpm, tpm and max_parallel hold across every
gateway instance, not per process. One admission is one Lua call, atomic on the server: it
checks the key's slots, this minute's requests and tokens, and takes all of them or none. The
minute is Redis' own (``TIME``), so instances whose clocks disagree still count in the same
window. When Redis is away (:class:`~.redis_link.RedisLink` returns None) the key's
:class:`~.key_limits.KeyGate` counts in its own process instead."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .redis_link import RedisLink

SLOT_TTL_S = 600  # a slot nobody gave back (its instance crashed, Redis was away) frees itself
WINDOW_TTL_S = 120  # a minute's counters outlive it by a minute

# KEYS: slots (a sorted set: one member per request in flight, scored by when it expires), rpm
# prefix, tpm prefix. ARGV: max_parallel, rpm, tpm (-1: no limit), tokens, slot ttl ms, window
# ttl s, this request's slot id. Returns {0, minute} when taken, {which, wait ms} when refused
# (1 slots, 2 requests per minute, 3 tokens per minute). Standalone Redis: the minute's keys are
# named here, not passed in.
_TAKE = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local minute = math.floor(now_ms / 60000)
local wait_ms = 60000 - now_ms % 60000
local maxp, rpm, tpm, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local rpm_key = KEYS[2] .. ':' .. minute
local tpm_key = KEYS[3] .. ':' .. minute
if maxp >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
  if redis.call('ZCARD', KEYS[1]) >= maxp then
    return {1, 1000}
  end
end
if rpm >= 0 and tonumber(redis.call('GET', rpm_key) or '0') >= rpm then
  return {2, wait_ms}
end
if tpm >= 0 and tonumber(redis.call('GET', tpm_key) or '0') + n > tpm then
  return {3, wait_ms}
end
if maxp >= 0 then
  redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[5]), ARGV[7])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
if rpm >= 0 then
  redis.call('INCR', rpm_key)
  redis.call('EXPIRE', rpm_key, ARGV[6])
end
if tpm >= 0 then
  redis.call('INCRBY', tpm_key, n)
  redis.call('EXPIRE', tpm_key, ARGV[6])
end
return {0, minute}
"""

# Give back ARGV[1] tokens (negative: count more, with no limit) to a minute that still exists;
# never below zero.
_GIVE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('DECRBY', KEYS[1], ARGV[1]) < 0 then
    redis.call('SET', KEYS[1], 0, 'KEEPTTL')
  end
end
return 0
"""

REFUSED = {1: "max_parallel", 2: "rpm", 3: "tpm"}


@dataclass(frozen=True, slots=True)
class Taken:
    """What one admission took in Redis: its ``slot`` (when the key has max_parallel), this
    minute's request and its ``tokens`` (``minute``: where to correct them later)."""

    minute: int
    slot: str | None
    tokens: int


@dataclass(frozen=True, slots=True)
class Refused:
    """Over ``limit`` (``max_parallel``, ``rpm`` or ``tpm``); may pass in ``wait_s``."""

    limit: str
    wait_s: float


def _limit(value: int | None) -> int:
    return -1 if value is None else value


class SharedCounters:
    """The key counters of every gateway on ``link``'s Redis."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self._slots = itertools.count()
        self._take = link.client.register_script(_TAKE)
        self._give = link.client.register_script(_GIVE)

    @property
    def available(self) -> bool:
        return self.link.available

    async def take(
        self,
        name: str,
        *,
        max_parallel: int | None,
        rpm: int | None,
        tpm: int | None,
        tokens: int,
    ) -> Taken | Refused | None:
        """Take a slot, a request and ``tokens`` for key ``name`` (all or nothing); None when
        Redis is away (count in the process instead)."""
        keys = [f"swarm:slots:{name}", f"swarm:rpm:{name}", f"swarm:tpm:{name}"]
        slot = f"{self.link.origin}:{next(self._slots)}" if max_parallel is not None else None
        args = [
            _limit(max_parallel),
            _limit(rpm),
            _limit(tpm),
            tokens,
            SLOT_TTL_S * 1000,
            WINDOW_TTL_S,
            slot or "",
        ]

        async def run(_client: Any) -> Any:
            return await self._take(keys=keys, args=args)

        got = await self.link.call(run)
        if got is None:
            return None
        code, value = int(got[0]), int(got[1])
        if code:
            return Refused(REFUSED[code], value / 1000)
        return Taken(value, slot, tokens if tpm is not None else 0)

    def release_slot(self, name: str, slot: str) -> None:
        """A request admitted in Redis ended: free its slot (in the background)."""
        key = f"swarm:slots:{name}"

        async def run(client: Any) -> Any:
            return await client.zrem(key, slot)

        self.link.spawn(run)

    def correct_tokens(self, name: str, minute: int, extra: int) -> None:
        """Give back ``extra`` tokens counted in ``minute`` (negative: count more)."""
        if extra:
            self._give_back(f"swarm:tpm:{name}:{minute}", extra)

    def _give_back(self, key: str, n: int) -> None:
        async def run(_client: Any) -> Any:
            return await self._give(keys=[key], args=[n])

        self.link.spawn(run)
