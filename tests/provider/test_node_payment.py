"""Payment policies against a real local ledger wallet: ``after`` (invoice in the result) and
``before`` (payment-required, work starts once paid: polled or notified), expiry, restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from client.dvm.nip90 import JobSpec, build_request
from client.nostr.keys import Keys
from client.wallet import decode_invoice
from provider.pricing import Pricing
from provider.store import JobStore
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.wallet import LedgerWallet
from router.clock import ManualClock
from tests.support.customer import Customer
from tests.support.nodes import NodeFactory, mock_backend

PRICING = Pricing(msats_per_1k_prompt=1000, msats_per_1k_completion=10_000, min_msats=2000)


def wallets(ledger: Ledger) -> tuple[LedgerWallet, LedgerWallet]:
    node = LedgerWallet(ledger, ledger.create_account("node").id)
    payer = LedgerWallet(ledger, ledger.create_account("customer", msats=10_000_000).id)
    return node, payer


async def test_after_result_carries_invoice_and_earnings_follow_payment(
    start_node: NodeFactory, customer: Customer
) -> None:
    ledger = Ledger(":memory:")
    node_wallet, payer = wallets(ledger)
    async with start_node(pricing=PRICING, payment="after", wallet=node_wallet) as node:
        job = await customer.submit(JobSpec(prompt="hello", max_tokens=300, bid_msats=10_000))
        result = await customer.result(job)
        success = await customer.feedback(job, "success")
        assert result.amount is not None and result.amount.bolt11 is not None
        # 2 prompt tokens + 3 completion tokens (usage from the backend) -> below the minimum.
        assert result.amount.msats == 2000
        invoice = decode_invoice(result.amount.bolt11)
        assert invoice.amount_msats == 2000
        assert success.amount == result.amount
        assert node.earnings().billed_msats == 2000 and node.earnings().paid_msats == 0
        assert await node.check_invoices() == 0
        await payer.pay_invoice(result.amount.bolt11)
        assert await node.check_invoices() == 1
        earned = node.earnings()
    assert (earned.jobs_done, earned.billed_msats, earned.paid_msats) == (1, 2000, 2000)
    assert ledger.balance(node_wallet.account_id) == 2000
    assert node.stats.billed_msats == 2000


async def test_before_waits_for_payment_then_works(
    start_node: NodeFactory, customer: Customer
) -> None:
    ledger = Ledger(":memory:")
    node_wallet, payer = wallets(ledger)
    backend = mock_backend()
    async with start_node(
        backend, pricing=PRICING, payment="before", wallet=node_wallet, payment_poll_s=0.01
    ) as node:
        job = await customer.submit(JobSpec(prompt="hello", max_tokens=300))
        asked = await customer.feedback(job, "payment-required")
        assert asked.amount is not None and asked.amount.bolt11 is not None
        assert asked.amount.msats == 2 + 3000  # the quote: 2 prompt + 300 completion tokens
        assert "pay 3.002 sats" in asked.extra
        assert backend.calls == 0 and customer.statuses(job) == ["payment-required"]
        await payer.pay_invoice(asked.amount.bolt11)
        result = await customer.result(job)  # found by polling, no notification
        await customer.feedback(job, "success")
        row = node.store.get(job.id)
        earned = node.earnings()
    assert result.content == "Echo: hello" and result.amount is None  # already paid
    assert customer.statuses(job) == ["payment-required", "processing", "success"]
    assert row is not None and row.paid and row.state == "done" and row.request is None
    assert node.stats.paid_before == 1 and earned.paid_msats == 3002


async def test_before_wakes_on_wallet_notification(
    start_node: NodeFactory, customer: Customer
) -> None:
    ledger = Ledger(":memory:")
    node_wallet, payer = wallets(ledger)
    async with start_node(
        pricing=PRICING, payment="before", wallet=node_wallet, payment_poll_s=3600
    ) as node:
        job = await customer.submit(JobSpec(prompt="hi"))
        asked = await customer.feedback(job, "payment-required")
        assert asked.amount is not None and asked.amount.bolt11 is not None
        await payer.pay_invoice(asked.amount.bolt11)
        # Only the notification can wake it within the test's time limit.
        node.notify_paid(decode_invoice(asked.amount.bolt11).payment_hash)
        await customer.result(job)


async def test_before_unpaid_invoice_expires_into_error(
    start_node: NodeFactory, customer: Customer
) -> None:
    clock = ManualClock(time.time())
    ledger = Ledger(":memory:", clock=clock)
    node_wallet, _ = wallets(ledger)
    backend = mock_backend()
    async with start_node(
        backend,
        pricing=PRICING,
        payment="before",
        wallet=node_wallet,
        invoice_expiry_s=60,
        payment_poll_s=3600,
    ) as node:
        job = await customer.submit(JobSpec(prompt="hi"))
        asked = await customer.feedback(job, "payment-required")
        assert asked.amount is not None and asked.amount.bolt11 is not None
        clock.advance(61)
        node.notify_paid(decode_invoice(asked.amount.bolt11).payment_hash)
        err = await customer.error(job)
    assert "no payment arrived" in err.extra
    assert backend.calls == 0 and node.stats.failed["unpaid"] == 1


async def test_before_with_full_queue_is_busy_without_an_invoice(
    start_node: NodeFactory, customer: Customer
) -> None:
    from provider.limits import Limits

    ledger = Ledger(":memory:")
    node_wallet, _ = wallets(ledger)
    limits = Limits(max_unpaid=1)
    async with start_node(
        pricing=PRICING, payment="before", wallet=node_wallet, limits=limits
    ) as node:
        first = await customer.submit(JobSpec(prompt="1"))
        await customer.feedback(first, "payment-required")
        second = await customer.submit(JobSpec(prompt="2"))
        err = await customer.error(second)
    assert err.extra.startswith("busy:") and err.amount is None
    assert node.stats.refused["busy"] == 1


async def test_restart_resumes_a_job_awaiting_payment(
    start_node: NodeFactory, customer: Customer, tmp_path: Path
) -> None:
    """A node that died while a customer was paying picks the job up again on start."""
    ledger = Ledger(":memory:")
    node_wallet, payer = wallets(ledger)
    keys = Keys.generate()
    path = tmp_path / "provider.sqlite"
    request = build_request(customer.keys, JobSpec(prompt="resume me", targets=(keys.public_key,)))
    await customer.publish_raw(request)  # it was published before the crash
    bolt11 = await node_wallet.make_invoice(5000, "job", 600)
    # What the store held when the previous run was killed mid-wait.
    with JobStore(path) as store:
        store.claim(request.id, request.pubkey, request.created_at)
        store.update(
            request.id,
            "awaiting_payment",
            model="m1",
            quote_msats=5000,
            amount_msats=5000,
            payment_hash=decode_invoice(bolt11).payment_hash,
            request=request.to_json(),
        )
    await payer.pay_invoice(bolt11)
    async with start_node(
        keys=keys,
        store=path,
        pricing=PRICING,
        payment="before",
        wallet=node_wallet,
        payment_poll_s=0.01,
    ):
        result = await customer.result(request.id)
    assert result.content == "Echo: resume me"


async def test_paid_jobs_never_refused_as_busy(start_node: NodeFactory, customer: Customer) -> None:
    from provider.limits import Limits

    ledger = Ledger(":memory:")
    node_wallet, payer = wallets(ledger)
    gate = asyncio.Event()
    backend = mock_backend().with_gate(gate)
    limits = Limits(max_concurrent=1, queue_size=1, max_unpaid=5)
    async with start_node(
        backend,
        pricing=PRICING,
        payment="before",
        wallet=node_wallet,
        limits=limits,
        payment_poll_s=0.01,
    ):
        jobs = [await customer.submit(JobSpec(prompt=str(i))) for i in range(3)]
        for j in jobs:
            asked = await customer.feedback(j, "payment-required")
            assert asked.amount is not None and asked.amount.bolt11 is not None
            await payer.pay_invoice(asked.amount.bolt11)
        await customer.feedback(jobs[0], "processing")
        gate.set()
        for j in jobs:
            await customer.result(j)


async def test_paid_jobs_survive_a_shutdown_and_run_after_restart(
    start_node: NodeFactory, customer: Customer, tmp_path: Path
) -> None:
    from provider.limits import Limits

    ledger = Ledger(":memory:")
    node_wallet, payer = wallets(ledger)
    keys = Keys.generate()
    store = tmp_path / "provider.sqlite"
    gate = asyncio.Event()
    common = {
        "keys": keys,
        "store": store,
        "pricing": PRICING,
        "payment": "before",
        "wallet": node_wallet,
        "payment_poll_s": 0.01,
        "limits": Limits(max_concurrent=1, queue_size=1, shutdown_grace=0),
    }
    async with start_node(mock_backend().with_gate(gate), **common) as node:
        jobs = [await customer.submit(JobSpec(prompt=f"paid {i}")) for i in range(2)]
        for j in jobs:
            asked = await customer.feedback(j, "payment-required")
            assert asked.amount is not None and asked.amount.bolt11 is not None
            await payer.pay_invoice(asked.amount.bolt11)
        await customer.feedback(jobs[0], "processing")
        await customer.feedback(jobs[1], "processing")  # one runs, the other waits for the slot
        await node.close()
        errors = [await customer.error(j) for j in jobs]
    # One job held the slot and the other waited for it; which one depends on which job's
    # payment poll saw its payment first (each job polls with its own backoff).
    extras = [e.extra for e in errors]
    assert sum("stopped before the job finished" in x for x in extras) == 1
    assert sum("stopped before your paid job ran" in x for x in extras) == 1
    assert all("it runs when the provider is back" in x for x in extras)
    with JobStore(store) as kept:
        assert {r.id for r in kept.open_jobs()} == {j.id for j in jobs}
    async with start_node(mock_backend(), **common):
        results = [await customer.result(j) for j in jobs]
    assert [r.content for r in results] == ["Echo: paid 0", "Echo: paid 1"]


async def test_paid_queued_job_runs_within_the_grace_period(
    start_node: NodeFactory, customer: Customer
) -> None:
    from provider.limits import Limits

    ledger = Ledger(":memory:")
    node_wallet, payer = wallets(ledger)
    gate = asyncio.Event()
    limits = Limits(max_concurrent=1, queue_size=1, shutdown_grace=30)
    async with start_node(
        mock_backend().with_gate(gate),
        pricing=PRICING,
        payment="before",
        wallet=node_wallet,
        payment_poll_s=0.01,
        limits=limits,
    ) as node:
        jobs = [await customer.submit(JobSpec(prompt=f"paid {i}")) for i in range(2)]
        for j in jobs:
            asked = await customer.feedback(j, "payment-required")
            assert asked.amount is not None and asked.amount.bolt11 is not None
            await payer.pay_invoice(asked.amount.bolt11)
        # One job takes the slot, the other waits for it; which one depends on which job's
        # payment poll sees its payment first (each job polls with its own backoff).
        started = [await customer.feedback(j, "processing") for j in jobs]
        waiting = [f.extra == "payment received; waiting for a free slot" for f in started]
        assert sorted(waiting) == [False, True]
        closing = asyncio.create_task(node.close())
        await asyncio.wait_for(node.intake_stopped.wait(), 10)
        gate.set()
        await asyncio.wait_for(closing, 10)
        results = [await customer.result(j) for j in jobs]
    assert [r.content for r in results] == ["Echo: paid 0", "Echo: paid 1"]
    assert node.stats.failed["shutdown"] == 0
