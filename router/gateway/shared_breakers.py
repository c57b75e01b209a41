"""Circuit breakers shared through Redis (``state.redis``): a breaker that opens on one gateway
is open on all of them, and a half-open backend gets one probe at a time across the fleet.

The state machine stays the router's (router/circuit_breaker.py, pure); this is the thin shell
that publishes each transition and takes the others'. Per backend, Redis keeps the last
transition in a hash (for gateways that start or reconnect later) and publishes it on one
channel; the half-open probe is a lock with a TTL (a gateway that dies mid-probe frees it by
itself). Times are Redis' own (``TIME``) or durations, never one machine's clock read by
another. While Redis is away each gateway's breakers are its own, as without Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from ..circuit_breaker import BreakerShare, CircuitState
from .redis_link import ERRORS, RedisLink

if TYPE_CHECKING:
    from ..router import LmRouter

log = logging.getLogger("router.gateway.breakers")

CHANNEL = "swarm:breakers"
STATE_TTL_S = 86_400  # a breaker nobody moved for a day is forgotten (read as closed)
_QUEUE = 1024  # transitions waiting to be published; more are dropped (Redis is too slow)

# KEYS: the backend's state hash, its probe lock. ARGV: state, open for ms, probe successes,
# origin, channel, backend. Stores the transition (a closed breaker is no key), ends the
# origin's probe lock (the probe had its outcome) and tells the other gateways.
_PUBLISH = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] == 'closed' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'state', ARGV[1], 'until', now_ms + tonumber(ARGV[2]),
             'successes', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[7])
end
if redis.call('GET', KEYS[2]) == ARGV[4] then
  redis.call('DEL', KEYS[2])
end
redis.call('PUBLISH', ARGV[5], cjson.encode({b = ARGV[6], s = ARGV[1], o = tonumber(ARGV[2]),
                                             n = tonumber(ARGV[3]), from = ARGV[4]}))
return 0
"""

# KEYS: state hashes. Returns state, ms still open, probe successes for each ('' when closed).
_READ = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'state', 'until', 'successes')
  if v[1] then
    table.insert(out, v[1])
    table.insert(out, math.max(0, tonumber(v[2]) - now_ms))
    table.insert(out, tonumber(v[3]))
  else
    table.insert(out, '')
    table.insert(out, 0)
    table.insert(out, 0)
  end
end
return out
"""

# KEYS: the probe lock. ARGV: origin, ttl ms. -1: the probe is the origin's (taken, or already
# its own); else the ms another gateway's probe may still take.
_PROBE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return -1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return -1
end
return math.max(0, redis.call('PTTL', KEYS[1]))
"""


def _state_key(backend: str) -> str:
    return f"swarm:breaker:{backend}"


def _probe_key(backend: str) -> str:
    return f"swarm:breaker-probe:{backend}"


def parse_share(state: str, open_ms: int, successes: int) -> BreakerShare:
    """A transition as Redis holds it; ValueError for anything else."""
    return BreakerShare(CircuitState(state), max(0, open_ms) / 1000, successes)


