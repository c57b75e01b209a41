"""Payer + PaymentLedger over a real ledger: pay only the quorum, never twice, survive crashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.nostr.errors import (
    BudgetExceeded,
    InsufficientBalance,
    InvoiceError,
    InvoiceExpired,
    PaymentFailed,
    WalletTimeout,
    WalletUnavailable,
    WrongNetwork,
)
from client.nostr.keys import Keys
from client.wallet.guard import Bill, Budget, PaymentGuard
from client.wallet.invoices import make_invoice
from client.wallet.payment_ledger import PaymentLedger
from client.wallet.payments import Payer
from tests.support.lightning import Clock, Crash, Market

JOB = "a" * 64


@pytest.fixture
def payments_db(tmp_path: Path) -> Path:
    return tmp_path / "customer-payments.db"


def make_payer(market: Market, db: Path, clock: Clock, budget: Budget | None = None) -> Payer:
    return Payer(
        market.customer_wallet,
        PaymentLedger(db),
        PaymentGuard(budget=budget),
        clock=clock,
        not_found_grace_s=120,
    )


async def bills_for(market: Market, quotes: list[int], amounts: list[int] | None = None) -> dict:
    """Each provider invoices ``amounts[i]`` (default: its quote) and quotes ``quotes[i]``."""
    amounts = amounts or quotes
    out = {}
    for i, (quote, amount) in enumerate(zip(quotes, amounts, strict=True)):
        inv = await market.provider_wallets[i].make_invoice(amount, f"job {JOB[:8]}", 600)
        out[f"p{i}"] = Bill(inv, quote)
    return out


async def test_quorum_pays_exactly_the_agreeing_quotes_and_never_the_dissenter(
    market: Market, payments_db: Path, clock: Clock
) -> None:
    payer = make_payer(market, payments_db, clock)
    bills = await bills_for(market, [21_000, 30_000, 25_000])
    result = await payer.pay_quorum(JOB, ["p0", "p1"], bills, bid_msats=50_000)
    assert result.outcomes["p0"].status == "paid"
    assert result.outcomes["p1"].status == "paid"
    assert result.outcomes["p2"].status == "skipped"
    assert result.by_provider_msats() == {"p0": 21_000, "p1": 30_000}
    assert result.paid_msats == 51_000 and result.paid_sats == 51.0
    p0, p1, p2 = market.providers
    assert (market.balance(p0.id), market.balance(p1.id), market.balance(p2.id)) == (
        21_000,
        30_000,
        0,
    )
    assert market.balance(market.customer.id) == 1_000_000 - 51_000
    assert market.customer_wallet.pay_calls == 2  # the dissenter's invoice never reached the wallet
    assert market.ledger.check_conservation() == market.total


async def test_paying_the_quorum_again_pays_nothing_new(
    market: Market, payments_db: Path, clock: Clock
) -> None:
    payer = make_payer(market, payments_db, clock)
    bills = await bills_for(market, [21_000, 30_000, 25_000])
    first = await payer.pay_quorum(JOB, ["p0", "p1"], bills, bid_msats=50_000)
    again = await payer.pay_quorum(JOB, ["p0", "p1"], bills, bid_msats=50_000)
    assert again.by_provider_msats() == first.by_provider_msats()
    assert all(o.repeated for o in again.outcomes.values() if o.paid)
    assert market.customer_wallet.pay_calls == 2
    assert market.balance(market.customer.id) == 1_000_000 - 51_000


async def test_over_quote_over_bid_and_bad_invoices_are_refused_and_not_recorded(
    market: Market, payments_db: Path, clock: Clock
) -> None:
    payer = make_payer(market, payments_db, clock)
    over_quote = await bills_for(market, [20_000], [20_001])
    over_bid = await bills_for(market, [60_000])
    stranger_mainnet = make_invoice(
        Keys.generate().secret_hex, amount_msats=1_000, created_at=int(clock.now), network="bitcoin"
    ).bolt11
    cases = [
        (over_quote["p0"], BudgetExceeded),
        (over_bid["p0"], BudgetExceeded),
        (Bill(stranger_mainnet, 1_000), WrongNetwork),
        (Bill("lnbcrt-not-an-invoice", 1_000), InvoiceError),
        (Bill(over_bid["p0"].invoice, None), Exception),  # no quote
    ]
    for bill, error in cases:
        out = await payer.pay(
            JOB, "p0", bill.invoice, quote_msats=bill.quote_msats, bid_msats=50_000
        )
        assert out.status == "refused", bill
        assert isinstance(out.error, error)
    assert market.customer_wallet.pay_calls == 0
    assert payer.ledger.history() == []
    assert market.balance(market.customer.id) == 1_000_000


async def test_expired_invoice_is_refused(market: Market, payments_db: Path, clock: Clock) -> None:
    payer = make_payer(market, payments_db, clock)
    inv = await market.provider_wallets[0].make_invoice(1_000, "x", 60)
    clock.now += 55  # within the guard's 10 s safety margin
    out = await payer.pay(JOB, "p0", inv, quote_msats=1_000, bid_msats=1_000)
    assert out.status == "refused" and isinstance(out.error, InvoiceExpired)
    assert market.customer_wallet.pay_calls == 0


async def test_per_job_budget_holds_across_a_concurrent_quorum(
    market: Market, payments_db: Path, clock: Clock
) -> None:
    payer = make_payer(market, payments_db, clock, Budget(per_job_msats=50_000))
    bills = await bills_for(market, [20_000, 20_000, 20_000])
    result = await payer.pay_quorum(JOB, ["p0", "p1", "p2"], bills, bid_msats=20_000)
    statuses = sorted(o.status for o in result.outcomes.values())
    assert statuses == ["paid", "paid", "refused"]
    assert result.paid_msats == 40_000
    refused = next(o for o in result.outcomes.values() if o.status == "refused")
    assert isinstance(refused.error, BudgetExceeded)
    assert market.balance(market.customer.id) == 1_000_000 - 40_000


async def test_per_day_budget_spans_jobs_and_rolls(
    market: Market, payments_db: Path, clock: Clock
) -> None:
    payer = make_payer(market, payments_db, clock, Budget(per_day_msats=30_000))
    w = market.provider_wallets[0]
    first = await payer.pay(
        "j1", "p0", await w.make_invoice(20_000), quote_msats=20_000, bid_msats=None
    )
    second = await payer.pay(
        "j2", "p0", await w.make_invoice(20_000), quote_msats=20_000, bid_msats=None
    )
    assert (first.status, second.status) == ("paid", "refused")
    clock.now += 86_400
    third = await payer.pay(
        "j3", "p0", await w.make_invoice(20_000), quote_msats=20_000, bid_msats=None
    )
    assert third.status == "paid"


async def test_one_invoice_cannot_be_claimed_twice(
    market: Market, payments_db: Path, clock: Clock
) -> None:
    payer = make_payer(market, payments_db, clock)
    inv = await market.provider_wallets[0].make_invoice(10_000)
    # Two "providers" in one quorum presenting the same invoice: paid once, not counted twice.
    result = await payer.pay_quorum(
        JOB,
        ["p0", "copycat"],
        {"p0": Bill(inv, 10_000), "copycat": Bill(inv, 10_000)},
        bid_msats=10_000,
    )
    assert result.outcomes["p0"].status == "paid"
    assert result.outcomes["copycat"].status == "refused"
    assert result.paid_msats == 10_000
    # And the same invoice presented for another job is refused too.
    other = await payer.pay("b" * 64, "p0", inv, quote_msats=10_000, bid_msats=10_000)
    assert other.status == "refused"
    assert market.customer_wallet.pay_calls == 1


async def test_wallet_refusal_is_failed_and_a_later_retry_pays_once(
    market: Market, payments_db: Path, clock: Clock
) -> None:
    payer = make_payer(market, payments_db, clock)
    inv = await market.provider_wallets[0].make_invoice(10_000)
    market.customer_wallet.fail_before = PaymentFailed("no route")
    out = await payer.pay(JOB, "p0", inv, quote_msats=10_000, bid_msats=10_000)
    assert out.status == "failed" and isinstance(out.error, PaymentFailed)
    assert payer.ledger.get(out.payment_hash or "").state == "failed"  # type: ignore[union-attr]
    market.customer_wallet.fail_before = None
    again = await payer.pay(JOB, "p0", inv, quote_msats=10_000, bid_msats=10_000)
    assert again.status == "paid" and not again.repeated
    assert market.balance(market.customer.id) == 990_000


async def test_insufficient_balance_pays_nothing(
    market: Market, payments_db: Path, clock: Clock
) -> None:
    payer = make_payer(market, payments_db, clock)
    inv = await market.provider_wallets[0].make_invoice(1_000_001)
    out = await payer.pay(JOB, "p0", inv, quote_msats=1_000_001, bid_msats=None)
    assert out.status == "failed" and isinstance(out.error, InsufficientBalance)
    assert market.balance(market.customer.id) == 1_000_000
    assert market.ledger.check_conservation() == market.total


async def test_timeout_after_the_wallet_paid_is_resolved_by_lookup_not_by_paying(
    market: Market, payments_db: Path, clock: Clock
) -> None:
    payer = make_payer(market, payments_db, clock)
    inv = await market.provider_wallets[0].make_invoice(10_000)
    market.customer_wallet.fail_after = WalletTimeout("no answer in 10 s")
    out = await payer.pay(JOB, "p0", inv, quote_msats=10_000, bid_msats=10_000)
    assert out.status == "unknown" and isinstance(out.error, WalletTimeout)
    market.customer_wallet.fail_after = None
    again = await payer.pay(JOB, "p0", inv, quote_msats=10_000, bid_msats=10_000)
    assert again.status == "paid" and again.repeated
    assert market.customer_wallet.pay_calls == 1
    assert market.balance(market.customer.id) == 990_000


async def test_timeout_before_the_wallet_paid_stays_open_until_grace_then_retries_once(
    market: Market, payments_db: Path, clock: Clock
) -> None:
    payer = make_payer(market, payments_db, clock)
    inv = await market.provider_wallets[0].make_invoice(10_000)
    market.customer_wallet.fail_before = WalletUnavailable("relay connection lost")
    out = await payer.pay(JOB, "p0", inv, quote_msats=10_000, bid_msats=10_000)
    assert out.status == "unknown"
    market.customer_wallet.fail_before = None
    # Straight away, "not found" may only mean "not arrived yet": no second payment attempt.
    soon = await payer.pay(JOB, "p0", inv, quote_msats=10_000, bid_msats=10_000)
    assert soon.status == "unknown" and market.customer_wallet.pay_calls == 1
    # The open payment counts against the budget meanwhile.
    assert payer.ledger.spent_msats(job_id=JOB) == 10_000
    clock.now += 121
    later = await payer.pay(JOB, "p0", inv, quote_msats=10_000, bid_msats=10_000)
    assert later.status == "paid" and market.customer_wallet.pay_calls == 2
    assert market.balance(market.customer.id) == 990_000


async def test_crash_after_payment_then_restart_settles_without_paying_again(
    market: Market, payments_db: Path, clock: Clock
) -> None:
    payer = make_payer(market, payments_db, clock)
    inv = await market.provider_wallets[0].make_invoice(10_000)
    market.customer_wallet.fail_after = Crash()
    with pytest.raises(Crash):  # the process "dies" between payment and recording the outcome
        await payer.pay(JOB, "p0", inv, quote_msats=10_000, bid_msats=10_000)
    assert market.balance(market.customer.id) == 990_000
    payer.ledger.close()

    market.customer_wallet.fail_after = None
    restarted = make_payer(market, payments_db, clock)  # fresh PaymentLedger on the same file
    [rec] = restarted.ledger.open_payments()
    assert rec.state == "intent"
    resolved = await restarted.resolve_open()
    assert [r.state for r in resolved] == ["paid"]
    again = await restarted.pay(JOB, "p0", inv, quote_msats=10_000, bid_msats=10_000)
    assert again.status == "paid" and again.repeated and again.amount_msats == 10_000
    assert market.customer_wallet.pay_calls == 1
    assert market.balance(market.customer.id) == 990_000
    assert market.balance(market.providers[0].id) == 10_000
    assert market.ledger.check_conservation() == market.total


async def test_crash_before_the_wallet_call_then_restart_pays_once(
    market: Market, payments_db: Path, clock: Clock
) -> None:
    payer = make_payer(market, payments_db, clock)
    inv = await market.provider_wallets[0].make_invoice(10_000)
    market.customer_wallet.fail_before = Crash()
    with pytest.raises(Crash):
        await payer.pay(JOB, "p0", inv, quote_msats=10_000, bid_msats=10_000)
    payer.ledger.close()
    market.customer_wallet.fail_before = None
    clock.now += 300
    restarted = make_payer(market, payments_db, clock)
    resolved = await restarted.resolve_open()
    assert [r.state for r in resolved] == ["failed"]  # the wallet never saw it
    out = await restarted.pay(JOB, "p0", inv, quote_msats=10_000, bid_msats=10_000)
    assert out.status == "paid"
    assert market.balance(market.customer.id) == 990_000


async def test_wrong_preimage_is_not_taken_as_proof(
    market: Market, payments_db: Path, clock: Clock
) -> None:
    payer = make_payer(market, payments_db, clock)
    inv = await market.provider_wallets[0].make_invoice(10_000)
    market.customer_wallet.preimage_override = "00" * 32
    out = await payer.pay(JOB, "p0", inv, quote_msats=10_000, bid_msats=10_000)
    assert out.status == "unknown"
    market.customer_wallet.preimage_override = None
    [rec] = await payer.resolve_open()  # the lookup shows the real, matching preimage
    assert rec.state == "paid" and rec.preimage != "00" * 32
    assert market.customer_wallet.pay_calls == 1


async def test_a_wallet_that_raises_anything_does_not_crash_the_payer(
    market: Market, payments_db: Path, clock: Clock
) -> None:
    payer = make_payer(market, payments_db, clock)
    inv = await market.provider_wallets[0].make_invoice(10_000)
    market.customer_wallet.fail_before = RuntimeError("bug in a third-party wallet")
    out = await payer.pay(JOB, "p0", inv, quote_msats=10_000, bid_msats=10_000)
    assert out.status == "unknown" and isinstance(out.error, WalletUnavailable)
    market.customer_wallet.fail_lookup = RuntimeError("still broken")
    [rec] = await payer.resolve_open()
    assert rec.state == "unknown"  # stays open, never re-paid blindly


async def test_a_calls_max_sats_caps_the_job_below_the_guard_budget(
    market: Market, payments_db: Path, clock: Clock
) -> None:
    payer = make_payer(market, payments_db, clock, Budget(per_job_msats=1_000_000))
    bills = await bills_for(market, [20_000, 20_000])
    result = await payer.pay_quorum(
        JOB, ["p0", "p1"], bills, bid_msats=20_000, job_budget_msats=30_000
    )
    assert sorted(o.status for o in result.outcomes.values()) == ["paid", "refused"]
    assert result.paid_msats == 20_000
