"""PaymentGuard: amount <= quote <= bid, budgets, expiry, network, malformed input. Pure."""

from __future__ import annotations

import pytest

from client.nostr.errors import (
    BudgetExceeded,
    InvoiceError,
    InvoiceExpired,
    PaymentError,
    WrongNetwork,
)
from client.nostr.keys import Keys
from client.wallet.guard import Budget, PaymentGuard
from client.wallet.invoices import make_invoice

NOW = 1_800_000_000
NODE = Keys.generate().secret_hex


def invoice(msats: int, *, expiry: int = 600, network: str = "regtest") -> str:
    return make_invoice(
        NODE, amount_msats=msats, expiry=expiry, created_at=NOW, network=network
    ).bolt11


def test_amount_equal_to_quote_equal_to_bid_passes() -> None:
    inv = PaymentGuard().check(invoice(21_000), quote_msats=21_000, bid_msats=21_000, now=NOW)
    assert inv.amount_msats == 21_000


def test_amount_below_quote_and_string_tags_pass() -> None:
    guard = PaymentGuard()
    assert guard.check(invoice(20_000), quote_msats="21000", bid_msats="50000", now=NOW)


def test_amount_above_quote_is_refused() -> None:
    with pytest.raises(BudgetExceeded, match="above the quote"):
        PaymentGuard().check(invoice(21_001), quote_msats=21_000, bid_msats=50_000, now=NOW)


def test_quote_above_bid_is_refused_even_if_amount_fits() -> None:
    with pytest.raises(BudgetExceeded, match="above our bid"):
        PaymentGuard().check(invoice(10_000), quote_msats=60_000, bid_msats=50_000, now=NOW)


def test_no_bid_means_only_the_quote_caps() -> None:
    assert PaymentGuard().check(invoice(10_000), quote_msats=10_000, bid_msats=None, now=NOW)


@pytest.mark.parametrize("quote", [None, 0, -1, 1.5, True, "ten", "", "1e3"])
def test_missing_or_malformed_quote_is_refused(quote: object) -> None:
    with pytest.raises(PaymentError):
        PaymentGuard().check(invoice(1_000), quote_msats=quote, bid_msats=5_000, now=NOW)


@pytest.mark.parametrize("bid", [0, -5, 2.5, False, "x"])
def test_malformed_bid_is_refused(bid: object) -> None:
    with pytest.raises(PaymentError):
        PaymentGuard().check(invoice(1_000), quote_msats=1_000, bid_msats=bid, now=NOW)


def test_per_job_budget_counts_what_is_already_spent() -> None:
    guard = PaymentGuard(budget=Budget(per_job_msats=50_000))
    guard.check(
        invoice(20_000), quote_msats=20_000, bid_msats=20_000, now=NOW, spent_job_msats=30_000
    )
    with pytest.raises(BudgetExceeded, match="this job"):
        guard.check(
            invoice(20_000), quote_msats=20_000, bid_msats=20_000, now=NOW, spent_job_msats=30_001
        )


def test_per_day_budget() -> None:
    guard = PaymentGuard(budget=Budget.sats(per_day=100))
    guard.check(invoice(1_000), quote_msats=1_000, bid_msats=1_000, now=NOW, spent_day_msats=99_000)
    with pytest.raises(BudgetExceeded, match="daily"):
        guard.check(
            invoice(1_000), quote_msats=1_000, bid_msats=1_000, now=NOW, spent_day_msats=99_001
        )


def test_expired_and_nearly_expired_invoices_are_refused() -> None:
    guard = PaymentGuard(min_remaining_s=10)
    inv = invoice(1_000, expiry=60)
    guard.check(inv, quote_msats=1_000, bid_msats=1_000, now=NOW + 49)
    with pytest.raises(InvoiceExpired):
        guard.check(inv, quote_msats=1_000, bid_msats=1_000, now=NOW + 51)
    with pytest.raises(InvoiceExpired):
        guard.check(inv, quote_msats=1_000, bid_msats=1_000, now=NOW + 3600)


def test_other_network_is_refused() -> None:
    with pytest.raises(WrongNetwork):
        PaymentGuard().check(
            invoice(1_000, network="bitcoin"), quote_msats=1_000, bid_msats=1_000, now=NOW
        )
    mainnet = PaymentGuard(network="bitcoin")
    with pytest.raises(WrongNetwork):
        mainnet.check(invoice(1_000), quote_msats=1_000, bid_msats=1_000, now=NOW)


@pytest.mark.parametrize("bad", ["", "lnbcrt1xyz", "not an invoice", "lnbcrt10n1" + "q" * 200])
def test_malformed_invoices_are_refused(bad: str) -> None:
    with pytest.raises(InvoiceError):
        PaymentGuard().check(bad, quote_msats=1_000, bid_msats=1_000, now=NOW)


def test_checks_run_before_budget_so_the_cause_is_precise() -> None:
    guard = PaymentGuard(budget=Budget(per_job_msats=1))
    with pytest.raises(WrongNetwork):
        guard.check(invoice(5_000, network="testnet"), quote_msats=1, bid_msats=1, now=NOW)
