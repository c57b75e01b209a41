"""The live provider directory: who sells kind-5050 completions right now, from their NIP-89
announcements (kind 31990, ``k`` 5050), which double as heartbeats (docs/provider-guide.md).

::

    directory = ProviderDirectory()                  # clock: time.time unless injected
    async with DirectoryWatcher(pool, directory):    # feeds it from the relays until closed
        for info in directory.alive(model="llama3.2:1b"):
            info.pubkey, info.models, info.price_for("llama3.2:1b"), info.payment, info.last_seen

    directory = await discover(pool)                 # or: one snapshot (stored events, EOSE)

The directory is pure (events and a clock in, values out); announcements and heartbeats are
parsed by :mod:`client.dvm.nip89`, which also builds them for the provider, so both sides read
one format. :class:`DirectoryWatcher` and :func:`discover` are the thin I/O layer over a
:class:`~client.net.pool.RelayPool`.

Rules (the liveness rule itself is ``nip89.ProviderInfo.status``):

- A provider is its public key; only its newest announcement counts (on a ``created_at`` tie the
  lower event id wins, as relays do for addressable events). Older ones arriving later (another
  relay, a re-subscription) change nothing.
- **Alive** when the newest announcement says ``status`` ``online``, has a ``heartbeat`` interval
  and ``now - created_at <= 2 * heartbeat + 60`` (two missed beats plus slack), and its NIP-40
  ``expiration`` has not passed. A graceful stop publishes ``offline``: not alive at once.
- Announcements of other NIP-90 services (no ``nostrSwarm`` object, *foreign* DVMs such as
  nostrdvm's) are read leniently: models from ``nip90Params.model.values``, the price from
  ``amount`` (sats), ``supportsEncryption`` as NIP-44 and NIP-04. They have no ``heartbeat``
  tag; they are alive while their newest kind-11998 heartbeat (nostrdvm, aionostr-dvm: every
  ~300 s, with ``d`` and a NIP-40 ``expiration``) has not expired, or while their announcement
  itself is fresh (as old as two such beats plus slack). Otherwise: ``stale`` once a heartbeat
  was seen, ``unknown`` if none ever was. Selection ranks them below providers with a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from types import TracebackType

# The announcement's values and parsers are client.dvm.nip89's; the names are importable from
# here too, for the directory's readers.
from client.dvm.nip89 import (
    JOB_KIND,
    KIND_HANDLER,
    KIND_HEARTBEAT,
    MAX_BEAT_S,
    SWARM_TOPIC,
    Heartbeat,
    PriceList,
    ProviderInfo,
    Status,
    npub_of,
    parse_announcement,
    parse_heartbeat,
)
from client.net.pool import RelayPool, Subscription
from client.nostr.errors import InvalidAnnouncement
from client.nostr.event import Event
from client.nostr.filter import Filter

log = logging.getLogger("client.customer.directory")

MAX_PENDING_BEATS = 10_000  # beats of keys without an announcement (yet) kept in memory
# Providers silent (or offline) for this long are dropped from memory by prune().
FORGET_AFTER_S = 24 * 3600.0

Clock = Callable[[], float]


# --- the directory (pure) ------------------------------------------------------------------


class ProviderDirectory:
    """Every provider heard of, by public key, from the newest announcement of each. ``clock``
    (seconds, UNIX time) decides who is alive; inject one in tests. ``swarm_only`` ignores
    providers that are not nostr-swarm nodes."""

    def __init__(self, *, clock: Clock = time.time, swarm_only: bool = False) -> None:
        self.clock = clock
        self.swarm_only = swarm_only
        self._by_key: dict[str, ProviderInfo] = {}
        self.version = 0  # goes up on every change (lets readers cache what they derive)
        self.rejected = 0  # announcements that did not parse
        self.superseded = 0  # older or equal announcements that arrived after a newer one
        self._listeners: list[Callable[[ProviderInfo], None]] = []
        self._beats: dict[str, Heartbeat] = {}  # newest kind-11998 beat per key, oldest first

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, pubkey: object) -> bool:
        return pubkey in self._by_key

    def get(self, pubkey: str) -> ProviderInfo | None:
        return self._by_key.get(pubkey)

    def on_change(self, listener: Callable[[ProviderInfo], None]) -> None:
        """Call ``listener(info)`` whenever a provider's entry is added or replaced."""
        self._listeners.append(listener)

    def offer(self, event: Event) -> ProviderInfo | None:
        """Take one announcement (or kind-11998 heartbeat); returns the new entry when it changed
        the directory, else None (not an announcement, not ours with ``swarm_only``, or not newer
        than what we have)."""
        try:
            if event.kind == KIND_HEARTBEAT:
                return self.beat(parse_heartbeat(event))
            info = parse_announcement(event, received_at=self.clock())
        except InvalidAnnouncement as exc:
            self.rejected += 1
            log.debug("announcement %s from %s ignored: %s", event.id[:12], event.pubkey[:12], exc)
            return None
        return self.add(info)

    def add(self, info: ProviderInfo) -> ProviderInfo | None:
        """Put ``info`` in unless what we have is newer (also for providers known otherwise, such
        as a simulator's)."""
        if self.swarm_only and not info.swarm:
            return None
        old = self._by_key.get(info.pubkey)
        beat = self._beats.get(info.pubkey)
        if beat is not None and (info.beat_at is None or beat.created_at > info.beat_at):
            info = replace(info, beat_at=beat.created_at, beat_until=beat.until)
        if old is not None:
            # Relays keep the lower id on a created_at tie; do the same.
            newer = info.created_at > old.created_at or (
                info.created_at == old.created_at and info.event_id < old.event_id
            )
            if not newer:
                self.superseded += 1
                return None
        self._store(info)
        return info

    def beat(self, beat: Heartbeat) -> ProviderInfo | None:
        """Take a heartbeat; returns the provider's entry when it changed (a beat for a key not
        announced yet is kept and applied when its announcement arrives)."""
        old = self._beats.get(beat.pubkey)
        if old is not None and old.created_at >= beat.created_at:
            return None
        self._beats.pop(beat.pubkey, None)
        self._beats[beat.pubkey] = beat
        if len(self._beats) > MAX_PENDING_BEATS:
            self._beats.pop(next(iter(self._beats)))
        info = self._by_key.get(beat.pubkey)
        if info is None:
            return None
        info = replace(info, beat_at=beat.created_at, beat_until=beat.until)
        self._store(info)
        return info

    def _store(self, info: ProviderInfo) -> None:
        self._by_key[info.pubkey] = info
        self.version += 1
        for listener in self._listeners:
            try:
                listener(info)
            except Exception:  # a listener bug must not stop discovery
                log.exception("directory listener failed")

    def remove(self, pubkey: str) -> bool:
        self.version += 1
        return self._by_key.pop(pubkey, None) is not None

    def all(self) -> list[ProviderInfo]:
        """Every known provider, newest heartbeat first."""
        return sorted(self._by_key.values(), key=lambda i: (-i.last_seen, i.pubkey))

    def alive(self, model: str | None = None, *, now: float | None = None) -> list[ProviderInfo]:
        """Providers alive now (and serving ``model`` when given), newest heartbeat first."""
        t = self.clock() if now is None else now
        return [i for i in self.all() if i.alive(t) and i.serves(model)]

    def alive_keys(self, model: str | None = None) -> list[str]:
        return [i.pubkey for i in self.alive(model)]

    def status(self, pubkey: str) -> Status | None:
        info = self._by_key.get(pubkey)
        return None if info is None else info.status(self.clock())

    def prune(self, *, forget_after_s: float = FORGET_AFTER_S) -> int:
        """Forget providers expired, or not alive for ``forget_after_s``; returns how many."""
        now = self.clock()
        gone = [
            pk
            for pk, i in self._by_key.items()
            if i.status(now) == "expired"
            or (not i.alive(now) and now - i.last_seen > forget_after_s)
        ]
        for pk in gone:
            del self._by_key[pk]
            self._beats.pop(pk, None)
        self.version += 1
        return len(gone)


