"""Key limits counted in Redis (``state.redis``), so rpm, tpm and max_parallel hold across
every gateway instance, not per process. Counters are minute windows and a slot count, each
check-and-take one Lua call (atomic on the server). When Redis cannot be reached the gateway
falls back to counting in its own process, says so once, and tries Redis again after
``retry_s``: limits loosen while it is away, money is never affected (budgets live in the
state database)."""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("router.gateway.limits")

# +n, and give it back at once if that passes the limit; the key expires by itself.
_TAKE = """
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) >= 0 and v > tonumber(ARGV[2]) then
  redis.call('DECRBY', KEYS[1], ARGV[1])
  return -1
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return v
"""
SLOT_TTL_S = 600  # a crashed instance's slots free themselves


class SharedCounters:
    def __init__(self, url: str, *, retry_s: float = 5.0, timeout_s: float = 0.5) -> None:
        import redis

        self.url = url
        self._redis: Any = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._take = self._redis.register_script(_TAKE)
        self.retry_s = retry_s
        self._down_until = 0.0
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        if self.available:
            log.warning(
                "Redis at %s is unreachable (%s): key limits count per process until it is back",
                self.url,
                exc,
            )
        self._down_until = time.monotonic() + self.retry_s

    def take(self, key: str, n: int, limit: int, ttl_s: int) -> bool | None:
        """Take ``n`` under ``limit``: True taken, False over the limit, None Redis is away."""
        if not self.available:
            return None
        try:
            taken = int(self._take(keys=[key], args=[n, limit, ttl_s]))
        except self._errors as exc:
            self._failed(exc)
            return None
        if self._down_until:
            log.info("Redis at %s answers again: key limits are shared", self.url)
            self._down_until = 0.0
        return taken >= 0

    def give(self, key: str, n: int) -> None:
        """Give back ``n`` (negative: take more without a limit)."""
        if not self.available or n == 0:
            return
        try:
            self._redis.decrby(key, n)
        except self._errors as exc:
            self._failed(exc)

    def close(self) -> None:
        try:
            self._redis.close()
        except Exception:
            pass


def minute_key(kind: str, name: str, now: float) -> tuple[str, float]:
    """The counter of this minute, and seconds until the next one."""
    minute = int(now // 60)
    return f"swarm:{kind}:{name}:{minute}", 60 - (now % 60)
