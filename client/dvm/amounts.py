"""Amounts in DVM events: the ``amount`` tag (integer millisats and an optional BOLT11 invoice),
how it is read, and the rules a provider's asking price must obey. Pure.

Rules for what a provider sends (:func:`check_amount`, applied by every builder in
:mod:`client.dvm`):

- the amount is an ``int`` of millisats, ``>= 0`` (no floats, no bools, no negatives);
- an invoice comes with an amount, and the amount its human-readable part names (BOLT #11:
  ``ln`` + currency + amount + multiplier) equals the amount tag; an invoice for "any amount"
  is refused;
- when the request names a ``bid``, an amount asked for is at most the bid.

The invoice's amount is read from its human-readable part only: signature, checksum, expiry and
network are the payer's business (``client.wallet.invoices`` decodes and verifies the whole
invoice, and reads the amount with :func:`hrp_amount` from here, so both sides count the same).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from client.nostr.errors import InvoiceError, JobRejected
from client.nostr.event import Tags

#: msats per unit of each BOLT #11 multiplier ('p', a tenth of a msat, is handled apart).
MSAT_PER_UNIT: Final[dict[str, int]] = {"": 10**11, "m": 10**8, "u": 10**5, "n": 10**2}
_HRP_RE = re.compile(r"^ln(bcrt|bc|tbs|tb)(?:(\d+)([munp]?))?$")
MAX_MSATS_DIGITS = 18
MAX_BOLT11_CHARS = 4096
#: JobRejected reason for an amount that breaks the rules above.
AMOUNT_REASON = "amount"


@dataclass(frozen=True, slots=True)
class Amount:
    """An ``amount`` tag: millisats and an optional BOLT11 invoice (not decoded here)."""

    msats: int
    bolt11: str | None = None

    @property
    def sats(self) -> int:
        return self.msats // 1000


def hrp_amount(hrp: str) -> tuple[str, int | None]:
    """(currency prefix, exact msats or None for "any amount") from a lower-case BOLT #11
    human-readable part, with integer arithmetic. Raises :class:`InvoiceError`."""
    m = _HRP_RE.match(hrp)
    if m is None:
        raise InvoiceError(f"human-readable part {hrp[:40]!r} is not ln + bc/tb/tbs/bcrt + amount")
    prefix, digits, multiplier = m.groups()
    if digits is None:
        return prefix, None
    value = int(digits)
    if value == 0:
        raise InvoiceError("invoice amount is zero")
    if multiplier == "p":
        # 1p = 0.1 msat: BOLT #11 readers MUST fail unless the last decimal is 0.
        if value % 10:
            raise InvoiceError("amount has sub-millisatoshi precision")
        return prefix, value // 10
    return prefix, value * MSAT_PER_UNIT[multiplier]


def invoice_amount(bolt11: str) -> int | None:
    """The msats a BOLT11 string asks for, read from its human-readable part (None: any
    amount). Raises :class:`InvoiceError` for a string that has no readable one."""
    text = bolt11.strip()
    if text.lower().startswith("lightning:"):
        text = text[len("lightning:") :]
    if text != text.lower() and text != text.upper():
        raise InvoiceError("invoice mixes upper and lower case")
    lower = text.lower()
    sep = lower.rfind("1")
    if sep < 1:
        raise InvoiceError("invoice has no bech32 separator '1'")
    return hrp_amount(lower[:sep])[1]


def check_amount(
    msats: object, bolt11: str | None = None, *, bid_msats: int | None = None
) -> Amount | None:
    """The amount a provider may send, checked (see the module rules); None for no amount.
    Raises :class:`JobRejected` with reason ``amount``."""
    if msats is None:
        if bolt11 is not None:
            raise JobRejected("an invoice needs an amount tag that names its price", AMOUNT_REASON)
        return None
    if type(msats) is not int or msats < 0:
        raise JobRejected("amount must be a non-negative integer of millisats", AMOUNT_REASON)
    if len(str(msats)) > MAX_MSATS_DIGITS:
        raise JobRejected(f"amount longer than {MAX_MSATS_DIGITS} digits", AMOUNT_REASON)
    if bid_msats is not None and msats > bid_msats:
        raise JobRejected(
            f"amount {msats} msats is above the customer's bid of {bid_msats} msats", AMOUNT_REASON
        )
    if bolt11 is None:
        return Amount(msats)
    if not bolt11 or len(bolt11) > MAX_BOLT11_CHARS:
        raise JobRejected("invoice must be a BOLT11 string", AMOUNT_REASON)
    try:
        asked = invoice_amount(bolt11)
    except InvoiceError as exc:
        raise JobRejected(f"invoice is not BOLT11: {exc}", AMOUNT_REASON) from None
    if asked != msats:
        named = "any amount" if asked is None else f"{asked} msats"
        raise JobRejected(
            f"invoice asks for {named}, the amount tag says {msats} msats", AMOUNT_REASON
        )
    return Amount(msats, bolt11)


def amount_tags(amount: Amount | None) -> Tags:
    """``[["amount", "<msats>", "<bolt11>"?]]``, or no tag."""
    if amount is None:
        return []
    if amount.bolt11:
        return [["amount", str(amount.msats), amount.bolt11]]
    return [["amount", str(amount.msats)]]


def parse_amount(tag: Sequence[str]) -> Amount:
    """``["amount", "<msats>", "<bolt11>"?]`` as received; strict syntax: digits only, a bolt11
    that starts with ``ln``. The invoice itself is the payer's to check."""
    if (
        len(tag) < 2
        or not tag[1].isascii()
        or not tag[1].isdigit()
        or len(tag[1]) > MAX_MSATS_DIGITS
    ):
        raise JobRejected("amount must be a whole number of millisats", "malformed")
    bolt11 = tag[2].strip() if len(tag) > 2 and tag[2].strip() else None
    if bolt11 is not None and (
        not bolt11.lower().startswith("ln") or len(bolt11) > MAX_BOLT11_CHARS
    ):
        raise JobRejected("amount invoice is not a BOLT11 string", "malformed")
    return Amount(int(tag[1]), bolt11)


__all__ = [
    "AMOUNT_REASON",
    "MSAT_PER_UNIT",
    "Amount",
    "amount_tags",
    "check_amount",
    "hrp_amount",
    "invoice_amount",
    "parse_amount",
]
