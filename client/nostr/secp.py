"""Thin, fast wrappers over libsecp256k1 (the `secp256k1` package's cffi bindings).

BIP-340 sign/verify and the unhashed ECDH x coordinate that NIP-04 and NIP-44 need. The package's
own helpers are bypassed where they cost speed (verify re-parses the key each time) or correctness
(its ECDH hashes the point, its Schnorr signing uses no auxiliary randomness).
"""

from __future__ import annotations

import os
from functools import lru_cache

from secp256k1 import ffi, lib, secp256k1_ctx

from client.nostr.errors import InvalidKey

_CTX = secp256k1_ctx
# secp256k1_schnorrsig_extraparams magic (SECP256K1_SCHNORRSIG_EXTRAPARAMS_MAGIC).
_EXTRAPARAMS_MAGIC = bytes([0xDA, 0x6F, 0xB3, 0x8C])


class KeyPair:
    """A parsed secret key, kept ready for signing."""

    __slots__ = ("_keypair", "public_key", "public_key_hex", "secret")

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes) or len(secret) != 32:
            raise InvalidKey("secret key must be 32 bytes")
        keypair = ffi.new("secp256k1_keypair *")
        if lib.secp256k1_keypair_create(_CTX, keypair, secret) != 1:
            raise InvalidKey("secret key is zero or not below the curve order")
        xonly = ffi.new("secp256k1_xonly_pubkey *")
        lib.secp256k1_keypair_xonly_pub(_CTX, xonly, ffi.NULL, keypair)
        out = ffi.new("unsigned char [32]")
        lib.secp256k1_xonly_pubkey_serialize(_CTX, out, xonly)
        self._keypair = keypair
        self.secret = secret
        self.public_key = bytes(ffi.buffer(out, 32))
        self.public_key_hex = self.public_key.hex()

    def sign(self, msg: bytes, aux: bytes | None = None) -> bytes:
        """BIP-340 signature of ``msg`` (any length) with 32 bytes of auxiliary randomness."""
        if aux is None:
            aux = os.urandom(32)
        sig = ffi.new("unsigned char [64]")
        if len(msg) == 32:
            ok = lib.secp256k1_schnorrsig_sign(_CTX, sig, msg, self._keypair, aux)
        else:
            params = ffi.new("secp256k1_schnorrsig_extraparams *")
            params.magic = list(_EXTRAPARAMS_MAGIC)
            params.noncefp = ffi.NULL
            aux_buf = ffi.new("unsigned char [32]", aux)
            params.ndata = aux_buf
            ok = lib.secp256k1_schnorrsig_sign_custom(
                _CTX, sig, msg, len(msg), self._keypair, params
            )
        if ok != 1:  # pragma: no cover - libsecp256k1 fails only on invalid keypairs
            raise InvalidKey("signing failed")
        return bytes(ffi.buffer(sig, 64))


@lru_cache(maxsize=16384)
def _xonly(pubkey: bytes):  # type: ignore[no-untyped-def]
    """Parsed x-only key, cached: parsing is a large share of a verify and keys repeat."""
    xonly = ffi.new("secp256k1_xonly_pubkey *")
    if lib.secp256k1_xonly_pubkey_parse(_CTX, xonly, pubkey) != 1:
        return None
    return xonly


def verify(pubkey: bytes, msg: bytes, sig: bytes) -> bool:
    """True when ``sig`` is a valid BIP-340 signature of ``msg`` by x-only ``pubkey``."""
    if len(pubkey) != 32 or len(sig) != 64:
        return False
    xonly = _xonly(pubkey)
    if xonly is None:
        return False
    valid: int = lib.secp256k1_schnorrsig_verify(_CTX, sig, msg, len(msg), xonly)
    return valid == 1


def is_valid_pubkey(pubkey: bytes) -> bool:
    return len(pubkey) == 32 and _xonly(pubkey) is not None


def shared_x(secret: bytes, pubkey: bytes) -> bytes:
    """x coordinate (32 bytes, unhashed) of secret·lift_x(pubkey), as NIP-04/NIP-44 need."""
    if len(secret) != 32 or lib.secp256k1_ec_seckey_verify(_CTX, secret) != 1:
        raise InvalidKey("secret key is not a valid secp256k1 scalar")
    if len(pubkey) != 32:
        raise InvalidKey("public key must be 32 bytes (x-only)")
    point = ffi.new("secp256k1_pubkey *")
    if lib.secp256k1_ec_pubkey_parse(_CTX, point, b"\x02" + pubkey, 33) != 1:
        raise InvalidKey("public key is not on the secp256k1 curve")
    if lib.secp256k1_ec_pubkey_tweak_mul(_CTX, point, secret) != 1:  # pragma: no cover
        raise InvalidKey("ECDH failed")
    out = ffi.new("unsigned char [33]")
    outlen = ffi.new("size_t *", 33)
    lib.secp256k1_ec_pubkey_serialize(_CTX, out, outlen, point, lib.SECP256K1_EC_COMPRESSED)
    return bytes(ffi.buffer(out, 33))[1:]