class SharedBreakers:
    """The router's :class:`~router.router.BreakerSync` over ``link``'s Redis. :meth:`attach`
    a router (again after a reload), :meth:`start` the listener, :meth:`aclose` at the end."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.router: LmRouter | None = None
        self._publish = link.client.register_script(_PUBLISH)
        self._read = link.client.register_script(_READ)
        self._probe = link.client.register_script(_PROBE)
        self._queue: asyncio.Queue[tuple[str, BreakerShare]] = asyncio.Queue(_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        #: Transitions taken from other gateways (their messages, and the stored states read on
        #: subscribing), and times the listener subscribed: tests wait with :meth:`wait_for`.
        self.adopted = 0
        self.subscribed = 0
        self._counted = asyncio.Condition()

    def attach(self, router: LmRouter) -> None:
        """Share ``router``'s breakers (the gateway's current one)."""
        self.router = router
        router.share_breakers(self)
        if self.subscribed:  # a reload: the new router starts from the fleet's states
            self._spawn(self._resync())

    async def start(self) -> None:
        self._spawn(self._listen())
        self._spawn(self._publisher())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.router is not None:
            self.router.share_breakers(None)

    # --- the router's side (BreakerSync) ------------------------------------------------------

    def changed(self, backend: str, share: BreakerShare) -> None:
        try:
            self._queue.put_nowait((backend, share))
        except asyncio.QueueFull:
            log.warning("breaker transition of %s not shared: Redis is not keeping up", backend)

    async def take_probe(self, backend: str, ttl_s: float) -> float | None:
        key = _probe_key(backend)

        async def run(_client: Any) -> Any:
            return await self._probe(keys=[key], args=[self.link.origin, int(ttl_s * 1000)])

        got = await self.link.call(run)
        if got is None or int(got) < 0:
            return None  # ours, or Redis is away: this gateway decides alone
        return int(got) / 1000

    # --- Redis' side --------------------------------------------------------------------------

    async def _publisher(self) -> None:
        """Publish this gateway's transitions in the order they happened."""
        while True:
            backend, share = await self._queue.get()
            keys = [_state_key(backend), _probe_key(backend)]
            args = [
                share.state.value,
                int(share.open_for_s * 1000),
                share.successes,
                self.link.origin,
                CHANNEL,
                backend,
                STATE_TTL_S,
            ]

            async def run(_client: Any, keys: list[str] = keys, args: list[Any] = args) -> Any:
                return await self._publish(keys=keys, args=args)

            await self.link.call(run)

    async def _listen(self) -> None:
        """Take the other gateways' transitions; after Redis was away, subscribe again."""
        while True:
            wait = self.link.retry_in()
            if wait > 0:
                await asyncio.sleep(wait)  # Redis is away: try when the link tries again
            pubsub = self.link.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                await self._sync()
                self.subscribed += 1
                await self._notify()
                async for message in pubsub.listen():
                    self._take(message)
            except ERRORS as exc:
                self.link.failed(exc)
            except Exception:  # a bug must not end sharing for good
                log.exception("breaker listener failed")
                self.link.failed(ConnectionError("breaker listener failed"))
            finally:
                with contextlib.suppress(*ERRORS):
                    await pubsub.aclose()

    async def _resync(self) -> None:
        try:
            await self._sync()
        except ERRORS as exc:  # the listener reads them again when it subscribes again
            self.link.failed(exc)

    async def _sync(self) -> None:
        """Take the stored states (a gateway that starts, or comes back after Redis was away,
        missed the messages): the fleet's open breakers, and its half-open ones where this
        gateway's is closed (one this gateway holds open on its own evidence stays open)."""
        router = self.router
        if router is None:
            return
        names = list(router.breaker_shares())
        keys = [_state_key(n) for n in names]

        async def run(_client: Any) -> Any:
            return await self._read(keys=keys)

        got = await self.link.call(run)
        if got is None:
            raise ConnectionError("Redis did not answer while reading the breakers")
        local = router.breaker_shares()
        for i, name in enumerate(names):
            raw, open_ms, successes = got[3 * i : 3 * i + 3]
            state = raw.decode() if isinstance(raw, bytes) else str(raw)
            if not state:
                continue  # closed across the fleet: this gateway's own state stands
            try:
                share = parse_share(state, int(open_ms), int(successes))
            except ValueError:
                log.warning("ignoring a breaker state in Redis that is not one: %r", state)
                continue
            if local[name].state is CircuitState.CLOSED or share.state is CircuitState.OPEN:
                router.adopt_breaker(name, share)
                self.adopted += 1
        await self._notify()

    def _take(self, message: dict[str, Any]) -> None:
        if message.get("type") != "message":
            return
        try:
            data = json.loads(message["data"])
            if data["from"] == self.link.origin:
                return
            share = parse_share(str(data["s"]), int(data["o"]), int(data["n"]))
            backend = str(data["b"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a breaker message that is not one: %s", exc)
            return
        router = self.router
        if router is not None and router.adopt_breaker(backend, share):
            self.adopted += 1
            asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._counted:
            self._counted.notify_all()

    async def wait_for(self, *, adopted: int = 0, subscribed: int = 0) -> None:
        """Wait until this many transitions were taken and subscriptions made (bound it with a
        timeout)."""
        async with self._counted:
            await self._counted.wait_for(
                lambda: self.adopted >= adopted and self.subscribed >= subscribed
            )
