"""The customer's payer: guard, record intent, pay, record outcome; pay only the agreeing quorum.

`Payer.pay` is safe to call again for the same invoice at any time (after a timeout, a crash, a
restart): an invoice that is paid is never paid again, and one whose outcome is open is looked up
with the wallet's ``lookup_invoice``, never re-paid. `Payer.resolve_open` does that for every open
payment at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from client.nostr.errors import (
    BudgetExceeded,
    InvoiceError,
    InvoiceNotFound,
    NostrSwarmError,
    PaymentError,
    WalletError,
    WalletUnavailable,
)

from .guard import DAY_SECONDS, Bill, PaymentGuard
from .interface import Wallet
from .invoices import Invoice, decode_invoice, preimage_matches
from .payment_ledger import OPEN_STATES, PaymentLedger, PaymentRecord

log = logging.getLogger(__name__)

Status = Literal["paid", "refused", "failed", "unknown", "skipped"]
# NIP-47 error codes after which we know nothing left the wallet, so trying again later is safe.
# Anything else (timeouts, INTERNAL, OTHER, a wallet that went away) leaves the outcome open.
DEFINITELY_NOT_PAID = frozenset(
    {
        "PAYMENT_FAILED",
        "INSUFFICIENT_BALANCE",
        "UNAUTHORIZED",
        "RESTRICTED",
        "QUOTA_EXCEEDED",
        "RATE_LIMITED",
        "NOT_IMPLEMENTED",
        "UNSUPPORTED_ENCRYPTION",
    }
)


class PaymentGate(Protocol):
    """Who else must agree to a payment: a caller's reservation (a gateway request's hold).

    ``authorize`` is asked after the guard and before anything is recorded or sent; False
    refuses the payment. It must be idempotent for one payment hash. ``outcome`` hears every
    outcome of an authorized payment (``paid``, ``failed``, or ``unknown``: the money may have
    left, so it stays counted until resolved).
    """

    def authorize(self, payment_hash: str, msats: int) -> bool: ...

    def outcome(self, payment_hash: str, status: str) -> None: ...


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    """What happened to one provider's invoice.

    ``status``: ``paid`` (``amount_msats`` left our wallet; ``repeated`` when that happened in an
    earlier call), ``refused`` (the guard said no: nothing paid), ``failed`` (the wallet said no:
    nothing paid), ``unknown`` (wallet timed out or went away: resolve later, do not re-pay),
    ``skipped`` (not in the agreeing quorum, or no invoice).
    """

    provider: str
    job_id: str
    status: Status
    amount_msats: int = 0
    payment_hash: str | None = None
    preimage: str | None = None
    error: NostrSwarmError | None = None
    repeated: bool = False

    @property
    def paid(self) -> bool:
        return self.status == "paid"

    @property
    def reason(self) -> str | None:
        return None if self.error is None else str(self.error)


@dataclass(frozen=True, slots=True)
class QuorumPayment:
    """Per-provider outcomes of paying one job's quorum."""

    job_id: str
    outcomes: dict[str, PaymentOutcome] = field(default_factory=dict)

    @property
    def paid_msats(self) -> int:
        return sum(o.amount_msats for o in self.outcomes.values() if o.paid)

    @property
    def paid_sats(self) -> float:
        """For display; accounting stays in integer msats."""
        return self.paid_msats / 1000

    @property
    def unknown_msats(self) -> int:
        """Msats that may have left the wallet (outcome not known yet): never count them as 0."""
        return sum(o.amount_msats for o in self.outcomes.values() if o.status == "unknown")

    def by_provider_msats(self) -> dict[str, int]:
        return {p: o.amount_msats for p, o in self.outcomes.items() if o.paid}

    @property
    def unresolved(self) -> list[str]:
        return [p for p, o in self.outcomes.items() if o.status == "unknown"]


