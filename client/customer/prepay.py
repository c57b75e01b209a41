"""Pay-before-work: which ``payment-required`` feedback a customer pays before any result. Pure:
feedback in, a decision out; the caller pays (``Payer.pay``) and reports back with
:meth:`PrepayBook.settle`.

A priced nostrdvm DVM answers a job with ``payment-required`` and a BOLT11, and does nothing more
until paid. The quorum engine pays only the agreeing providers, after the results, so such a job
used to time out. Paying first gives up "only the quorum is paid": a prepaid provider may still
dissent or vanish, and its money is gone. So prepaying is opt-in and bounded, strict as money is:

- only ``payment-required`` feedback whose ``amount`` tag carries a BOLT11 (zaps and Cashu are
  not ours to send) [``not_asked``, ``no_invoice``];
- never without a ceiling: the job's bid per provider and, if set, the policy's ``max_msats``;
  the ``amount`` must be within both [``no_limit``, ``over_bid``, ``over_cap``];
- only providers the job addressed, when it addressed any [``not_target``];
- one prepayment per provider and job [``already``], at most ``max_providers`` per job (default:
  the quorum size, the fewest that can reach it) [``full``], none once the job is decided
  [``decided``].

The invoice is then checked like any other by the ``PaymentGuard`` (decodes, network, expiry,
amount ≤ quote ≤ bid, budgets). A provider paid in advance is not paid again after the quorum:
:meth:`PrepayBook.unpaid_bills` drops it from the bills.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from client.dvm.nip90 import PAYMENT_REQUIRED, JobFeedback

B = TypeVar("B")


@dataclass(frozen=True, slots=True)
class PrepayPolicy:
    """``max_providers``: most providers paid in advance per job (None: the quorum size);
    ``max_msats``: most paid in advance to one provider (None: the bid alone bounds it)."""

    max_providers: int | None = None
    max_msats: int | None = None

    def __post_init__(self) -> None:
        if self.max_providers is not None and self.max_providers < 1:
            raise ValueError("max_providers must be at least 1")
        if self.max_msats is not None and self.max_msats < 0:
            raise ValueError("max_msats must not be negative")


@dataclass(frozen=True, slots=True)
class Prepay:
    """Pay ``invoice`` (``amount_msats`` quoted) to ``provider`` now."""

    provider: str
    invoice: str
    amount_msats: int


@dataclass(frozen=True, slots=True)
class Decline:
    """Do not pay in advance; ``reason`` is one of the codes in the module docstring."""

    provider: str
    reason: str


class PrepayBook:
    """One job's prepayments: :meth:`consider` each feedback, then :meth:`settle` each payment
    made. A failed or refused payment frees its place (another provider may take it)."""

    def __init__(
        self,
        policy: PrepayPolicy,
        *,
        quorum: int,
        bid_msats: int | None,
        targets: Collection[str] = (),
    ) -> None:
        self.policy = policy
        self.bid_msats = bid_msats
        self.targets = frozenset(targets)
        self.limit = policy.max_providers if policy.max_providers is not None else max(1, quorum)
        self.pending: dict[str, int] = {}  # provider -> msats being paid
        self.paid: dict[str, int] = {}  # provider -> msats paid in advance
        self.unknown: dict[str, int] = {}  # provider -> msats whose payment outcome is unknown

    @property
    def paid_msats(self) -> int:
        return sum(self.paid.values())

    def consider(self, fb: JobFeedback, *, decided: bool = False) -> Prepay | Decline:
        """Whether to pay this feedback's invoice now; a :class:`Prepay` takes a place until
        :meth:`settle` says how it went."""
        who = fb.provider

        def no(reason: str) -> Decline:
            return Decline(who, reason)

        if fb.status != PAYMENT_REQUIRED:
            return no("not_asked")
        if decided:
            return no("decided")
        if self.targets and who not in self.targets:
            return no("not_target")
        if who in self.paid or who in self.pending or who in self.unknown:
            return no("already")
        if fb.amount is None or not fb.amount.bolt11:
            return no("no_invoice")
        ceilings = [c for c in (self.bid_msats, self.policy.max_msats) if c is not None]
        if not ceilings:
            return no("no_limit")
        if self.bid_msats is not None and fb.amount.msats > self.bid_msats:
            return no("over_bid")
        if self.policy.max_msats is not None and fb.amount.msats > self.policy.max_msats:
            return no("over_cap")
        if len(self.paid) + len(self.pending) + len(self.unknown) >= self.limit:
            return no("full")
        self.pending[who] = fb.amount.msats
        return Prepay(who, fb.amount.bolt11, fb.amount.msats)

    def settle(
        self, provider: str, *, paid: bool, unknown: bool = False, msats: int | None = None
    ) -> None:
        """The outcome of a :class:`Prepay`: ``paid`` (``msats``: what left the wallet, default
        the amount asked), ``unknown`` (the wallet did not say: the place stays taken and the
        provider is never billed again), or neither (refused or failed: the place is free)."""
        asked = self.pending.pop(provider, None) or 0
        if paid:
            self.paid[provider] = msats if msats is not None else asked
        elif unknown:
            self.unknown[provider] = asked

    def unpaid_bills(self, bills: Mapping[str, B]) -> dict[str, B]:
        """``bills`` (provider -> bill) without the providers paid, being paid, or of unknown
        outcome, in advance: none of them is paid twice."""
        taken = self.paid.keys() | self.pending.keys() | self.unknown.keys()
        return {p: b for p, b in bills.items() if p not in taken}


class Unbilled:
    """A job's outcome as the post-quorum pay hook should see it: the same object, but its
    ``invoices`` without the providers :meth:`PrepayBook.unpaid_bills` drops."""

    def __init__(self, result: Any, book: PrepayBook) -> None:
        self._result = result
        self.invoices = book.unpaid_bills(result.invoices)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._result, name)
