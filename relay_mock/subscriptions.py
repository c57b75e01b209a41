"""Live subscriptions and which of them a new event goes to. Pure: no I/O.

Subscriptions are indexed by the kinds their filters name, so a new event is matched only against
subscriptions that can want its kind (plus those whose filters name no kind).
"""

from __future__ import annotations

import json
from typing import Any

from client.filter import Filter

from .record import Record


class Subscription:
    __slots__ = ("filters", "kinds", "peer", "prefix", "sub_id")

    def __init__(self, peer: Any, sub_id: str, filters: tuple[Filter, ...]) -> None:
        self.peer = peer
        self.sub_id = sub_id
        self.filters = filters
        # The EVENT message up to the event itself, built once: forwarding is then one concat.
        self.prefix = '["EVENT",' + json.dumps(sub_id, ensure_ascii=False) + ","
        kinds: set[int] | None = set()
        for f in filters:
            if f.kinds is None:
                kinds = None
                break
            kinds.update(f.kinds)  # type: ignore[union-attr]
        self.kinds = kinds

    def matches(self, rec: Record) -> bool:
        return any(f.matches(rec) for f in self.filters)

    def event_message(self, rec: Record) -> str:
        return self.prefix + rec.raw + "]"


class LiveIndex:
    def __init__(self) -> None:
        self._by_kind: dict[int, set[Subscription]] = {}
        self._any: set[Subscription] = set()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, sub: Subscription) -> None:
        self._count += 1
        if sub.kinds is None:
            self._any.add(sub)
            return
        for kind in sub.kinds:
            self._by_kind.setdefault(kind, set()).add(sub)

    def remove(self, sub: Subscription) -> None:
        self._count -= 1
        if sub.kinds is None:
            self._any.discard(sub)
            return
        for kind in sub.kinds:
            subs = self._by_kind.get(kind)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_kind[kind]

    def matching(self, rec: Record) -> list[Subscription]:
        out = [s for s in self._any if s.matches(rec)]
        subs = self._by_kind.get(rec.kind)
        if subs:
            out.extend(s for s in subs if s.matches(rec))
        return out
