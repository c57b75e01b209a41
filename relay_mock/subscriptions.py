"""Live subscriptions and which of them a new event goes to. Pure: no I/O.

Each filter of each live subscription is filed under one field it names, the most selective one
present: its ids, else its authors, else the values of one single-letter tag, else its kinds. A new
event looks up its own id, pubkey, kind and tag values, and only the filters found there (plus a
small residue of filters that name none of those fields) are matched against it. Publishing then
costs in proportion to the filters that could match, not to all the filters held open.
"""

from __future__ import annotations

import json
from typing import Any

from client.nostr.filter import Filter

from .record import Record

_Bucket = dict["_Entry", None]  # insertion-ordered set: delivery order does not depend on hashing


class _Entry:
    """One filter of one subscription, as filed in the index."""

    __slots__ = ("filter", "keys", "sub", "where")

    def __init__(self, sub: Subscription, filt: Filter) -> None:
        self.sub = sub
        self.filter = filt
        self.where: dict[Any, _Bucket] | None = None  # the index it is filed in (None: residue)
        self.keys: tuple[Any, ...] = ()


class Subscription:
    __slots__ = ("entries", "filters", "peer", "pending", "pending_bytes", "prefix", "sub_id")

    def __init__(self, peer: Any, sub_id: str, filters: tuple[Filter, ...]) -> None:
        self.peer = peer
        self.sub_id = sub_id
        self.filters = filters
        # The EVENT message up to the event itself, built once: forwarding is then one concat.
        self.prefix = '["EVENT",' + json.dumps(sub_id, ensure_ascii=False) + ","
        self.entries: list[_Entry] = []
        # While its stored events are still going out: live events held back until after EOSE
        # (NIP-01 order: stored, EOSE, live). None once EOSE is sent.
        self.pending: list[Record] | None = None
        self.pending_bytes = 0

    def matches(self, rec: Record) -> bool:
        return any(f.matches(rec) for f in self.filters)

    def event_message(self, rec: Record) -> str:
        return self.prefix + rec.raw + "]"


def filter_values(obj: dict[str, Any]) -> int:
    """How many values a filter from the wire lists (ids, authors, kinds and tag values)."""
    return sum(len(v) for v in obj.values() if type(v) is list)


class LiveIndex:
    def __init__(self) -> None:
        self._ids: dict[str, _Bucket] = {}
        self._authors: dict[str, _Bucket] = {}
        self._kinds: dict[int, _Bucket] = {}
        self._tags: dict[str, _Bucket] = {}  # letter + value (the letter is one character)
        self._residue: _Bucket = {}
        self._count = 0
        self.filters = 0
        # Filters matched against events so far, and for the last event: what the index saves.
        self.checks = 0
        self.last_checks = 0

    def __len__(self) -> int:
        return self._count

    @property
    def residue(self) -> int:
        """Filters that name no indexed field: matched against every event."""
        return len(self._residue)

    def buckets(self) -> int:
        """Index entries held (0 once every subscription is gone: nothing leaks)."""
        return (
            len(self._ids)
            + len(self._authors)
            + len(self._kinds)
            + len(self._tags)
            + len(self._residue)
        )

    def add(self, sub: Subscription) -> None:
        self._count += 1
        for f in sub.filters:
            entry = _Entry(sub, f)
            sub.entries.append(entry)
            self.filters += 1
            where, keys = self._place(f)
            if where is None:
                self._residue[entry] = None
                continue
            entry.where, entry.keys = where, keys
            for key in keys:
                bucket = where.get(key)
                if bucket is None:
                    where[key] = bucket = {}
                bucket[entry] = None

    def _place(self, f: Filter) -> tuple[dict[Any, _Bucket] | None, tuple[Any, ...]]:
        if f.ids is not None:
            return self._ids, tuple(f.ids)
        if f.authors is not None:
            return self._authors, tuple(f.authors)
        if f.tags:
            letter, values = min(f.tags.items(), key=lambda item: len(item[1]))
            return self._tags, tuple(letter + v for v in values)
        if f.kinds is not None:
            return self._kinds, tuple(f.kinds)
        return None, ()

    def remove(self, sub: Subscription) -> None:
        self._count -= 1
        for entry in sub.entries:
            self.filters -= 1
            where = entry.where
            if where is None:
                self._residue.pop(entry, None)
                continue
            for key in entry.keys:
                bucket = where.get(key)
                if bucket is not None:
                    bucket.pop(entry, None)
                    if not bucket:
                        del where[key]  # no empty buckets left behind: a long run must not grow
        sub.entries.clear()

    def matching(self, rec: Record) -> list[Subscription]:
        """The subscriptions with a filter that matches, each once."""
        found: list[_Bucket] = []
        if self._ids and (b := self._ids.get(rec.id)):
            found.append(b)
        if self._authors and (b := self._authors.get(rec.pubkey)):
            found.append(b)
        if self._kinds and (b := self._kinds.get(rec.kind)):
            found.append(b)
        tags = self._tags
        if tags:
            for tag in rec.tags:
                if len(tag) > 1 and len(tag[0]) == 1 and (b := tags.get(tag[0] + tag[1])):
                    found.append(b)
        if self._residue:
            found.append(self._residue)
        out: list[Subscription] = []
        if not found:
            self.last_checks = 0
            return out
        seen: set[Subscription] = set()
        checks = 0
        for bucket in found:
            for entry in bucket:
                sub = entry.sub
                if sub in seen:
                    continue
                checks += 1
                if entry.filter.matches(rec):
                    seen.add(sub)
                    out.append(sub)
        self.checks += checks
        self.last_checks = checks
        return out
