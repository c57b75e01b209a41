"""NIP-19 bech32 entities: npub, nsec, note (32 bytes) and nprofile, nevent, naddr, nrelay (TLV).

Uses plain bech32 (BIP-173, not bech32m) with no 90-character limit: TLV strings run longer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import bech32

from client.nostr.errors import Bech32Error

MAX_LENGTH = 5000
BARE = ("npub", "nsec", "note")
TLV_SPECIAL, TLV_RELAY, TLV_AUTHOR, TLV_KIND = 0, 1, 2, 3


@dataclass(frozen=True)
class ProfilePointer:
    """nprofile: a public key (hex) with relay hints."""

    pubkey: str
    relays: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class EventPointer:
    """nevent: an event id (hex) with optional relays, author (hex) and kind."""

    id: str
    relays: tuple[str, ...] = field(default=())
    author: str | None = None
    kind: int | None = None


@dataclass(frozen=True)
class AddressPointer:
    """naddr: an addressable event (kind, author, d-tag identifier) with relay hints."""

    identifier: str
    pubkey: str
    kind: int
    relays: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class RelayPointer:
    """nrelay (deprecated): a relay URL."""

    url: str


Decoded = bytes | ProfilePointer | EventPointer | AddressPointer | RelayPointer


def _hex32(value: object, what: str) -> bytes:
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise Bech32Error(f"{what} is not hex") from None
    else:
        raise Bech32Error(f"{what} must be bytes or hex")
    if len(raw) != 32:
        raise Bech32Error(f"{what} must be 32 bytes, got {len(raw)}")
    return raw


def _tlv(entries: list[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    for t, v in entries:
        if len(v) > 255:
            raise Bech32Error(f"TLV value of type {t} is longer than 255 bytes")
        out += bytes((t, len(v))) + v
    return bytes(out)


def _relays(relays: tuple[str, ...] | list[str]) -> list[tuple[int, bytes]]:
    return [(TLV_RELAY, r.encode("utf-8")) for r in relays]


def encode(hrp: str, data: object) -> str:
    """Encode ``data`` under ``hrp``.

    Bare forms take 32 bytes (or 64 hex characters); TLV forms take the matching pointer class.
    """
    if hrp in BARE:
        payload = _hex32(data, hrp)
    elif hrp == "nprofile" and isinstance(data, ProfilePointer):
        payload = _tlv([(TLV_SPECIAL, _hex32(data.pubkey, "pubkey")), *_relays(data.relays)])
    elif hrp == "nevent" and isinstance(data, EventPointer):
        entries = [(TLV_SPECIAL, _hex32(data.id, "event id")), *_relays(data.relays)]
        if data.author is not None:
            entries.append((TLV_AUTHOR, _hex32(data.author, "author")))
        if data.kind is not None:
            entries.append((TLV_KIND, int(data.kind).to_bytes(4, "big")))
        payload = _tlv(entries)
    elif hrp == "naddr" and isinstance(data, AddressPointer):
        payload = _tlv(
            [
                (TLV_SPECIAL, data.identifier.encode("utf-8")),
                *_relays(data.relays),
                (TLV_AUTHOR, _hex32(data.pubkey, "pubkey")),
                (TLV_KIND, int(data.kind).to_bytes(4, "big")),
            ]
        )
    elif hrp == "nrelay" and isinstance(data, RelayPointer):
        payload = _tlv([(TLV_SPECIAL, data.url.encode("utf-8"))])
    else:
        raise Bech32Error(f"cannot encode {type(data).__name__} as {hrp!r}")
    words = bech32.convertbits(payload, 8, 5, True)
    assert words is not None
    return bech32.bech32_encode(hrp, words)


def _parse_tlv(payload: bytes) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    i = 0
    while i < len(payload):
        if i + 2 > len(payload):
            raise Bech32Error("TLV entry is truncated")
        t, n = payload[i], payload[i + 1]
        v = payload[i + 2 : i + 2 + n]
        if len(v) != n:
            raise Bech32Error(f"TLV entry of type {t} is truncated")
        out.setdefault(t, []).append(v)
        i += 2 + n
    return out


def _one(tlv: dict[int, list[bytes]], t: int, what: str, size: int | None = None) -> bytes:
    values = tlv.get(t)
    if not values:
        raise Bech32Error(f"missing {what}")
    if size is not None and len(values[0]) != size:
        raise Bech32Error(f"{what} must be {size} bytes, got {len(values[0])}")
    return values[0]


def _relay_list(tlv: dict[int, list[bytes]]) -> tuple[str, ...]:
    try:
        return tuple(v.decode("utf-8") for v in tlv.get(TLV_RELAY, []))
    except UnicodeDecodeError:
        raise Bech32Error("relay URL is not UTF-8") from None


def decode(text: str) -> tuple[str, Decoded]:
    """Decode a NIP-19 string into (hrp, value). Unknown TLV types are skipped; order is free."""
    if not isinstance(text, str):
        raise Bech32Error("NIP-19 entity must be a string")
    text = text.strip()
    if text.startswith("nostr:"):  # NIP-21 URI form
        text = text[len("nostr:") :]
    if len(text) > MAX_LENGTH:
        raise Bech32Error(f"longer than {MAX_LENGTH} characters")
    hrp, words = bech32.bech32_decode(text)
    if hrp is None or words is None:
        raise Bech32Error(f"not valid bech32 (bad checksum, characters or case): {text[:24]}…")
    payload_list = bech32.convertbits(words, 5, 8, False)
    if payload_list is None:
        raise Bech32Error("bech32 data has invalid padding")
    payload = bytes(payload_list)
    if hrp in BARE:
        if len(payload) != 32:
            raise Bech32Error(f"{hrp} must hold 32 bytes, got {len(payload)}")
        return hrp, payload
    if hrp not in ("nprofile", "nevent", "naddr", "nrelay"):
        raise Bech32Error(f"unknown NIP-19 prefix {hrp!r}")
    tlv = _parse_tlv(payload)
    if hrp == "nprofile":
        return hrp, ProfilePointer(_one(tlv, TLV_SPECIAL, "pubkey", 32).hex(), _relay_list(tlv))
    if hrp == "nevent":
        author = tlv.get(TLV_AUTHOR)
        kind = tlv.get(TLV_KIND)
        if author and len(author[0]) != 32:
            raise Bech32Error("author must be 32 bytes")
        if kind and len(kind[0]) != 4:
            raise Bech32Error("kind must be 4 bytes")
        return hrp, EventPointer(
            _one(tlv, TLV_SPECIAL, "event id", 32).hex(),
            _relay_list(tlv),
            author[0].hex() if author else None,
            int.from_bytes(kind[0], "big") if kind else None,
        )
    if hrp == "naddr":
        try:
            ident = _one(tlv, TLV_SPECIAL, "identifier").decode("utf-8")
        except UnicodeDecodeError:
            raise Bech32Error("identifier is not UTF-8") from None
        return hrp, AddressPointer(
            ident,
            _one(tlv, TLV_AUTHOR, "author", 32).hex(),
            int.from_bytes(_one(tlv, TLV_KIND, "kind", 4), "big"),
            _relay_list(tlv),
        )
    try:
        return hrp, RelayPointer(_one(tlv, TLV_SPECIAL, "relay").decode("utf-8"))
    except UnicodeDecodeError:
        raise Bech32Error("relay URL is not UTF-8") from None