class Payer:
    """Pays providers' invoices from ``wallet``, guarded by ``guard``, recorded in ``ledger``."""

    def __init__(
        self,
        wallet: Wallet,
        ledger: PaymentLedger,
        guard: PaymentGuard | None = None,
        *,
        clock: Callable[[], float] = time.time,
        not_found_grace_s: float = 120.0,
    ) -> None:
        self.wallet = wallet
        self.ledger = ledger
        self.guard = guard or PaymentGuard()
        self._clock = clock
        # A wallet may not know of a payment yet when its request is still on the way; only after
        # this long does "not found" mean "never paid".
        self.not_found_grace_s = not_found_grace_s
        self._lock = asyncio.Lock()

    def _now(self) -> int:
        return int(self._clock())

    # --- one invoice -----------------------------------------------------------------------

    async def pay(
        self,
        job_id: str,
        provider: str,
        invoice: str,
        *,
        quote_msats: object,
        bid_msats: object,
        job_budget_msats: int | None = None,
        gate: PaymentGate | None = None,
    ) -> PaymentOutcome:
        """Pay one provider's invoice for ``job_id`` if every rule allows it. Never raises for a
        refusal or a wallet failure: the outcome says what happened. ``job_budget_msats``: the
        most this job may cost in all (on top of the guard's own per-job budget); ``gate``: a
        reservation that must authorize the payment and hears its outcome."""

        def outcome(status: Status, **kw: object) -> PaymentOutcome:
            return PaymentOutcome(provider, job_id, status, **kw)  # type: ignore[arg-type]

        try:
            inv = decode_invoice(invoice)
        except InvoiceError as exc:
            return outcome("refused", error=exc)
        done = self._already(inv, job_id, provider)
        if isinstance(done, PaymentOutcome):
            return done
        if done is not None:  # open from an earlier attempt: look it up, never pay again blindly
            state = await self._resolve(done)
            if state != "failed":
                return self._from_record(self.ledger.get(inv.payment_hash) or done, repeated=True)
        async with self._lock:  # guard + intent together, so budgets count every payment once
            now = self._now()
            try:
                self.guard.check(
                    inv,
                    quote_msats=quote_msats,
                    bid_msats=bid_msats,
                    now=now,
                    spent_job_msats=self.ledger.spent_msats(
                        job_id=job_id, exclude=inv.payment_hash
                    ),
                    spent_day_msats=self.ledger.spent_msats(
                        since=now - DAY_SECONDS, exclude=inv.payment_hash
                    ),
                    job_budget_msats=job_budget_msats,
                )
            except PaymentError as exc:
                # A refused invoice may be an attack (above the quote, replayed): say so.
                log.warning("refused to pay %s for job %s: %s", provider[:16], job_id[:16], exc)
                return outcome("refused", payment_hash=inv.payment_hash, error=exc)
            assert inv.amount_msats is not None  # the guard requires an amount
            if gate is not None and not gate.authorize(inv.payment_hash, inv.amount_msats):
                err = BudgetExceeded(
                    f"paying {inv.amount_msats} msats is more than this request has left "
                    "of what it reserved"
                )
                log.warning("refused to pay %s for job %s: %s", provider[:16], job_id[:16], err)
                return outcome("refused", payment_hash=inv.payment_hash, error=err)
            if not self.ledger.begin(inv, job_id=job_id, provider=provider, now=now):
                rec = self.ledger.get(inv.payment_hash)
                assert rec is not None
                return self._from_record(rec, repeated=True)
        result = await self._send(inv, job_id, provider)
        if gate is not None:
            gate.outcome(inv.payment_hash, result.status)
        return result

    async def _send(self, inv: Invoice, job_id: str, provider: str) -> PaymentOutcome:
        h = inv.payment_hash
        try:
            preimage = await self.wallet.pay_invoice(inv.bolt11)
        except WalletError as exc:
            if exc.code in DEFINITELY_NOT_PAID:
                self.ledger.mark_failed(h, f"{exc.code}: {exc}", self._now())
                return PaymentOutcome(provider, job_id, "failed", payment_hash=h, error=exc)
            self.ledger.mark_unknown(h, f"{exc.code}: {exc}", self._now())
            return PaymentOutcome(
                provider, job_id, "unknown", inv.amount_msats or 0, payment_hash=h, error=exc
            )
        except Exception as exc:  # a broken wallet must not crash the customer; outcome unknown
            log.exception("wallet raised while paying %s", h[:16])
            err: WalletError = WalletUnavailable(f"wallet raised {type(exc).__name__}: {exc}")
            self.ledger.mark_unknown(h, str(err), self._now())
            return PaymentOutcome(
                provider, job_id, "unknown", inv.amount_msats or 0, payment_hash=h, error=err
            )
        if not preimage_matches(preimage, h):
            err = WalletError("wallet reported success with a preimage that does not match")
            self.ledger.mark_unknown(h, str(err), self._now())
            return PaymentOutcome(
                provider, job_id, "unknown", inv.amount_msats or 0, payment_hash=h, error=err
            )
        self.ledger.mark_paid(h, preimage, self._now())
        assert inv.amount_msats is not None
        return PaymentOutcome(
            provider,
            job_id,
            "paid",
            amount_msats=inv.amount_msats,
            payment_hash=h,
            preimage=preimage,
        )

    def _already(
        self, inv: Invoice, job_id: str, provider: str
    ) -> PaymentOutcome | PaymentRecord | None:
        """A finished outcome for an invoice we know, the open record to resolve, or None."""
        rec = self.ledger.get(inv.payment_hash)
        if rec is None or rec.state == "failed":
            return None
        if (rec.job_id, rec.provider) != (job_id, provider):
            # The same invoice presented for another job or by another provider: one payment
            # must never be counted as two.
            err = InvoiceError(
                f"invoice {inv.payment_hash[:16]}… was already presented for job "
                f"{rec.job_id[:16]} by {rec.provider[:16]}"
            )
            log.warning("refused to pay %s for job %s: %s", provider[:16], job_id[:16], err)
            return PaymentOutcome(
                provider, job_id, "refused", payment_hash=inv.payment_hash, error=err
            )
        if rec.state == "paid":
            return self._from_record(rec, repeated=True)
        return rec

    @staticmethod
    def _from_record(rec: PaymentRecord, *, repeated: bool) -> PaymentOutcome:
        if rec.state == "paid":
            return PaymentOutcome(
                rec.provider,
                rec.job_id,
                "paid",
                amount_msats=rec.amount_msats,
                payment_hash=rec.payment_hash,
                preimage=rec.preimage,
                repeated=repeated,
            )
        err = WalletError(
            rec.error or "payment outcome not known yet; will be looked up, not re-paid"
        )
        status: Status = "failed" if rec.state == "failed" else "unknown"
        return PaymentOutcome(
            rec.provider,
            rec.job_id,
            status,
            0 if status == "failed" else rec.amount_msats,
            payment_hash=rec.payment_hash,
            error=err,
        )

    # --- resolving open payments -----------------------------------------------------------

    async def resolve_open(self) -> list[PaymentRecord]:
        """Look up every payment left open (by a crash, a timeout, a wallet that went away) and
        record what the wallet says. Pays nothing. Returns the records after resolution."""
        out: list[PaymentRecord] = []
        for rec in self.ledger.open_payments():
            await self._resolve(rec)
            out.append(self.ledger.get(rec.payment_hash) or rec)
        return out

    async def _resolve(self, rec: PaymentRecord) -> str:
        h = rec.payment_hash
        try:
            tx = await self.wallet.lookup_invoice(h)
        except InvoiceNotFound:
            if self._now() - rec.updated_at >= self.not_found_grace_s:
                self.ledger.mark_failed(
                    h,
                    "resolved by lookup_invoice: the wallet has no record of this payment",
                    self._now(),
                )
                return "failed"
            return rec.state
        except Exception as exc:  # still unreachable: stays open, counted against budgets
            log.info("cannot resolve payment %s yet: %s", h[:16], exc)
            return rec.state
        was = f"outcome was {rec.state}" + (f" ({rec.error})" if rec.error else "")
        if tx.settled and (tx.preimage is None or preimage_matches(tx.preimage, h)):
            note = f"resolved by lookup_invoice: paid; {was}"
            self.ledger.mark_paid(h, tx.preimage or "", self._now(), note=note)
            return "paid"
        if tx.state in ("failed", "expired"):
            self.ledger.mark_failed(
                h,
                f"resolved by lookup_invoice: the wallet reports it {tx.state}; {was}",
                self._now(),
            )
            return "failed"
        return rec.state if rec.state in OPEN_STATES else "unknown"

    # --- a quorum --------------------------------------------------------------------------

    async def pay_quorum(
        self,
        job_id: str,
        agreeing: Iterable[str],
        bills: Mapping[str, Bill],
        *,
        bid_msats: object,
        job_budget_msats: int | None = None,
        gate: PaymentGate | None = None,
    ) -> QuorumPayment:
        """Pay each agreeing provider's bill; skip everyone else (never pay a dissenter).

        ``bills`` maps provider public key -> its :class:`Bill` (invoice and quoted msats).
        """
        agree = list(dict.fromkeys(agreeing))
        outcomes: dict[str, PaymentOutcome] = {}
        for provider in bills:
            if provider not in agree:
                outcomes[provider] = PaymentOutcome(
                    provider,
                    job_id,
                    "skipped",
                    error=PaymentError("not in the agreeing quorum: not paid"),
                )
        to_pay: list[str] = []
        seen_hashes: dict[str, str] = {}
        for provider in agree:
            bill = bills.get(provider)
            if bill is None:
                outcomes[provider] = PaymentOutcome(
                    provider, job_id, "skipped", error=PaymentError("provider sent no invoice")
                )
                continue
            h = _hash_or_none(bill.invoice)
            if h is not None and h in seen_hashes:
                log.warning(
                    "refused to pay %s for job %s: same invoice as provider %s",
                    provider[:16],
                    job_id[:16],
                    seen_hashes[h][:16],
                )
                outcomes[provider] = PaymentOutcome(
                    provider,
                    job_id,
                    "refused",
                    payment_hash=h,
                    error=InvoiceError(f"same invoice as provider {seen_hashes[h][:16]}"),
                )
                continue
            if h is not None:
                seen_hashes[h] = provider
            to_pay.append(provider)
        results = await asyncio.gather(
            *(
                self.pay(
                    job_id,
                    p,
                    bills[p].invoice,
                    quote_msats=bills[p].quote_msats,
                    bid_msats=bid_msats,
                    job_budget_msats=job_budget_msats,
                    gate=gate,
                )
                for p in to_pay
            )
        )
        outcomes.update(zip(to_pay, results, strict=True))
        ordered = {p: outcomes[p] for p in [*agree, *bills] if p in outcomes}
        return QuorumPayment(job_id, ordered)


def _hash_or_none(invoice: str) -> str | None:
    try:
        return decode_invoice(invoice).payment_hash
    except InvoiceError:
        return None