# --- I/O: feeding the directory from relays --------------------------------------------------


def discovery_filter(
    *, swarm_only: bool = False, authors: Sequence[str] | None = None, since: int | None = None
) -> Filter:
    """``{"kinds": [31990], "#k": ["5050"]}`` (+ ``#t`` nostr-swarm, ``authors``, ``since``)."""
    tags: dict[str, list[str]] = {"k": [JOB_KIND]}
    if swarm_only:
        tags["t"] = [SWARM_TOPIC]
    return Filter(
        kinds=[KIND_HANDLER],
        tags=tags,
        authors=list(authors) if authors is not None else None,
        since=since,
    )


def heartbeat_filter(*, authors: Sequence[str] | None = None, since: int | None = None) -> Filter:
    """``{"kinds": [11998]}``: foreign DVMs' heartbeats (+ ``authors``, ``since``)."""
    return Filter(
        kinds=[KIND_HEARTBEAT], authors=list(authors) if authors is not None else None, since=since
    )


def directory_filters(
    *, swarm_only: bool = False, authors: Sequence[str] | None = None, now: float | None = None
) -> list[Filter]:
    """What a directory listens to: announcements, and (unless ``swarm_only``: ours send none)
    heartbeats young enough to still matter."""
    filters = [discovery_filter(swarm_only=swarm_only, authors=authors)]
    if not swarm_only:
        since = int(time.time() if now is None else now) - MAX_BEAT_S
        filters.append(heartbeat_filter(authors=authors, since=since))
    return filters


