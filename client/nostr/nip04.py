"""NIP-04 (deprecated, still spoken by many wallets and DVMs): AES-256-CBC with the raw ECDH x."""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from client.nostr import secp
from client.nostr.errors import DecryptionError, EncryptionError, InvalidKey

DEFAULT_MAX_PAYLOAD = 8 * 1024 * 1024


def shared_key(secret_hex: str, pubkey_hex: str) -> bytes:
    try:
        return secp.shared_x(bytes.fromhex(secret_hex), bytes.fromhex(pubkey_hex))
    except (ValueError, TypeError):
        raise InvalidKey("keys must be hex strings") from None


def encrypt(plaintext: str, secret_hex: str, pubkey_hex: str, iv: bytes | None = None) -> str:
    if not isinstance(plaintext, str):
        raise EncryptionError("plaintext must be a string")
    key = shared_key(secret_hex, pubkey_hex)
    iv = iv if iv is not None else os.urandom(16)
    padder = padding.PKCS7(128).padder()
    try:
        data = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    except UnicodeEncodeError:
        raise EncryptionError("plaintext holds a lone surrogate") from None
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ct = enc.update(data) + enc.finalize()
    return base64.b64encode(ct).decode() + "?iv=" + base64.b64encode(iv).decode()


def decrypt(
    payload: str, secret_hex: str, pubkey_hex: str, max_payload: int = DEFAULT_MAX_PAYLOAD
) -> str:
    if not isinstance(payload, str) or "?iv=" not in payload:
        raise DecryptionError("NIP-04 payload must be '<base64>?iv=<base64>'")
    if len(payload) > max_payload:
        raise DecryptionError(f"payload longer than the {max_payload}-character cap")
    ct_b64, _, iv_b64 = payload.partition("?iv=")
    try:
        ct = base64.b64decode(ct_b64, validate=True)
        iv = base64.b64decode(iv_b64, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionError("NIP-04 payload is not valid base64") from None
    if len(iv) != 16 or not ct or len(ct) % 16:
        raise DecryptionError("NIP-04 payload has a bad IV or ciphertext length")
    key = shared_key(secret_hex, pubkey_hex)
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        data = unpadder.update(dec.update(ct) + dec.finalize()) + unpadder.finalize()
        return data.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise DecryptionError("NIP-04 decryption failed (wrong key or corrupt payload)") from None
