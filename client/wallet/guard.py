"""The customer's payment guard: may this invoice be paid? Pure (values and a clock in, a verdict
out), so every rule is tested without a wallet.

Rules, in order: the invoice decodes and its signature verifies; it is for our network; it names an
amount; it does not expire within ``min_remaining_s``; the provider gave a quote; amount <= quote
<= bid; and paying it keeps the job's and the day's spending within budget. Every refusal is a
typed error: :class:`InvoiceError` (``WrongNetwork``, ``InvoiceExpired``), :class:`BudgetExceeded`,
or :class:`PaymentError` for a missing or malformed quote or bid.
"""

from __future__ import annotations

from dataclasses import dataclass

from client.nostr.errors import BudgetExceeded, PaymentError

from .invoices import DEFAULT_NETWORK, Invoice, check_invoice

DAY_SECONDS = 86_400


@dataclass(frozen=True, slots=True)
class Budget:
    """Spending caps in msats; None means no cap. The day is a rolling 24 hours."""

    per_job_msats: int | None = None
    per_day_msats: int | None = None

    @classmethod
    def sats(cls, per_job: int | None = None, per_day: int | None = None) -> Budget:
        return cls(
            per_job_msats=None if per_job is None else per_job * 1000,
            per_day_msats=None if per_day is None else per_day * 1000,
        )


@dataclass(frozen=True, slots=True)
class Bill:
    """What a provider asks to be paid: its BOLT11 invoice and its quote (``amount`` tag, msats)."""

    invoice: str
    quote_msats: int | None


class PaymentGuard:
    """Checks an invoice against quote, bid, budgets, network and expiry before any payment."""

    def __init__(
        self,
        *,
        network: str = DEFAULT_NETWORK,
        budget: Budget | None = None,
        min_remaining_s: float = 10.0,
    ) -> None:
        self.network = network
        self.budget = budget or Budget()
        self.min_remaining_s = min_remaining_s

    def check(
        self,
        invoice: str | Invoice,
        *,
        quote_msats: object,
        bid_msats: object,
        now: float,
        spent_job_msats: int = 0,
        spent_day_msats: int = 0,
        job_budget_msats: int | None = None,
    ) -> Invoice:
        """Return the decoded invoice if it may be paid; raise a typed error saying why not.

        ``spent_*`` count what is already paid or being paid (excluding this invoice).
        ``job_budget_msats`` tightens the per-job cap for this one job (e.g. a call's max_sats).
        """
        inv = check_invoice(
            invoice, network=self.network, now=now, min_remaining=self.min_remaining_s
        )
        amount = inv.amount_msats
        assert amount is not None  # check_invoice requires an amount
        quote = _msats("quote", quote_msats)
        if quote is None:
            raise PaymentError(
                "provider sent no quote (amount tag); refusing to pay an unquoted invoice"
            )
        if amount > quote:
            raise BudgetExceeded(f"invoice asks {amount} msats, above the quote of {quote} msats")
        bid = _msats("bid", bid_msats)
        if bid is not None and quote > bid:
            raise BudgetExceeded(f"quote of {quote} msats is above our bid of {bid} msats")
        caps = [c for c in (self.budget.per_job_msats, job_budget_msats) if c is not None]
        cap = min(caps) if caps else None
        if cap is not None and spent_job_msats + amount > cap:
            raise BudgetExceeded(
                f"paying {amount} msats would bring this job to {spent_job_msats + amount} msats,"
                f" above its budget of {cap} msats"
            )
        cap = self.budget.per_day_msats
        if cap is not None and spent_day_msats + amount > cap:
            raise BudgetExceeded(
                f"paying {amount} msats would bring the last 24 h to"
                f" {spent_day_msats + amount} msats,"
                f" above the daily budget of {cap} msats"
            )
        return inv


def _msats(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():  # not "²"
        value = int(value)  # NIP-90 tags carry numbers as strings
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise PaymentError(f"{name} must be a positive whole number of msats, got {value!r}")
    return value
