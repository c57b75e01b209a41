"""NIP-01 events: canonical serialization, id, BIP-340 signature, JSON in and out. No I/O."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from client.nostr import secp
from client.nostr.errors import InvalidEvent, InvalidId, InvalidSignature
from client.nostr.keys import Keys

Tags = list[list[str]]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
MAX_KIND = 65535
# Far beyond any honest clock, but keeps created_at inside what every peer stores as int64.
MAX_CREATED_AT = 2**40


def canonical(pubkey: str, created_at: int, kind: int, tags: Tags, content: str) -> bytes:
    """UTF-8 bytes of ``[0,pubkey,created_at,kind,tags,content]`` exactly as NIP-01 hashes them.

    ``ensure_ascii=False`` keeps non-ASCII raw (``\\uXXXX`` would change the id); json escapes
    ``"``, ``\\`` and the control characters, which is the NIP-01 escape set.
    """
    try:
        if type(created_at) is int and type(kind) is int and pubkey.isalnum():
            # Fast path (hot in relays and verifiers): the same bytes without building a list;
            # an alphanumeric pubkey and plain ints need no escaping.
            return f'[0,"{pubkey}",{created_at},{kind},{_dumps(tags)},{_dumps(content)}]'.encode()
        return _dumps([0, pubkey, created_at, kind, tags, content]).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEvent("event text holds a lone surrogate, which UTF-8 cannot encode") from None


def compute_id(pubkey: str, created_at: int, kind: int, tags: Tags, content: str) -> str:
    return hashlib.sha256(canonical(pubkey, created_at, kind, tags, content)).hexdigest()


def is_hex(text: object, length: int) -> bool:
    """Exactly ``length`` lowercase hex characters (bytes.fromhex is faster than a regex)."""
    if not isinstance(text, str) or len(text) != length:
        return False
    try:
        # fromhex skips ASCII whitespace, so the decoded length must be checked too.
        raw = bytes.fromhex(text)
    except ValueError:
        return False
    return len(raw) * 2 == length and text.lower() == text


def check_tags(tags: object) -> Tags:
    if not isinstance(tags, list):
        raise InvalidEvent("tags must be a list of lists of strings")
    for tag in tags:
        if not isinstance(tag, list) or not tag:
            raise InvalidEvent("each tag must be a non-empty list of strings")
        for item in tag:
            if not isinstance(item, str):
                raise InvalidEvent(f"tag elements must be strings, got {type(item).__name__}")
    return tags  # every item checked above


class Event:
    """A signed Nostr event: make one with :meth:`create`, parse one with :meth:`from_json`."""

    __slots__ = ("content", "created_at", "id", "kind", "pubkey", "sig", "tags")

    def __init__(
        self,
        id: str,
        pubkey: str,
        created_at: int,
        kind: int,
        tags: Tags,
        content: str,
        sig: str,
    ) -> None:
        self.id = id
        self.pubkey = pubkey
        self.created_at = created_at
        self.kind = kind
        self.tags = tags
        self.content = content
        self.sig = sig

    # --- building -----------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        keys: Keys,
        kind: int,
        content: str = "",
        tags: Iterable[Sequence[str]] = (),
        created_at: int | None = None,
    ) -> Event:
        """A new event signed by ``keys`` (created_at defaults to now)."""
        tag_list = check_tags([list(t) for t in tags])
        if type(kind) is not int or not 0 <= kind <= MAX_KIND:
            raise InvalidEvent(f"kind must be an integer 0..{MAX_KIND}")
        if not isinstance(content, str):
            raise InvalidEvent("content must be a string")
        ts = int(time.time()) if created_at is None else created_at
        pubkey = keys.public_key
        digest = hashlib.sha256(canonical(pubkey, ts, kind, tag_list, content)).digest()
        return cls(digest.hex(), pubkey, ts, kind, tag_list, content, keys._pair.sign(digest).hex())

    # --- checking -----------------------------------------------------------------------

    def id_matches(self) -> bool:
        return (
            compute_id(self.pubkey, self.created_at, self.kind, self.tags, self.content) == self.id
        )

    def verify(self) -> bool:
        """True when the id is the hash of the fields and the signature is valid for it."""
        try:
            self.check()
        except InvalidEvent:
            return False
        return True

    def check(self) -> None:
        """Raise :class:`InvalidId` or :class:`InvalidSignature` unless the event is authentic."""
        digest = hashlib.sha256(
            canonical(self.pubkey, self.created_at, self.kind, self.tags, self.content)
        ).digest()
        if digest.hex() != self.id:
            raise InvalidId(f"id {self.id[:16]}… is not the hash of the event's fields")
        if not secp.verify(bytes.fromhex(self.pubkey), digest, bytes.fromhex(self.sig)):
            raise InvalidSignature(f"signature of event {self.id[:16]}… does not verify")

    # --- tags ---------------------------------------------------------------------------

    def tag_value(self, name: str) -> str | None:
        """Element 1 of the first tag called ``name`` (None when absent)."""
        for tag in self.tags:
            if tag[0] == name and len(tag) > 1:
                return tag[1]
        return None

    def tags_named(self, name: str) -> list[list[str]]:
        return [t for t in self.tags if t[0] == name]

    def d_tag(self) -> str:
        return self.tag_value("d") or ""

    # --- JSON ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pubkey": self.pubkey,
            "created_at": self.created_at,
            "kind": self.kind,
            "tags": self.tags,
            "content": self.content,
            "sig": self.sig,
        }

    def to_json(self) -> str:
        return _dumps(self.to_dict())

    @classmethod
    def from_dict(cls, obj: object, *, verify: bool = True) -> Event:
        """Validate field types (and, unless ``verify=False``, id and signature)."""
        if not isinstance(obj, dict):
            raise InvalidEvent("event must be a JSON object")
        try:
            eid, pubkey, created_at = obj["id"], obj["pubkey"], obj["created_at"]
            kind, tags, content, sig = obj["kind"], obj["tags"], obj["content"], obj["sig"]
        except KeyError as exc:
            raise InvalidEvent(f"event lacks field {exc.args[0]!r}") from None
        if not is_hex(eid, 64):
            raise InvalidEvent("id must be 64 lowercase hex characters")
        if not is_hex(pubkey, 64):
            raise InvalidEvent("pubkey must be 64 lowercase hex characters")
        if not is_hex(sig, 128):
            raise InvalidEvent("sig must be 128 lowercase hex characters")
        if type(created_at) is not int or not 0 <= created_at <= MAX_CREATED_AT:
            raise InvalidEvent("created_at must be a non-negative integer (unix seconds)")
        if type(kind) is not int or not 0 <= kind <= MAX_KIND:
            raise InvalidEvent(f"kind must be an integer 0..{MAX_KIND}")
        if not isinstance(content, str):
            raise InvalidEvent("content must be a string")
        event = cls(eid, pubkey, created_at, kind, check_tags(tags), content, sig)
        if verify:
            event.check()
        return event

    @classmethod
    def from_json(cls, text: str | bytes, *, verify: bool = True) -> Event:
        try:
            obj = json.loads(text)
        except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: absurd nesting
            raise InvalidEvent(f"event is not valid JSON: {exc}") from None
        return cls.from_dict(obj, verify=verify)

    # --- misc ---------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and other.to_dict() == self.to_dict()

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"Event(kind={self.kind}, id={self.id[:12]}…, pubkey={self.pubkey[:12]}…)"
