"""BOLT11 invoices: make signed ones, decode and check any. No I/O.

Decoding goes through the ``bolt11`` package and then adds the reader rules it skips (BOLT #11
"Requirements" for readers): no mixed case, ``p`` amounts ending in 0, no unknown even feature
bits. Every failure is an :class:`~client.nostr.errors.InvoiceError`; amounts are exact integer
msats, computed from the human-readable part with integer arithmetic (never through floats).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from typing import Final

import bolt11 as _bolt11
from bitstring import BitArray
from bolt11.models.features import Feature, Features, FeatureState
from bolt11.models.tags import TagChar, Tags
from coincurve import PrivateKey

from client.dvm.amounts import MSAT_PER_UNIT, hrp_amount
from client.nostr.errors import InvoiceError, InvoiceExpired, WrongNetwork


def _u5_to_bits(groups: list[int]) -> BitArray:
    """Same result as ``bolt11.bit_utils.u5_to_bitarray``, in one call instead of appending
    five bits at a time (which made every decode cost 6-9 ms: the bound on a paid swarm)."""
    value = 0
    for g in groups:
        value = (value << 5) | g
    return BitArray(uint=value, length=5 * len(groups)) if groups else BitArray()


def _bits_to_u5(bits: BitArray) -> list[int]:
    """Same result as ``bolt11.bit_utils.bitarray_to_u5`` without reading five bits at a time."""
    n, rest = divmod(len(bits), 5)
    if rest:
        raise ValueError("bit length is not a multiple of 5")
    value = bits.uint if n else 0
    return [(value >> (5 * (n - 1 - i))) & 31 for i in range(n)]


# The bolt11 package imports these helpers by name: swap in the fast versions where it looks
# them up (outputs are identical; tests/client/wallet checks every BOLT #11 example both ways).
for _module, _name, _fast in (
    ("bolt11.decode", "u5_to_bitarray", _u5_to_bits),
    ("bolt11.encode", "bitarray_to_u5", _bits_to_u5),
    ("bolt11.models.fallback", "u5_to_bitarray", _u5_to_bits),
    ("bolt11.models.fallback", "bitarray_to_u5", _bits_to_u5),
):
    if hasattr(sys.modules.get(_module), _name):
        setattr(sys.modules[_module], _name, _fast)

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


# Decoding costs milliseconds (the package works bit by bit); the same invoice is read several
# times on its way (guard, payer, wallet service), and an Invoice is immutable, so keep recent
# ones. Failures are not cached: they raise.
@functools.lru_cache(maxsize=4096)
def _decode_lower(lower: str) -> Invoice:
    sep = lower.rfind("1")
    if sep < 1:
        raise InvoiceError("invoice has no bech32 separator '1'")
    network, amount = amount_from_hrp(lower[:sep])
    try:
        decoded = _bolt11.decode(lower)
    except Exception as exc:  # the package raises many unrelated types (ValueError, bitstring...)
        raise InvoiceError(f"invalid invoice: {_reason(exc)}") from None
    _check_features(decoded.features)
    payee = decoded.payee
    if not payee:
        raise InvoiceError("invoice payee could not be recovered from the signature")
    return Invoice(
        bolt11=lower,
        network=network,
        amount_msats=amount,
        payment_hash=decoded.payment_hash,
        payment_secret=decoded.payment_secret or "",
        description=decoded.description,
        description_hash=decoded.description_hash,
        created_at=int(decoded.date),
        expiry=int(decoded.expiry),
        payee=payee,
    )


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
    secret = preimage if preimage is not None else os.urandom(32).hex()
    payment_hash = payment_hash_of(secret)
    tags = Tags()
    tags.add(TagChar.payment_hash, payment_hash)
    payment_secret = os.urandom(32).hex()
    tags.add(TagChar.payment_secret, payment_secret)
    if description_hash is not None:
        if not re.fullmatch(r"[0-9a-f]{64}", description_hash):
            raise InvoiceError("description_hash must be 64 lower-case hex characters")
        tags.add(TagChar.description_hash, description_hash)
    else:
        tags.add(TagChar.description, description)
    tags.add(TagChar.expire_time, expiry)
    tags.add(TagChar.min_final_cltv_expiry, 18)
    tags.add(
        TagChar.features,
        Features.from_feature_list(
            {
                Feature.var_onion_optin: FeatureState.required,
                Feature.payment_secret: FeatureState.required,
            }
        ),
    )
    draft = _bolt11.Bolt11(
        currency=network_prefix(network),
        date=created_at,
        tags=tags,
        amount_msat=_bolt11.MilliSatoshi(amount_msats),
    )
    try:
        encoded = _bolt11.encode(draft, private_key=node_secret_hex)
        payee = PrivateKey.from_hex(node_secret_hex).public_key.format(compressed=True).hex()
    except Exception as exc:
        raise InvoiceError(f"cannot encode invoice: {_reason(exc)}") from None
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


def _check_features(features: Features | None) -> None:
    if features is None:
        return
    for feature, state in features.feature_list.items():
        bit = feature.value * 2 + (0 if state is FeatureState.required else 1)
        if bit % 2 == 0 and bit not in _KNOWN_EVEN_FEATURES:
            raise InvoiceError(f"invoice requires unknown feature bit {bit}")


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
