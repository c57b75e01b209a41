"""In-memory event store with the NIP-01 storage rules and indexes. Pure: no I/O, time is passed in.

- regular events are kept; replaceable ones (0, 3, 10000-19999) keep the newest per
  (pubkey, kind) and addressable ones (30000-39999) per (pubkey, kind, d); on a tie in
  ``created_at`` the lowest id wins; ephemeral ones (20000-29999) are never stored.
- NIP-09: a kind-5 event removes the author's own events named by ``e`` tags and the author's
  replaceable/addressable events named by ``a`` tags (up to the deletion's ``created_at``), and
  keeps them from coming back.
- NIP-40: events past their ``expiration`` are refused, hidden from queries and purged.

Every index (by kind, by author, by tag value) is a list kept sorted by :attr:`Record.key`, which is
(created_at, arrival number): events mostly arrive in time order, so storing one appends to its
lists. A query walks them backwards (newest first) and stops at ``limit`` or ``since`` instead of
scanning everything; NIP-01's tie rule (same created_at: lowest id first) is applied to the
boundary second only.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from client.nostr.filter import Filter

from .kinds import DELETION, KindClass, kind_class
from .record import Record

_key = attrgetter("key")


def _order(rec: Record) -> tuple[int, str]:
    """NIP-01 result order: newest first, ties by lowest id."""
    return (-rec.created_at, rec.id)


_Address = tuple[int, str, str]  # (kind, pubkey, d)
_INFINITY = float("inf")


@dataclass(slots=True)
class Outcome:
    """What :meth:`EventStore.add` decided: the OK reply, whether to forward the event to live
    subscriptions, and what changed (for persistence)."""

    accepted: bool
    message: str = ""
    broadcast: bool = False
    stored: Record | None = None
    removed: list[Record] = field(default_factory=list)


def parse_address(text: str) -> _Address | None:
    """``"<kind>:<pubkey>:<d>"`` -> (kind, pubkey, d); None when malformed."""
    parts = text.split(":", 2)
    if len(parts) != 3 or not parts[0].isdigit() or len(parts[1]) != 64:
        return None
    return int(parts[0]), parts[1], parts[2]


class EventStore:
    def __init__(self) -> None:
        self._seq = 0
        self._by_id: dict[str, Record] = {}
        self._by_kind: dict[int, list[Record]] = {}
        self._by_author: dict[str, list[Record]] = {}
        self._by_tag: dict[str, dict[str, list[Record]]] = {}
        self._current: dict[_Address, Record] = {}  # newest replaceable/addressable per address
        # event id -> every pubkey that asked to delete it: a stranger's request must not hide
        # the author's own, whichever arrives first (NIP-09 counts only the author's).
        self._deleted_ids: dict[str, set[str]] = {}
        self._deleted_addrs: dict[_Address, int] = {}  # address -> deletion's created_at
        self._expiry: list[tuple[int, str]] = []  # heap of (expires_at, id)

    # --- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._by_id

    def get(self, event_id: str) -> Record | None:
        return self._by_id.get(event_id)

    def all(self) -> list[Record]:
        """Every stored record, oldest first (ties: highest id first)."""
        return sorted(self._by_id.values(), key=_order, reverse=True)

    def query(
        self, filters: Iterable[Filter], now: float, *, max_limit: int, default_limit: int | None
    ) -> list[Record]:
        """Stored events matching any filter, newest first (ties: lowest id), each filter capped
        by its ``limit`` (clamped to ``max_limit``), expired events left out."""
        found: dict[str, Record] = {}
        for f in filters:
            limit = f.limit if f.limit is not None else (default_limit or max_limit)
            for rec in self._query_one(f, now, min(limit, max_limit)):
                found[rec.id] = rec
        out = list(found.values())
        if len(found) > 1:
            out.sort(key=_order)
        return out

    def count(self, filters: Iterable[Filter], now: float) -> int:
        ids: set[str] = set()
        for f in filters:
            ids.update(rec.id for rec in self._query_one(f, now, len(self._by_id)))
        return len(ids)

    def _query_one(self, f: Filter, now: float, limit: int) -> list[Record]:
        if limit <= 0:
            return []
        if f.ids is not None:
            recs = [r for i in f.ids if (r := self._by_id.get(i)) is not None]
            recs.sort(key=_order)
            source: Iterator[Record] = iter(recs)
        else:
            source = self._candidates(f)
        out: list[Record] = []
        since, until = f.since, f.until
        boundary = -1  # once `limit` are found: their oldest created_at
        for rec in source:
            created = rec.created_at
            if created < boundary or (since is not None and created < since):
                break  # descending order: nothing older can match or be needed
            if until is not None and created > until:
                continue
            if rec.expires_at is not None and rec.expires_at <= now:
                continue
            if f.matches(rec):
                out.append(rec)
                if boundary < 0 and len(out) >= limit:
                    # Same-second events are in arrival order, not id order: collect the rest
                    # of this second, then keep the lowest ids.
                    boundary = created
        if len(out) > limit or boundary >= 0:
            out.sort(key=_order)
            del out[limit:]
        return out

    def _candidates(self, f: Filter) -> Iterator[Record]:
        """Newest-first records from the smallest index the filter allows."""
        options: list[tuple[int, list[list[Record]], bool]] = []
        if f.authors is not None:
            lists = [lst for a in f.authors if (lst := self._by_author.get(a))]
            options.append((sum(map(len, lists)), lists, False))
        if f.kinds is not None:
            lists = [lst for k in f.kinds if (lst := self._by_kind.get(k))]
            options.append((sum(map(len, lists)), lists, False))
        for letter, values in f.tags.items():
            by_value = self._by_tag.get(letter, {})
            lists = [lst for v in values if (lst := by_value.get(v))]
            # One event can carry several of the values, so merged tag lists need deduplication.
            options.append((sum(map(len, lists)), lists, True))
        if options:
            _, lists, may_repeat = min(options, key=lambda o: o[0])
        else:  # no indexed field: every kind's list, merged (kinds are few; events, many)
            lists, may_repeat = list(self._by_kind.values()), False
        if not lists:
            return iter(())
        if len(lists) == 1:
            return _descending(lists[0], f.until)
        merged = heapq.merge(*(_descending(lst, f.until) for lst in lists), key=_key, reverse=True)
        return _unique(merged) if may_repeat else merged

    # --- writing ------------------------------------------------------------------------

    def add(self, rec: Record, now: float) -> Outcome:
        """Apply the storage rules to a verified event."""
        if rec.id in self._by_id:
            return Outcome(True, "duplicate: already have this event")
        if rec.expires_at is not None and rec.expires_at <= now:
            return Outcome(False, "invalid: event has expired (NIP-40)")
        askers = self._deleted_ids.get(rec.id)
        if askers is not None and rec.pubkey in askers:
            return Outcome(False, "blocked: this event was deleted by its author (NIP-09)")
        cls = kind_class(rec.kind)
        if cls is KindClass.EPHEMERAL:
            return Outcome(True, "", broadcast=True)
        removed: list[Record] = []
        if cls is not KindClass.REGULAR:
            addr = (rec.kind, rec.pubkey, rec.d if cls is KindClass.ADDRESSABLE else "")
            deleted_at = self._deleted_addrs.get(addr)
            if deleted_at is not None and rec.created_at <= deleted_at:
                return Outcome(False, "blocked: this address was deleted by its author (NIP-09)")
            old = self._current.get(addr)
            if old is not None:
                if old.created_at > rec.created_at or (
                    old.created_at == rec.created_at and old.id < rec.id
                ):
                    return Outcome(True, "duplicate: have a newer version of this event")
                self._remove(old)
                removed.append(old)
            self._current[addr] = rec
        self._insert(rec)
        if rec.kind == DELETION:
            removed.extend(self._apply_deletion(rec))
        return Outcome(True, "", broadcast=True, stored=rec, removed=removed)

    def purge_expired(self, now: float) -> list[Record]:
        """Remove events whose expiration has passed; returns them."""
        removed: list[Record] = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, eid = heapq.heappop(heap)
            rec = self._by_id.get(eid)
            if rec is not None and rec.expires_at is not None and rec.expires_at <= now:
                self._remove(rec)
                removed.append(rec)
        return removed

    def _apply_deletion(self, deletion: Record) -> list[Record]:
        removed: list[Record] = []
        author = deletion.pubkey
        for tag in deletion.tags:
            if len(tag) < 2:
                continue
            if tag[0] == "e":
                target_id = tag[1]
                target = self._by_id.get(target_id)
                if target is not None and target.pubkey == author and target.kind != DELETION:
                    self._remove(target)
                    removed.append(target)
                # Remember it even when absent, so the event cannot be published afterwards;
                # whether the asker is its author is known only once it arrives.
                if target is None or target.pubkey == author:
                    self._deleted_ids.setdefault(target_id, set()).add(author)
            elif tag[0] == "a":
                addr = parse_address(tag[1])
                if addr is None or addr[1] != author or addr[0] == DELETION:
                    continue
                if kind_class(addr[0]) is KindClass.REPLACEABLE:
                    addr = (addr[0], addr[1], "")
                until = deletion.created_at
                self._deleted_addrs[addr] = max(until, self._deleted_addrs.get(addr, until))
                current = self._current.get(addr)
                if current is not None and current.created_at <= until:
                    self._remove(current)
                    removed.append(current)
        return removed

    def _insert(self, rec: Record) -> None:
        self._seq += 1
        key = rec.key = (rec.created_at, self._seq)
        self._by_id[rec.id] = rec
        # get() before creating: setdefault would build an empty list on every call.
        lst = self._by_kind.get(rec.kind)
        if lst is None:
            lst = self._by_kind[rec.kind] = []
        _append(lst, rec, key)
        lst = self._by_author.get(rec.pubkey)
        if lst is None:
            lst = self._by_author[rec.pubkey] = []
        _append(lst, rec, key)
        if rec.tags:
            by_tag = self._by_tag
            for letter, value in _index_pairs(rec):
                by_value = by_tag.get(letter)
                if by_value is None:
                    by_value = by_tag[letter] = {}
                lst = by_value.get(value)
                if lst is None:
                    lst = by_value[value] = []
                _append(lst, rec, key)
        if rec.expires_at is not None:
            heapq.heappush(self._expiry, (rec.expires_at, rec.id))

    def _remove(self, rec: Record) -> None:
        if self._by_id.pop(rec.id, None) is None:
            return
        _discard_in(self._by_kind, rec.kind, rec)
        _discard_in(self._by_author, rec.pubkey, rec)
        for letter, value in _index_pairs(rec):
            by_value = self._by_tag.get(letter)
            if by_value is not None:
                _discard_in(by_value, value, rec)
                if not by_value:
                    del self._by_tag[letter]
        for addr in ((rec.kind, rec.pubkey, ""), (rec.kind, rec.pubkey, rec.d)):
            if self._current.get(addr) is rec:
                del self._current[addr]


_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _index_pairs(rec: Record) -> set[tuple[str, str]]:
    """(letter, value) for every single-letter tag: relays index element 1 only."""
    return {(t[0], t[1]) for t in rec.tags if len(t) > 1 and t[0] in _LETTERS}


def _append(lst: list[Record], rec: Record, key: tuple[int, int]) -> None:
    """Insert in key order; events mostly arrive in time order, so this is mostly an append."""
    if not lst or lst[-1].key <= key:
        lst.append(rec)
    else:
        insort(lst, rec, key=_key)


def _descending(lst: list[Record], until: int | None) -> Iterator[Record]:
    hi = len(lst) if until is None else bisect_right(lst, (until, _INFINITY), key=_key)
    for i in range(hi - 1, -1, -1):
        yield lst[i]


def _unique(records: Iterable[Record]) -> Iterator[Record]:
    seen: set[str] = set()
    for rec in records:
        if rec.id not in seen:
            seen.add(rec.id)
            yield rec


def _discard(lst: list[Record], rec: Record) -> None:
    i = bisect_left(lst, rec.key, key=_key)
    if i < len(lst) and lst[i] is rec:
        del lst[i]


def _discard_in(index: dict[Any, list[Record]], name: object, rec: Record) -> None:
    lst = index.get(name)
    if lst is not None:
        _discard(lst, rec)
        if not lst:
            del index[name]  # no empty lists left behind: a long run must not grow
