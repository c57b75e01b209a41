"""NIP-44 v2 encryption (ChaCha20 + HMAC-SHA256, padded), including the extended length prefix
for plaintexts of 65536 bytes and more (spec change of 2026-06-28). No I/O."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from client.nostr import secp
from client.nostr.errors import DecryptionError, EncryptionError, InvalidKey

VERSION = 2
MIN_PLAINTEXT = 1
MAX_PLAINTEXT = 2**32 - 1
# Our own cap on what we are willing to decrypt (the spec leaves it to implementations).
DEFAULT_MAX_PAYLOAD = 8 * 1024 * 1024
_SALT = b"nip44-v2"


def conversation_key(secret_hex: str, pubkey_hex: str) -> bytes:
    """HKDF-extract(salt="nip44-v2", IKM=shared x): symmetric between the two parties."""
    try:
        secret = bytes.fromhex(secret_hex)
        pubkey = bytes.fromhex(pubkey_hex)
    except (ValueError, TypeError):
        raise InvalidKey("keys must be hex strings") from None
    return hmac.new(_SALT, secp.shared_x(secret, pubkey), hashlib.sha256).digest()


def message_keys(conv_key: bytes, nonce: bytes) -> tuple[bytes, bytes, bytes]:
    """(chacha_key, chacha_nonce, hmac_key) from HKDF-expand(conv_key, info=nonce, L=76)."""
    if len(conv_key) != 32:
        raise InvalidKey("conversation key must be 32 bytes")
    if len(nonce) != 32:
        raise EncryptionError("nonce must be 32 bytes")
    keys = HKDFExpand(algorithm=hashes.SHA256(), length=76, info=nonce).derive(conv_key)
    return keys[0:32], keys[32:44], keys[44:76]


def calc_padded_len(length: int) -> int:
    if length < 1:
        raise EncryptionError("plaintext must be at least 1 byte")
    if length <= 32:
        return 32
    next_power = 1 << ((length - 1).bit_length())
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * ((length - 1) // chunk + 1)


def pad(plaintext: bytes) -> bytes:
    n = len(plaintext)
    if not MIN_PLAINTEXT <= n <= MAX_PLAINTEXT:
        raise EncryptionError(f"plaintext must be 1..{MAX_PLAINTEXT} bytes, got {n}")
    prefix = struct.pack(">H", n) if n < 65536 else b"\x00\x00" + struct.pack(">I", n)
    return prefix + plaintext + bytes(calc_padded_len(n) - n)


def unpad(padded: bytes) -> bytes:
    if len(padded) < 2:
        raise DecryptionError("invalid padding: too short")
    n = struct.unpack_from(">H", padded)[0]
    prefix_len = 2
    if n == 0:
        if len(padded) < 6:
            raise DecryptionError("invalid padding: truncated extended length")
        n = struct.unpack_from(">I", padded, 2)[0]
        prefix_len = 6
        if n < 65536:
            raise DecryptionError("invalid padding: extended length below 65536")
    body = padded[prefix_len : prefix_len + n]
    if n < 1 or len(body) != n or len(padded) != prefix_len + calc_padded_len(n):
        raise DecryptionError("invalid padding")
    return body


def _chacha(key: bytes, nonce12: bytes, data: bytes) -> bytes:
    # cryptography's 16-byte ChaCha20 nonce is the 4-byte little-endian counter, then the nonce.
    return (
        Cipher(algorithms.ChaCha20(key, b"\x00" * 4 + nonce12), mode=None).encryptor().update(data)
    )


def encrypt(plaintext: str, conversation_key: bytes, nonce: bytes | None = None) -> str:
    """Encrypt to a base64 payload. Pass ``nonce`` only to reproduce test vectors."""
    if not isinstance(plaintext, str):
        raise EncryptionError("plaintext must be a string")
    try:
        raw = plaintext.encode("utf-8")
    except UnicodeEncodeError:
        raise EncryptionError("plaintext holds a lone surrogate") from None
    if nonce is None:
        nonce = os.urandom(32)
    chacha_key, chacha_nonce, hmac_key = message_keys(conversation_key, nonce)
    ciphertext = _chacha(chacha_key, chacha_nonce, pad(raw))
    mac = hmac.new(hmac_key, nonce + ciphertext, hashlib.sha256).digest()
    return base64.b64encode(bytes([VERSION]) + nonce + ciphertext + mac).decode("ascii")


def decrypt(payload: str, conversation_key: bytes, max_payload: int = DEFAULT_MAX_PAYLOAD) -> str:
    """Decrypt a base64 payload; raise :class:`DecryptionError` saying what is wrong."""
    if not isinstance(payload, str) or not payload:
        raise DecryptionError("payload is empty")
    if payload[0] == "#":
        raise DecryptionError("unsupported encryption version (payload starts with '#')")
    if len(payload) < 132:
        raise DecryptionError(f"payload too short ({len(payload)} characters)")
    if len(payload) > max_payload:
        raise DecryptionError(f"payload longer than the {max_payload}-character cap")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionError("payload is not valid base64") from None
    if len(data) < 99:
        raise DecryptionError("decoded payload too short")
    if data[0] != VERSION:
        raise DecryptionError(f"unsupported encryption version {data[0]}")
    nonce, ciphertext, mac = data[1:33], data[33:-32], data[-32:]
    chacha_key, chacha_nonce, hmac_key = message_keys(conversation_key, nonce)
    expected = hmac.new(hmac_key, nonce + ciphertext, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise DecryptionError("invalid MAC")
    plain = unpad(_chacha(chacha_key, chacha_nonce, ciphertext))
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionError("plaintext is not valid UTF-8") from None


def looks_like_nip44(content: str) -> bool:
    """NIP-44 payloads are base64 of a 0x02-prefixed blob; NIP-04 ones carry '?iv='."""
    return bool(content) and "?iv=" not in content and content[0] == "A"