class DirectoryWatcher:
    """Keeps a :class:`ProviderDirectory` fed from a pool's relays: stored announcements first,
    then every new heartbeat, until closed. ``async with`` waits (up to ``ready_timeout``) for
    the relays' stored events before returning."""

    def __init__(
        self,
        pool: RelayPool,
        directory: ProviderDirectory,
        *,
        authors: Sequence[str] | None = None,
        ready_timeout: float = 5.0,
    ) -> None:
        self.pool = pool
        self.directory = directory
        self.authors = authors
        self.ready_timeout = ready_timeout
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self.events = 0

    async def start(self) -> None:
        flt = directory_filters(
            swarm_only=self.directory.swarm_only, authors=self.authors, now=self.directory.clock()
        )
        self._sub = self.pool.subscribe(flt)
        self._task = asyncio.create_task(self._run(self._sub), name="provider directory")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._sub.wait_eose(), self.ready_timeout)

    async def _run(self, sub: Subscription) -> None:
        try:
            async for event in sub:
                self.events += 1
                if self.directory.offer(event) is not None:
                    async with self._changed:
                        self._changed.notify_all()
        except Exception as exc:  # every relay closed the subscription: say so, stop quietly
            log.warning("provider directory stopped: %s", exc)

    async def wait_for(self, predicate: Callable[[ProviderDirectory], bool]) -> None:
        """Until ``predicate(directory)`` holds (checked now and after every change); wrap in
        ``asyncio.wait_for`` for a deadline."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self.directory))

    async def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def __aenter__(self) -> DirectoryWatcher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def discover(
    pool: RelayPool,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - bounds waiting for slow relays' stored events
    swarm_only: bool = False,
    authors: Sequence[str] | None = None,
    clock: Clock = time.time,
) -> ProviderDirectory:
    """One snapshot: the relays' stored announcements (until every relay sent EOSE, at most
    ``timeout`` seconds) in a new directory."""
    directory = ProviderDirectory(clock=clock, swarm_only=swarm_only)
    flt = directory_filters(swarm_only=swarm_only, authors=authors, now=clock())
    async with pool.subscribe(flt) as sub:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sub.wait_eose(), timeout)
        while (event := sub.get_nowait()) is not None:
            directory.offer(event)
    return directory


def providers_from(infos: Iterable[ProviderInfo], *, clock: Clock = time.time) -> ProviderDirectory:
    """A directory holding ``infos`` (for simulations and tools that know providers already)."""
    directory = ProviderDirectory(clock=clock)
    for info in infos:
        directory.add(info)
    return directory


__all__ = [
    "FORGET_AFTER_S",
    "MAX_BEAT_S",
    "DirectoryWatcher",
    "Heartbeat",
    "PriceList",
    "ProviderDirectory",
    "ProviderInfo",
    "directory_filters",
    "discover",
    "discovery_filter",
    "heartbeat_filter",
    "npub_of",
    "parse_announcement",
    "parse_heartbeat",
    "providers_from",
]
