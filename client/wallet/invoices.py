"""BOLT11 invoices: make signed ones, decode and check any. No I/O.

The codec is our own, on whole integers (a bech32 data part is a base-32 number): the ``bolt11``
package reads and writes bit by bit through ``bitstring`` and spends milliseconds per invoice,
which bounds a paid swarm (bench/wallet.py shows both). It reads what the package reads, field by
field and refusal by refusal (tests/client/wallet/test_fast_bits.py decodes and encodes both ways
and compares), then adds the reader rules the package skips (BOLT #11 "Requirements" for
readers): no mixed case, ``p`` amounts ending in 0, no unknown even feature bits. Every failure is
an :class:`~client.nostr.errors.InvoiceError`; amounts are exact integer msats, computed from the
human-readable part with integer arithmetic (never through floats).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from bech32 import CHARSET, bech32_decode, bech32_encode
from coincurve import PrivateKey, PublicKey, verify_signature
from coincurve.ecdsa import cdata_to_der, deserialize_recoverable, recoverable_convert

from client.dvm.amounts import MSAT_PER_UNIT, hrp_amount
from client.nostr.errors import InvoiceError, InvoiceExpired, WrongNetwork

# Network name -> BOLT11 currency prefix.
NETWORKS: Final[dict[str, str]] = {
    "bitcoin": "bc",
    "testnet": "tb",
    "signet": "tbs",
    "regtest": "bcrt",
}
_PREFIX_TO_NETWORK: Final[dict[str, str]] = {v: k for k, v in NETWORKS.items()}
DEFAULT_NETWORK: Final = "regtest"
DEFAULT_EXPIRY: Final = 3600  # BOLT11's default when the x field is absent
MAX_INVOICE_CHARS: Final = 8192  # far above any real invoice; stops absurd input early
MAX_DESCRIPTION_BYTES: Final = 639  # 1023 five-bit groups, the most a tagged field holds
# Even feature bits an invoice may require that we understand (BOLT #9, context "9"):
# var_onion_optin 8, payment_secret 14, basic_mpp 16, option_route_blinding 24,
# option_payment_metadata 48. Any other even bit set means "fail the payment".
_KNOWN_EVEN_FEATURES: Final = frozenset({8, 14, 16, 24, 48})
# What make_invoice writes: min_final_cltv_expiry (c) and the features it requires (9):
# var_onion_optin (bit 8) and payment_secret (bit 14).
_MIN_FINAL_CLTV_EXPIRY: Final = 18
_MADE_FEATURES: Final = 1 << 8 | 1 << 14


@dataclass(frozen=True, slots=True)
class Invoice:
    """A decoded, signature-checked BOLT11 invoice."""

    bolt11: str  # lower-case form of the invoice string
    network: str  # "bitcoin", "testnet", "signet" or "regtest"
    amount_msats: int | None  # None: "any amount"
    payment_hash: str  # hex, 32 bytes
    payment_secret: str  # hex, 32 bytes
    description: str | None
    description_hash: str | None
    created_at: int  # unix seconds
    expiry: int  # seconds after created_at
    payee: str  # node public key, compressed, hex

    @property
    def expires_at(self) -> int:
        return self.created_at + self.expiry

    def is_expired(self, now: float) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True, slots=True)
class NewInvoice:
    """What :func:`make_invoice` returns: the invoice and the secret that settles it."""

    invoice: Invoice
    preimage: str  # hex, 32 bytes; revealing it proves payment

    @property
    def bolt11(self) -> str:
        return self.invoice.bolt11

    @property
    def payment_hash(self) -> str:
        return self.invoice.payment_hash


def network_prefix(network: str) -> str:
    """The currency prefix for a network name (or the prefix itself, which is accepted too)."""
    if network in NETWORKS:
        return NETWORKS[network]
    if network in _PREFIX_TO_NETWORK:
        return network
    raise InvoiceError(f"unknown network {network!r} (one of: {', '.join(NETWORKS)})")


def network_name(network: str) -> str:
    return _PREFIX_TO_NETWORK[network_prefix(network)]


def amount_from_hrp(hrp: str) -> tuple[str, int | None]:
    """(network name, exact msats or None) from a lower-case human-readable part (the amount
    rule is client.dvm.amounts', which DVM events are checked against too)."""
    prefix, msats = hrp_amount(hrp)
    return _PREFIX_TO_NETWORK[prefix], msats


def msats_to_hrp_amount(msats: int) -> str:
    """The shortest exact BOLT11 amount string for ``msats`` (e.g. 2_500_000 -> '25u')."""
    _check_msats(msats)
    for mult in ("", "m", "u", "n"):
        unit = MSAT_PER_UNIT[mult]
        if msats % unit == 0:
            return f"{msats // unit}{mult}"
    return f"{msats * 10}p"


def payment_hash_of(preimage_hex: str) -> str:
    try:
        raw = bytes.fromhex(preimage_hex)
    except (ValueError, TypeError):
        raise InvoiceError("preimage is not hex") from None
    if len(raw) != 32:
        raise InvoiceError("preimage must be 32 bytes")
    return hashlib.sha256(raw).hexdigest()


def preimage_matches(preimage_hex: object, payment_hash: str) -> bool:
    """True when ``preimage_hex`` is the 32-byte secret whose sha256 is ``payment_hash``."""
    if not isinstance(preimage_hex, str):
        return False
    try:
        return payment_hash_of(preimage_hex) == payment_hash.lower()
    except InvoiceError:
        return False


def decode_invoice(text: object) -> Invoice:
    """Decode and verify a BOLT11 string (structure, checksum, signature, features).

    Network and expiry are not judged here: see :func:`check_invoice`.
    """
    if not isinstance(text, str):
        raise InvoiceError("invoice must be a string")
    raw = text.strip()
    if raw.lower().startswith("lightning:"):
        raw = raw[len("lightning:") :]
    if not raw:
        raise InvoiceError("invoice is empty")
    if len(raw) > MAX_INVOICE_CHARS:
        raise InvoiceError(f"invoice longer than {MAX_INVOICE_CHARS} characters")
    if raw != raw.lower() and raw != raw.upper():
        raise InvoiceError("invoice mixes upper and lower case")
    return _decode_lower(raw.lower())


# The same invoice is read several times on its way (guard, payer, wallet service) and an Invoice
# is immutable, so recent ones are kept: the checksum and the signature recovery are done once.
# Failures are not cached: they raise.
@functools.lru_cache(maxsize=4096)
def _decode_lower(lower: str) -> Invoice:
    sep = lower.rfind("1")
    if sep < 1:
        raise InvoiceError("invoice has no bech32 separator '1'")
    network, amount = amount_from_hrp(lower[:sep])
    hrp, groups = bech32_decode(lower)
    if hrp is None or groups is None:
        raise InvoiceError("invalid invoice: bad bech32 (characters, length or checksum)")
    if len(groups) < _TIMESTAMP_GROUPS + _SIGNATURE_GROUPS:
        raise InvoiceError("invalid invoice: too short for a timestamp and a signature")
    data, signature = groups[:-_SIGNATURE_GROUPS], _bytes_of(groups[-_SIGNATURE_GROUPS:])
    fields = _read_fields(data)
    for char in "ps":
        if char not in fields:
            raise InvoiceError(f"invalid invoice: no {_FIELD_NAMES[char]} field ({char})")
    if ("d" in fields) == ("h" in fields):
        raise InvoiceError("invalid invoice: needs exactly one of description and its hash")
    features = _int_of(fields["9"]) if "9" in fields else 0
    unknown = [bit for bit in range(0, features.bit_length(), 2) if features >> bit & 1]
    unknown = [bit for bit in unknown if bit not in _KNOWN_EVEN_FEATURES]
    if unknown:
        raise InvoiceError(f"invoice requires unknown feature bit {unknown[0]}")
    description = None
    if "d" in fields:
        try:
            description = _bytes_of(fields["d"]).decode("utf-8")
        except UnicodeDecodeError:
            raise InvoiceError("invalid invoice: description is not UTF-8") from None
    for char in "xc":  # integers: an empty one is no number
        if char in fields and not fields[char]:
            raise InvoiceError(f"invalid invoice: empty {_FIELD_NAMES[char]} field ({char})")
    expiry = _int_of(fields["x"]) if "x" in fields else DEFAULT_EXPIRY
    message = hrp.encode("ascii") + _padded_bytes_of(data)
    return Invoice(
        bolt11=lower,
        network=network,
        amount_msats=amount,
        payment_hash=_bytes_of(fields["p"]).hex(),
        payment_secret=_bytes_of(fields["s"]).hex(),
        description=description,
        description_hash=_bytes_of(fields["h"]).hex() if "h" in fields else None,
        created_at=_int_of(data[:_TIMESTAMP_GROUPS]),
        expiry=expiry,
        payee=_payee(signature, message, fields.get("n")),
    )


# BOLT #11 tagged fields that we read: tag character -> the only length (in five-bit groups) a
# reader accepts, or None for any length. Of each, the first acceptable one counts; a field of
# another length, a second one, and every other tag are skipped, as readers MUST (`d` and `h`
# exclude each other: whichever comes first).
_FIELD_LENGTHS: Final[dict[str, int | None]] = {
    "p": 52,
    "s": 52,
    "h": 52,
    "n": 53,
    "d": None,
    "x": None,
    "c": None,
    "9": None,
}
_FIELD_NAMES: Final = {
    "p": "payment hash",
    "s": "payment secret",
    "x": "expiry",
    "c": "min_final_cltv_expiry",
}
_TAGS: Final[dict[int, str]] = {CHARSET.index(char): char for char in _FIELD_LENGTHS}
_TIMESTAMP_GROUPS: Final = 7  # 35 bits
_SIGNATURE_GROUPS: Final = 104  # 65 bytes: r, s and the recovery id
# A five-bit group is one base-32 digit, so int(..., 32) turns a run of groups into its number.
_DIGITS: Final = "0123456789abcdefghijklmnopqrstuv"


def _read_fields(data: Sequence[int]) -> dict[str, Sequence[int]]:
    """The tagged fields after the timestamp, by tag character."""
    fields: dict[str, Sequence[int]] = {}
    i, end = _TIMESTAMP_GROUPS, len(data)
    while i < end:
        if i + 3 > end:
            raise InvoiceError("invalid invoice: a tagged field is cut short")
        tag, length = data[i], data[i + 1] * 32 + data[i + 2]
        i += 3
        if i + length > end:
            raise InvoiceError("invalid invoice: a tagged field runs past the signature")
        char = _TAGS.get(tag)
        if (
            char is not None
            and char not in fields
            and _FIELD_LENGTHS[char] in (None, length)
            and not (char in "dh" and ("d" in fields or "h" in fields))
        ):
            fields[char] = data[i : i + length]
        i += length
    return fields


def _int_of(groups: Sequence[int]) -> int:
    return int("".join([_DIGITS[g] for g in groups]), 32) if groups else 0


def _bytes_of(groups: Sequence[int]) -> bytes:
    """The whole bytes in the groups' bits; the last few bits (less than a byte) are padding."""
    bits = 5 * len(groups)
    return (_int_of(groups) >> (bits % 8)).to_bytes(bits // 8, "big")


def _padded_bytes_of(groups: Sequence[int]) -> bytes:
    """The groups' bits, zero-padded at the end to whole bytes (what the signature covers)."""
    bits = 5 * len(groups)
    size = -(-bits // 8)
    return (_int_of(groups) << (8 * size - bits)).to_bytes(size, "big")


def _groups_of_bytes(data: bytes) -> list[int]:
    """Bytes as five-bit groups, zero-padded at the end to whole groups."""
    bits = 8 * len(data)
    count = -(-bits // 5)
    return _groups_of_int(int.from_bytes(data, "big") << (5 * count - bits), count)


def _groups_of_int(value: int, count: int | None = None) -> list[int]:
    """``value`` in ``count`` five-bit groups; by default the fewest that hold it (none for 0)."""
    if count is None:
        count = -(-value.bit_length() // 5)
    return [(value >> (5 * (count - 1 - i))) & 31 for i in range(count)]


def _payee(signature: bytes, message: bytes, n_field: Sequence[int] | None) -> str:
    """The node key that signed: the `n` field's, checked against the signature, or else the
    one recovered from it (BOLT #11: with a valid `n` field, readers verify and do not recover;
    verification refuses a high-S signature, recovery does not)."""
    try:
        if n_field is not None:
            payee = _bytes_of(n_field)
            der = cdata_to_der(recoverable_convert(deserialize_recoverable(signature)))
            if not verify_signature(der, message, payee):
                raise InvoiceError("invalid invoice: the signature is not the n field's key")
            return payee.hex()
        key = PublicKey.from_signature_and_message(signature, message)
        return key.format(compressed=True).hex()
    except InvoiceError:
        raise
    except Exception as exc:  # coincurve raises ValueError or its own errors on bad input
        raise InvoiceError(f"invalid invoice: bad signature ({_reason(exc)})") from None


def check_invoice(
    text: object | Invoice,
    *,
    network: str | None,
    now: float,
    min_remaining: float = 0.0,
    require_amount: bool = True,
) -> Invoice:
    """Decode (unless already decoded) and check network, amount presence and expiry.

    ``min_remaining``: refuse invoices that expire within this many seconds of ``now``, so a
    payment is not started that cannot finish in time. ``network=None`` accepts any network.
    """
    inv = text if isinstance(text, Invoice) else decode_invoice(text)
    if network is not None and inv.network != network_name(network):
        raise WrongNetwork(
            f"invoice is for {inv.network}, this wallet is on {network_name(network)}"
        )
    if require_amount and inv.amount_msats is None:
        raise InvoiceError("invoice has no amount; refusing to pick one")
    if now + min_remaining >= inv.expires_at:
        if now >= inv.expires_at:
            raise InvoiceExpired(f"invoice expired at {inv.expires_at} (now {int(now)})")
        raise InvoiceExpired(
            f"invoice expires at {inv.expires_at}, under {min_remaining:g}s from now ({int(now)})"
        )
    return inv


def make_invoice(
    node_secret_hex: str,
    *,
    amount_msats: int,
    description: str = "",
    expiry: int = DEFAULT_EXPIRY,
    created_at: int,
    network: str = DEFAULT_NETWORK,
    preimage: str | None = None,
    description_hash: str | None = None,
) -> NewInvoice:
    """A real signed BOLT11 invoice; ``preimage`` defaults to 32 random bytes."""
    _check_msats(amount_msats)
    if isinstance(expiry, bool) or not isinstance(expiry, int) or not 1 <= expiry <= 2**32:
        raise InvoiceError("expiry must be a whole number of seconds, at least 1")
    if len(description.encode("utf-8")) > MAX_DESCRIPTION_BYTES:
        raise InvoiceError(f"description longer than {MAX_DESCRIPTION_BYTES} bytes")
    if isinstance(created_at, bool) or not isinstance(created_at, int):
        raise InvoiceError("created_at must be a whole number of unix seconds")
    if not 0 <= created_at < 2 ** (5 * _TIMESTAMP_GROUPS):
        raise InvoiceError("created_at does not fit the 35-bit BOLT11 timestamp")
    secret = preimage if preimage is not None else os.urandom(32).hex()
    payment_hash = payment_hash_of(secret)
    payment_secret = os.urandom(32).hex()
    fields: list[tuple[str, list[int]]] = [
        ("p", _groups_of_bytes(bytes.fromhex(payment_hash))),
        ("s", _groups_of_bytes(bytes.fromhex(payment_secret))),
    ]
    if description_hash is not None:
        if not re.fullmatch(r"[0-9a-f]{64}", description_hash):
            raise InvoiceError("description_hash must be 64 lower-case hex characters")
        fields.append(("h", _groups_of_bytes(bytes.fromhex(description_hash))))
    else:
        fields.append(("d", _groups_of_bytes(description.encode("utf-8"))))
    fields.append(("x", _groups_of_int(expiry)))
    fields.append(("c", _groups_of_int(_MIN_FINAL_CLTV_EXPIRY)))
    fields.append(("9", _groups_of_int(_MADE_FEATURES)))
    data = _groups_of_int(created_at, _TIMESTAMP_GROUPS)
    for char, groups in fields:
        data += [CHARSET.index(char), len(groups) >> 5, len(groups) & 31, *groups]
    hrp = "ln" + network_prefix(network) + msats_to_hrp_amount(amount_msats)
    try:
        key = PrivateKey.from_hex(node_secret_hex)
    except Exception as exc:  # coincurve: ValueError for bad hex, its own error for a bad key
        raise InvoiceError(f"cannot encode invoice: bad node key ({_reason(exc)})") from None
    signature = key.sign_recoverable(hrp.encode("ascii") + _padded_bytes_of(data))
    encoded = bech32_encode(hrp, data + _groups_of_bytes(signature))
    payee = key.public_key.format(compressed=True).hex()
    invoice = Invoice(
        bolt11=encoded,
        network=network_name(network),
        amount_msats=amount_msats,
        payment_hash=payment_hash,
        payment_secret=payment_secret,
        description=None if description_hash is not None else description,
        description_hash=description_hash,
        created_at=created_at,
        expiry=expiry,
        payee=payee,
    )
    return NewInvoice(invoice=invoice, preimage=secret)


def _check_msats(msats: object) -> None:
    if isinstance(msats, bool) or not isinstance(msats, int) or msats <= 0:
        raise InvoiceError(f"amount must be a positive whole number of msats, got {msats!r}")


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
