"""RelayPool: several relay connections behind one publish and one merged, deduplicated,
verified subscription stream.

::

    async with RelayPool(["ws://127.0.0.1:7777", "wss://relay.example"]) as pool:
        async with pool.subscribe([Filter(kinds=[6050, 7000], tags={"e": [job_id]})]) as sub:
            await pool.publish(request)              # {url: (accepted, message)}
            async for event in sub:                  # verified, each event once
                ...

- Entering connects every relay at once and returns when each first attempt has finished (a
  dead or silent relay costs at most ``connect_timeout``); dead relays keep retrying with
  exponential backoff and jitter, and :meth:`RelayPool.status` reports them.
- :meth:`RelayPool.publish` sends to every relay and returns as soon as one relay accepted and
  every relay that was connected has answered (``wait_all=True``: every relay, up to the timeout);
  it raises :class:`~client.nostr.errors.PublishError` when none accepted.
- A subscription verifies each event (id and signature) and checks it against its filters
  before handing it on; repeats from other relays or from a re-subscription are dropped by id.
  Its queue is bounded: when the consumer falls ``queue_size`` events behind, new events are
  dropped and counted (``Subscription.dropped``) rather than growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Iterable, Sequence
from types import TracebackType

from client.net.relay import RelayConnection, RelayStatus, RelaySub
from client.nostr.errors import PublishError, RelayError
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys

log = logging.getLogger("client.net.pool")

DEFAULT_QUEUE = 10_000
SEEN_CAP = 100_000

_END = object()


class Subscription:
    """A merged subscription: async iterator of verified, unique events; an async context
    manager that closes it on exit. Counters: ``duplicates``, ``rejected`` (forged or not
    matching the filters), ``dropped`` (queue full)."""

    def __init__(
        self, pool: RelayPool, sub_id: str, filters: tuple[Filter, ...], queue_size: int
    ) -> None:
        self.id = sub_id
        self.filters = filters
        self._pool = pool
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=queue_size)
        self._seen: dict[str, None] = {}
        self.duplicates = 0
        self.rejected = 0
        self.dropped = 0
        self.closed_by: dict[str, str] = {}
        self._eose: set[str] = set()
        self._eose_event = asyncio.Event()
        self._closed = False
        self._ended = False

    # --- fed by relay readers ----------------------------------------------------------------

    def _on_event(self, relay: RelayConnection, event: Event) -> None:
        if self._closed:
            return
        if event.id in self._seen:
            self.duplicates += 1
            return
        if not any(f.matches(event) for f in self.filters):
            self.rejected += 1
            log.debug("sub %s: %s sent an event outside the filters", self.id, relay.url)
            return
        # Verify after the dedupe (cheap) but before remembering the id, so a forgery that
        # borrows a real event's id cannot shadow the real event.
        if not event.verify():
            self.rejected += 1
            log.debug("sub %s: %s sent a forged event %s", self.id, relay.url, event.id[:12])
            return
        self._seen[event.id] = None
        if len(self._seen) > SEEN_CAP:
            del self._seen[next(iter(self._seen))]
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("sub %s: consumer too slow, %d events dropped", self.id, self.dropped)

    def _on_eose(self, relay: RelayConnection) -> None:
        self._eose.add(relay.url)
        self._check_eose()

    def _on_closed(self, relay: RelayConnection, message: str) -> None:
        self.closed_by[relay.url] = message
        self._check_eose()
        if len(self.closed_by) >= len(self._pool.relays) and not self._ended:
            self._ended = True
            # Past a full queue the end marker must still get through.
            if self._queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    self._queue.get_nowait()
                    self.dropped += 1
            self._queue.put_nowait(_END)

    def _check_eose(self) -> None:
        relays = self._pool.relays
        live = [r for r in relays if r.connected.is_set() and r.url not in self.closed_by]
        if all(r.url in self._eose for r in live):
            self._eose_event.set()

    # --- consumer side ------------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self._closed:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _END:
            reasons = "; ".join(f"{u}: {m}" for u, m in self.closed_by.items())
            raise RelayError(f"subscription closed by every relay ({reasons})")
        return item  # type: ignore[return-value]

    def get_nowait(self) -> Event | None:
        """The next queued event, or None."""
        try:
            item = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        if item is _END:
            self._queue.put_nowait(_END)
            return None
        return item  # type: ignore[return-value]

    async def wait_eose(self) -> None:
        """Until every connected relay has sent EOSE (or closed the subscription)."""
        self._check_eose()
        await self._eose_event.wait()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool._unsubscribe(self.id)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RelayPool:
    """Connections to several relays. Use as an async context manager."""

    def __init__(
        self,
        urls: Iterable[str],
        *,
        keys: Keys | None = None,
        connect_timeout: float = 5.0,
        publish_timeout: float = 5.0,
        queue_size: int = DEFAULT_QUEUE,
        backoff_min: float = 0.1,
        backoff_max: float = 30.0,
        resubscribe_slack: int = 30,
    ) -> None:
        unique = list(dict.fromkeys(u.strip() for u in urls if u and u.strip()))
        if not unique:
            raise RelayError("a relay pool needs at least one relay URL")
        self.keys = keys
        self.connect_timeout = connect_timeout
        self.publish_timeout = publish_timeout
        self.queue_size = queue_size
        self.relays: list[RelayConnection] = [
            RelayConnection(
                u,
                auth_keys=keys,
                connect_timeout=connect_timeout,
                backoff_min=backoff_min,
                backoff_max=backoff_max,
                resubscribe_slack=resubscribe_slack,
            )
            for u in unique
        ]
        self._subs: dict[str, Subscription] = {}
        self._ids = itertools.count(1)
        self._prefix = os.urandom(4).hex()
        self._background: set[asyncio.Task[tuple[bool, str]]] = set()
        self._started = False

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.relays]

    def connected_urls(self) -> list[str]:
        return [r.url for r in self.relays if r.connected.is_set()]

    def status(self) -> dict[str, RelayStatus]:
        return {r.url: r.status() for r in self.relays}

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect every relay; return once each first attempt has ended (success or not)."""
        if self._started:
            return
        self._started = True
        for r in self.relays:
            r.start()
        waits = [asyncio.create_task(r.wait_first_attempt()) for r in self.relays]
        # open_timeout bounds each attempt; the margin covers a slow TCP connect on top.
        _, pending = await asyncio.wait(waits, timeout=self.connect_timeout + 1.0)
        for t in pending:
            t.cancel()
        dead = [r.url for r in self.relays if not r.connected.is_set()]
        if dead:
            log.warning("relays not connected yet (retrying): %s", ", ".join(dead))

    async def close(self) -> None:
        for sub in list(self._subs.values()):
            sub.close()
        for t in list(self._background):
            t.cancel()
        await asyncio.gather(*(r.close() for r in self.relays), return_exceptions=True)

    async def __aenter__(self) -> RelayPool:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- publish -----------------------------------------------------------------------------

    async def publish(
        self, event: Event, *, ok_timeout: float | None = None, wait_all: bool = False
    ) -> dict[str, tuple[bool, str]]:
        """Send ``event`` to every relay; returns ``{url: (accepted, message)}``. Relays that
        had not answered when this returns are listed as ``(False, "pending: …")`` and keep
        trying in the background until the timeout. Raises PublishError if none accepted."""
        limit = self.publish_timeout if ok_timeout is None else ok_timeout
        if len(self.relays) == 1:  # no fan-out to manage: skip the task and the wait set
            relay = self.relays[0]
            result = {relay.url: await relay.publish(event, limit)}
            if not result[relay.url][0]:
                raise _refused(event, result)
            return result
        live = {r.url for r in self.relays if r.connected.is_set()}
        tasks = {
            asyncio.create_task(r.publish(event, limit), name=f"publish {r.url}"): r.url
            for r in self.relays
        }
        results: dict[str, tuple[bool, str]] = {}
        pending: set[asyncio.Task[tuple[bool, str]]] = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                results[tasks[t]] = t.result()
            if wait_all:
                continue
            accepted = any(ok for ok, _ in results.values())
            if accepted and live.issubset(results):
                break
        for t in pending:
            results[tasks[t]] = (False, "pending: no answer yet")
            self._background.add(t)
            t.add_done_callback(self._background.discard)
        if not any(ok for ok, _ in results.values()):
            raise _refused(event, results)
        return results

    # --- subscribe ---------------------------------------------------------------------------

    def subscribe(
        self,
        filters: Filter | Sequence[Filter],
        *,
        sub_id: str | None = None,
        queue_size: int | None = None,
    ) -> Subscription:
        """Open a subscription on every relay now (its REQ goes out before anything published
        after this call on the same relay)."""
        flist = (filters,) if isinstance(filters, Filter) else tuple(filters)
        if not flist:
            raise RelayError("subscribe needs at least one filter")
        sid = sub_id or f"{self._prefix}-{next(self._ids)}"
        if sid in self._subs:
            raise RelayError(f"subscription id {sid!r} is already open")
        sub = Subscription(self, sid, flist, queue_size or self.queue_size)
        self._subs[sid] = sub
        for r in self.relays:
            r.subscribe(sid, RelaySub(flist, sub._on_event, sub._on_eose, sub._on_closed))
        return sub

    def _unsubscribe(self, sub_id: str) -> None:
        self._subs.pop(sub_id, None)
        for r in self.relays:
            r.unsubscribe(sub_id)


def _refused(event: Event, results: dict[str, tuple[bool, str]]) -> PublishError:
    detail = "; ".join(f"{u}: {m}" for u, (_, m) in results.items())
    return PublishError(f"no relay accepted event {event.id[:12]}…: {detail}", results)
