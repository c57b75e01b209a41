"""The payment ledger on SQLite and on PostgreSQL: an invoice's intent is recorded once however
many processes race for it (the primary key decides, in one statement), a file written before
versioned schemas opens unchanged, and no payment is made while the intent cannot be recorded."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from client.storage import StateUnavailable, open_store, recorded_version
from client.wallet.guard import PaymentGuard
from client.wallet.invoices import Invoice
from client.wallet.payment_ledger import PaymentLedger
from client.wallet.payments import Payer
from tests.support.lightning import Clock, Market
from tests.support.servers import Postgres
from tests.support.state_files import tables, v1_file

JOB = "a" * 64


def invoice(payment_hash: str, msats: int = 1_000) -> Invoice:
    return Invoice(
        bolt11="lnbcrt" + payment_hash[:12],
        network="regtest",
        amount_msats=msats,
        payment_hash=payment_hash,
        payment_secret="00" * 32,
        description=None,
        description_hash=None,
        created_at=1_800_000_000,
        expiry=600,
        payee="02" + "11" * 32,
    )


def test_intent_outcome_and_retry_after_a_definite_failure(store_target: str) -> None:
    ledger = PaymentLedger(store_target)
    assert ledger.shared == store_target.startswith("postgresql://")
    big = 5_000_000_000  # 5M sats: more than a 4-byte integer holds
    assert ledger.begin(invoice("11" * 32, big), job_id="j1", provider="p1", now=10)
    assert not ledger.begin(invoice("11" * 32, big), job_id="j1", provider="p1", now=11)
    ledger.mark_paid("11" * 32, "ff" * 32, 12)
    ledger.mark_failed("11" * 32, "too late", 13)  # a paid row never changes again
    paid = ledger.get("11" * 32)
    assert paid is not None and (paid.state, paid.preimage, paid.amount_msats) == (
        "paid",
        "ff" * 32,
        big,
    )
    assert ledger.begin(invoice("22" * 32), job_id="j2", provider="p2", now=20)
    ledger.mark_failed("22" * 32, "NO_ROUTE", 21)
    assert ledger.begin(invoice("22" * 32), job_id="j3", provider="p3", now=22)  # safe again
    retried = ledger.get("22" * 32)
    assert retried is not None and (retried.state, retried.attempts, retried.job_id) == (
        "intent",
        2,
        "j3",
    )
    assert [r.payment_hash for r in ledger.open_payments()] == ["22" * 32]
    assert ledger.spent_msats() == big + 1_000 and ledger.paid_msats() == big
    assert ledger.spent_msats(job_id="j3") == 1_000 and ledger.spent_msats(since=20) == 1_000
    assert [r.payment_hash for r in ledger.history(limit=1)] == ["22" * 32]
    ledger.close()


def _racer(target: str, hashes: list[str], name: str, start: Any, again: Any, out: Any) -> None:
    """One process of the race: record the intent for every invoice, say which it may pay;
    then (once the invoices failed) the same again."""
    ledger = PaymentLedger(target)
    for sync in (start, again):
        sync.wait()
        won = [h for h in hashes if ledger.begin(invoice(h), job_id=JOB, provider=name, now=1)]
        out.put((name, won))
    ledger.close()


def test_processes_racing_for_the_same_invoices_record_each_intent_once(
    store_target: str,
) -> None:
    """Six processes (six gateways) record the intent to pay the same 30 invoices at the same
    moment: each invoice is won by exactly one, and every other sees the winner's record."""
    hashes = [f"{i:064x}" for i in range(30)]
    ledger = PaymentLedger(store_target)  # the schema exists before the race starts
    ctx = multiprocessing.get_context("spawn")
    n = 6
    start, again, out = ctx.Barrier(n), ctx.Barrier(n + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_racer, args=(store_target, hashes, f"proc{i}", start, again, out))
        for i in range(n)
    ]
    for p in procs:
        p.start()
    try:
        wins = dict(out.get(timeout=120) for _ in procs)
        winners = {h: [p for p, won in wins.items() if h in won] for h in hashes}
        assert all(len(w) == 1 for w in winners.values()), winners
        for h in hashes:
            rec = ledger.get(h)
            assert rec is not None and rec.state == "intent" and rec.provider == winners[h][0]
            # A definitely failed payment may be tried again: once more, by exactly one.
            ledger.mark_failed(h, "NO_ROUTE", 2)
        again.wait(timeout=120)
        retries = [h for _ in procs for h in out.get(timeout=120)[1]]
        assert sorted(retries) == sorted(hashes)
        assert {r.attempts for r in ledger.history()} == {2}
    finally:
        for p in procs:
            p.join(30)
            if p.exitcode is None:
                p.kill()
    assert [p.exitcode for p in procs] == [0] * n
    ledger.close()


def test_a_v1_ledger_file_opens_unchanged(tmp_path: Path) -> None:
    path = v1_file("payments", tmp_path / "payments.db")
    before = tables(path)
    ledger = PaymentLedger(path)
    assert {k: v for k, v in tables(path).items() if k != "schema_migrations"} == before
    assert [(r.payment_hash[:2], r.state) for r in ledger.history()] == [
        ("ff", "failed"),
        ("ee", "intent"),
        ("cc", "paid"),
    ]
    assert [r.payment_hash[:2] for r in ledger.open_payments()] == ["ee"]
    assert not ledger.begin(invoice("cc" * 32, 4_000), job_id="j1", provider="p1", now=5)
    assert not ledger.begin(invoice("ee" * 32, 2_000), job_id="j2", provider="p2", now=5)
    assert ledger.begin(invoice("ff" * 32, 1_000), job_id="j3", provider="p3", now=5)
    assert ledger.spent_msats() == 7_000 and ledger.paid_msats() == 4_000
    ledger.close()
    store = open_store(path, lock="payments")
    assert recorded_version(store, "payments") == 1
    store.close()


async def test_nothing_is_paid_while_postgres_is_away_and_it_recovers(
    market: Market, clock: Clock, postgres: Postgres, pg_url: str
) -> None:
    payer = Payer(market.customer_wallet, PaymentLedger(pg_url), PaymentGuard(), clock=clock)
    bolt11 = await market.provider_wallets[0].make_invoice(21_000, "job", 600)
    postgres.kill()
    try:
        with pytest.raises(StateUnavailable):
            await payer.pay(JOB, "p0", bolt11, quote_msats=21_000, bid_msats=50_000)
        assert market.customer_wallet.pay_calls == 0  # the wallet was never asked
    finally:
        postgres.start()
    out = await payer.pay(JOB, "p0", bolt11, quote_msats=21_000, bid_msats=50_000)
    assert out.status == "paid" and market.customer_wallet.pay_calls == 1
    assert market.balance(market.providers[0].id) == 21_000
    again = await payer.pay(JOB, "p0", bolt11, quote_msats=21_000, bid_msats=50_000)
    assert again.status == "paid" and market.customer_wallet.pay_calls == 1  # never twice
    payer.ledger.close()
