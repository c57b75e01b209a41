"""Nostr keys: a secp256k1 secret key and its x-only public key, with NIP-19 forms."""

from __future__ import annotations

import os

from client.nostr import nip19
from client.nostr.errors import Bech32Error, InvalidKey
from client.nostr.secp import KeyPair


def _parse_hex32(text: str, what: str) -> bytes:
    if not isinstance(text, str) or len(text) != 64:
        raise InvalidKey(f"{what} must be 64 hex characters")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise InvalidKey(f"{what} is not hex") from None


class Keys:
    """A key pair. ``secret_hex``/``nsec`` are secret; ``public_key`` (hex) and ``npub`` are not."""

    __slots__ = ("_pair",)

    def __init__(self, secret: bytes) -> None:
        self._pair = KeyPair(secret)

    @classmethod
    def generate(cls) -> Keys:
        while True:
            try:
                return cls(os.urandom(32))
            except InvalidKey:  # pragma: no cover - probability about 2^-128
                continue

    @classmethod
    def from_secret(cls, secret: str) -> Keys:
        """Load from 64 hex characters or an ``nsec1…`` string."""
        if not isinstance(secret, str):
            raise InvalidKey("secret key must be a string (hex or nsec)")
        secret = secret.strip()
        if secret.lower().startswith("nsec1"):
            try:
                _, data = nip19.decode(secret)
            except Bech32Error as exc:
                raise InvalidKey(f"bad nsec: {exc}") from None
            return cls(data)  # type: ignore[arg-type]
        return cls(_parse_hex32(secret.lower(), "secret key"))

    @property
    def secret_bytes(self) -> bytes:
        return self._pair.secret

    @property
    def secret_hex(self) -> str:
        return self._pair.secret.hex()

    @property
    def public_key(self) -> str:
        return self._pair.public_key_hex

    @property
    def public_key_bytes(self) -> bytes:
        return self._pair.public_key

    @property
    def npub(self) -> str:
        return nip19.encode("npub", self._pair.public_key)

    @property
    def nsec(self) -> str:
        return nip19.encode("nsec", self._pair.secret)

    def sign(self, msg32: bytes, aux: bytes | None = None) -> bytes:
        return self._pair.sign(msg32, aux)

    def __repr__(self) -> str:  # never print the secret
        return f"Keys(public_key={self.public_key})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keys) and other._pair.secret == self._pair.secret

    def __hash__(self) -> int:
        return hash(self._pair.public_key)


def parse_pubkey(text: str) -> str:
    """A public key given as 64 hex characters or ``npub1…``, returned as lowercase hex."""
    if not isinstance(text, str):
        raise InvalidKey("public key must be a string (hex or npub)")
    text = text.strip()
    if text.lower().startswith("npub1"):
        try:
            _, data = nip19.decode(text)
        except Bech32Error as exc:
            raise InvalidKey(f"bad npub: {exc}") from None
        return data.hex()  # type: ignore[union-attr]
    return _parse_hex32(text.lower(), "public key").hex()
