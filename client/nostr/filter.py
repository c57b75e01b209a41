"""NIP-01 filters: validation, JSON form and matching. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from client.nostr.errors import InvalidFilter
from client.nostr.event import is_hex

# Tags whose values are event ids or public keys: NIP-01 wants exact lowercase hex for them.
_HEX_TAGS = frozenset("ep")
_KNOWN = frozenset(("ids", "authors", "kinds", "since", "until", "limit", "search"))


class Matchable(Protocol):
    """What a filter reads of an event: an :class:`~client.nostr.event.Event`, or anything with
    the same fields (relay_mock's stored records)."""

    @property
    def id(self) -> str: ...
    @property
    def pubkey(self) -> str: ...
    @property
    def kind(self) -> int: ...
    @property
    def created_at(self) -> int: ...
    @property
    def tags(self) -> Sequence[Sequence[str]]: ...


class Filter:
    """One filter: every present field must match (AND); any value in a list may match (OR)."""

    __slots__ = ("authors", "ids", "kinds", "limit", "since", "tags", "until")

    def __init__(
        self,
        *,
        ids: Iterable[str] | None = None,
        authors: Iterable[str] | None = None,
        kinds: Iterable[int] | None = None,
        tags: Mapping[str, Iterable[str]] | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
    ) -> None:
        self.ids = frozenset(ids) if ids is not None else None
        self.authors = frozenset(authors) if authors is not None else None
        self.kinds = frozenset(kinds) if kinds is not None else None
        self.tags = {k: frozenset(v) for k, v in (tags or {}).items()}
        self.since = since
        self.until = until
        self.limit = limit

    def matches(self, event: Matchable) -> bool:
        if self.ids is not None and event.id not in self.ids:
            return False
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        if self.authors is not None and event.pubkey not in self.authors:
            return False
        if self.since is not None and event.created_at < self.since:
            return False
        if self.until is not None and event.created_at > self.until:
            return False
        for name, values in self.tags.items():
            for tag in event.tags:
                if tag[0] == name and len(tag) > 1 and tag[1] in values:
                    break
            else:
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.ids is not None:
            out["ids"] = sorted(self.ids)
        if self.authors is not None:
            out["authors"] = sorted(self.authors)
        if self.kinds is not None:
            out["kinds"] = sorted(self.kinds)
        for name, values in self.tags.items():
            out["#" + name] = sorted(values)
        if self.since is not None:
            out["since"] = self.since
        if self.until is not None:
            out["until"] = self.until
        if self.limit is not None:
            out["limit"] = self.limit
        return out

    def with_since(self, since: int) -> Filter:
        copy = Filter.__new__(Filter)
        for slot in Filter.__slots__:
            setattr(copy, slot, getattr(self, slot))
        copy.since = since if self.since is None else max(self.since, since)
        return copy

    @classmethod
    def from_dict(cls, obj: object) -> Filter:
        """Validate a filter from the wire; raise :class:`InvalidFilter` saying what is wrong."""
        if not isinstance(obj, dict):
            raise InvalidFilter("filter must be a JSON object")
        f = cls()
        for key, value in obj.items():
            if key in ("ids", "authors"):
                if not isinstance(value, list) or not all(is_hex(v, 64) for v in value):
                    raise InvalidFilter(
                        f"{key} must be a list of 64-character lowercase hex strings"
                    )
                setattr(f, key, frozenset(value))
            elif key == "kinds":
                if not isinstance(value, list) or not all(
                    type(v) is int and 0 <= v <= 65535 for v in value
                ):
                    raise InvalidFilter("kinds must be a list of integers 0..65535")
                f.kinds = frozenset(value)
            elif key in ("since", "until", "limit"):
                if type(value) is not int or value < 0:
                    raise InvalidFilter(f"{key} must be a non-negative integer")
                setattr(f, key, value)
            elif len(key) == 2 and key[0] == "#" and key[1].isascii() and key[1].isalpha():
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise InvalidFilter(f"{key} must be a list of strings")
                if key[1] in _HEX_TAGS and not all(is_hex(v, 64) for v in value):
                    raise InvalidFilter(f"{key} values must be 64-character lowercase hex strings")
                f.tags[key[1]] = frozenset(value)
            elif key in _KNOWN:  # NIP-50 search: accepted, not interpreted
                continue
            else:
                raise InvalidFilter(f"unknown filter field {key!r}")
        return f

    def __repr__(self) -> str:
        return f"Filter({self.to_dict()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and other.to_dict() == self.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self))
