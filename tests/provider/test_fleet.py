"""Provider nodes under one key on one PostgreSQL job store: every job is taken, answered and
recorded by exactly one of them; a working node keeps its jobs by renewing its lease; the jobs a
dead node left at each point (claimed, invoiced, paid, result recorded, result published) are
finished by the others, answered and billed once. (A real SIGKILL of `swarm provider run`
processes: tests/reliability/test_fleet_kill.py.)"""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

from client.dvm.nip90 import JobSpec, build_result, parse_request
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from client.wallet import decode_invoice
from provider.jobs import TERMINAL
from provider.limits import Limits
from provider.node import ProviderNode
from provider.store import JobStore
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from router.backends import MockBackend
from tests.provider.test_node_payment import PRICING, wallets
from tests.support.customer import Customer, Replies
from tests.support.nodes import mock_backend

JOBS = 500


async def test_three_nodes_one_key_answer_each_job_once(relay: Relay, pg_url: str) -> None:
    keys = Keys.generate()
    limits = Limits(max_concurrent=8, queue_size=JOBS, rate_per_minute=None)
    async with AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(
                ProviderNode(
                    keys,
                    [relay.url],
                    mock_backend(),
                    limits=limits,
                    store=pg_url,
                    announce=False,
                    connect_timeout=3.0,
                )
            )
            for _ in range(3)
        ]
        customer = await stack.enter_async_context(Customer([relay.url]))
        jobs = [
            await customer.submit(JobSpec(prompt=f"p{i}", model="m1", max_tokens=20))
            for i in range(JOBS)
        ]
        ids = {j.id for j in jobs}

        def results() -> list[str]:
            return [
                e.tag_value("e") or ""
                for e in relay.stored_events(Filter(kinds=[6050]))
                if e.tag_value("e") in ids
            ]

        await customer.wait_for(lambda: all(customer.replies(j).results for j in jobs), within=60)
        await customer.sync()
        per_job = Counter(results())
        assert set(per_job) == ids and set(per_job.values()) == {1}
        # Each node did a share, and together exactly the jobs there were.
        done = [n.stats.completed for n in nodes]
        assert sum(done) == JOBS
        assert sum(n.stats.duplicates for n in nodes) == 2 * (JOBS + 1)  # and the sync probe
    with JobStore(pg_url) as store:
        assert store.earnings().jobs_done == JOBS
        rows = [r for r in store.jobs(limit=JOBS + 10) if r.id in ids]
        assert len(rows) == JOBS and {r.state for r in rows} == {"done"}


async def test_jobs_of_a_dead_node_are_finished_once_by_the_others(
    relay: Relay, pg_url: str
) -> None:
    keys = Keys.generate()
    async with Customer([relay.url]) as customer:
        # A node claimed 20 jobs and died before working them: its rows stay open, unrenewed.
        dead = JobStore(pg_url, owner="dead", lease_s=0.2)
        orphans = [customer.build(JobSpec(prompt=f"o{i}", model="m1")) for i in range(20)]
        for job in orphans:
            ev = job.requests[0]
            customer.jobs[ev.id] = Replies(job)
            assert dead.claim(ev.id, ev.pubkey, ev.created_at, request=ev.to_json())
        dead.close()
        async with AsyncExitStack() as stack:
            nodes = [
                await stack.enter_async_context(
                    ProviderNode(
                        keys,
                        [relay.url],
                        mock_backend(),
                        store=JobStore(pg_url, lease_s=0.2),
                        limits=Limits(rate_per_minute=None),
                        announce=False,
                        connect_timeout=3.0,
                    )
                )
                for _ in range(2)
            ]
            await customer.wait_for(
                lambda: all(customer.replies(j.id).results for j in orphans), within=30
            )
        ids = {j.id for j in orphans}
        per_job = Counter(e.tag_value("e") for e in relay.stored_events(Filter(kinds=[6050])))
        assert all(per_job[i] == 1 for i in ids)
        assert sum(n.stats.completed for n in nodes) == len(ids)


def fleet(
    keys: Keys, relay: Relay, pg_url: str, backend: MockBackend, n: int = 2, **options: Any
) -> list[ProviderNode]:
    """``n`` nodes under one key on one PostgreSQL store (leases of 0.2 s, so a dead node's
    jobs are taken over at once)."""
    options.setdefault("limits", Limits(rate_per_minute=None))
    return [
        ProviderNode(
            keys,
            [relay.url],
            backend,
            store=JobStore(pg_url, lease_s=0.2),
            announce=False,
            connect_timeout=3.0,
            **options,
        )
        for _ in range(n)
    ]


def results_on_the_relay(relay: Relay, job_id: str) -> list[Event]:
    return [e for e in relay.stored_events(Filter(kinds=[6050])) if e.tag_value("e") == job_id]


def invoices_shown(replies: Replies) -> set[str]:
    """Every invoice the customer was asked to pay for the job (results and feedback)."""
    amounts = [r.amount for r in replies.results] + [f.amount for f in replies.feedback]
    return {a.bolt11 for a in amounts if a is not None and a.bolt11 is not None}


async def test_a_working_node_keeps_its_jobs_by_renewing_its_lease(
    relay: Relay, pg_url: str
) -> None:
    """A job that takes longer than the lease (4 s against 1.5 s): its node renews the lease
    every 0.5 s, so the other node never takes it over."""
    keys = Keys.generate()
    backend = mock_backend().with_latency(4000)
    async with Customer([relay.url]) as customer, AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(
                ProviderNode(
                    keys,
                    [relay.url],
                    backend,
                    store=pg_url,
                    lease_s=1.5,
                    limits=Limits(rate_per_minute=None),
                    announce=False,
                    connect_timeout=3.0,
                )
            )
            for _ in range(2)
        ]
        assert [n.store.lease_s for n in nodes] == [1.5, 1.5]
        job = await customer.submit(JobSpec(prompt="slow", model="m1"))
        await customer.result(job, within=20)
        assert backend.calls == 1 and sorted(n.stats.completed for n in nodes) == [0, 1]
        assert sum(n.stats.released for n in nodes) == 0
        assert len(results_on_the_relay(relay, job.id)) == 1


async def test_payment_after_a_dead_nodes_jobs_are_answered_and_billed_once(
    relay: Relay, pg_url: str
) -> None:
    """A node died at four points of four jobs: just claimed; its invoice made, not recorded;
    its result recorded; its result recorded and published. Two nodes under its key take them
    over: each job has one result event (the recorded one where there was one) with one
    invoice, which the customer pays once; the model runs only for the two unrecorded."""
    keys = Keys.generate()
    ledger = Ledger(":memory:")
    node_wallet, payer = wallets(ledger)
    points = ("claimed", "invoice made", "recorded", "published")
    async with Customer([relay.url]) as customer:
        dead = JobStore(pg_url, owner="dead", lease_s=0.2)
        work = {p: customer.build(JobSpec(prompt=p, model="m1", bid_msats=100_000)) for p in points}
        for job in work.values():
            ev = job.requests[0]
            customer.jobs[ev.id] = Replies(job)
            assert dead.claim(ev.id, ev.pubkey, ev.created_at, request=ev.to_json())
        stray = await node_wallet.make_invoice(2000, "made just before the node died", 600)
        recorded: dict[str, Event] = {}
        for point in ("recorded", "published"):
            bolt11 = await node_wallet.make_invoice(2000, f"nostr-swarm job {point}", 600)
            request = parse_request(work[point].requests[0], keys=keys)
            event = build_result(
                keys, request, f"Echo: {point}", model="m1", amount_msats=2000, bolt11=bolt11
            )
            fields = {"amount_msats": 2000, "payment_hash": decode_invoice(bolt11).payment_hash}
            assert dead.record_result(request.id, event.to_json(), "publishing", **fields)
            recorded[point] = event
        await customer.pool.publish(recorded["published"])  # it went out, then the node died
        dead.close()
        backend = mock_backend()
        async with AsyncExitStack() as stack:
            nodes = fleet(
                keys, relay, pg_url, backend, pricing=PRICING, payment="after", wallet=node_wallet
            )
            for node in nodes:
                await stack.enter_async_context(node)
            await customer.wait_for(
                lambda: all(customer.replies(j).results for j in work.values()), within=30
            )
            for job in work.values():
                await customer.feedback(job, "success")
        for point, job in work.items():
            [result] = results_on_the_relay(relay, job.id)
            if point in recorded:
                assert result.id == recorded[point].id
            [invoice] = invoices_shown(customer.replies(job))
            assert invoice != stray
            await payer.pay_invoice(invoice)
        assert backend.calls == 2  # the two jobs without a recorded result
        assert sum(n.stats.completed for n in nodes) == len(points)
        assert ledger.balance(node_wallet.account_id) == 2000 * len(points)
        with JobStore(pg_url) as store:
            assert {store.get(j.id).state for j in work.values()} == {"done"}  # type: ignore[union-attr]


async def test_payment_before_a_dead_nodes_jobs_are_paid_once_and_run_once(
    relay: Relay, pg_url: str
) -> None:
    """A node died with three jobs: just claimed; its payment asked (the request may never
    have reached the customer); paid. The nodes taking them over invoice the first, ask again
    with the invoice the second already has, and run the third at once."""
    keys = Keys.generate()
    ledger = Ledger(":memory:")
    node_wallet, payer = wallets(ledger)
    points = ("claimed", "asked", "paid")
    async with Customer([relay.url]) as customer:
        dead = JobStore(pg_url, owner="dead", lease_s=0.2)
        work = {p: customer.build(JobSpec(prompt=p, model="m1", bid_msats=100_000)) for p in points}
        for job in work.values():
            ev = job.requests[0]
            customer.jobs[ev.id] = Replies(job)
            assert dead.claim(ev.id, ev.pubkey, ev.created_at, request=ev.to_json())
        asked: dict[str, str] = {}
        for point in ("asked", "paid"):
            bolt11 = await node_wallet.make_invoice(5000, f"nostr-swarm job {point}", 600)
            payment_hash = decode_invoice(bolt11).payment_hash
            dead.update(
                work[point].id,
                "awaiting_payment",
                model="m1",
                quote_msats=5000,
                amount_msats=5000,
                payment_hash=payment_hash,
                bolt11=bolt11,
            )
            asked[point] = bolt11
        await payer.pay_invoice(asked["paid"])
        dead.mark_paid(work["paid"].id)
        dead.close()
        backend = mock_backend()
        async with AsyncExitStack() as stack:
            nodes = fleet(
                keys,
                relay,
                pg_url,
                backend,
                pricing=PRICING,
                payment="before",
                wallet=node_wallet,
                payment_poll_s=0.05,
            )
            for node in nodes:
                await stack.enter_async_context(node)
            again = await customer.feedback(work["asked"], "payment-required", within=30)
            assert again.amount is not None and again.amount.bolt11 == asked["asked"]
            await payer.pay_invoice(asked["asked"])
            first = await customer.feedback(work["claimed"], "payment-required", within=30)
            assert first.amount is not None and first.amount.bolt11 is not None
            await payer.pay_invoice(first.amount.bolt11)
            await customer.wait_for(
                lambda: all(customer.replies(j).results for j in work.values()), within=30
            )
        for point, job in work.items():
            assert len(results_on_the_relay(relay, job.id)) == 1
            shown = invoices_shown(customer.replies(job))
            expected = {"claimed": {first.amount.bolt11}, "asked": {asked["asked"]}, "paid": set()}
            assert shown == expected[point]
        assert backend.calls == len(points)
        assert ledger.balance(node_wallet.account_id) == 5000 * 2 + first.amount.msats
        assert sum(n.stats.completed for n in nodes) == len(points)


async def test_a_stalled_node_says_nothing_about_a_job_another_took_over(
    relay: Relay, pg_url: str
) -> None:
    """A node whose lease lapses while it works (its lease loop stopped: a stall, PostgreSQL
    out of reach) loses the job to another node; when its model answers, the store refuses its
    result, so the customer gets the other node's answer only: no second result, no error."""
    keys = Keys.generate()
    gate = asyncio.Event()
    slow = mock_backend().with_gate(gate)
    async with Customer([relay.url]) as customer, AsyncExitStack() as stack:
        stalled = await stack.enter_async_context(fleet(keys, relay, pg_url, slow, n=1)[0])
        job = await customer.submit(JobSpec(prompt="stuck", model="m1"))
        await slow.wait_for_in_flight(1)
        lease_loop = next(t for t in stalled._tasks if t.get_name() == "provider lease")
        lease_loop.cancel()  # the stall: it renews nothing from now on
        healthy = mock_backend(reply="taken over: {prompt}")
        taker = await stack.enter_async_context(fleet(keys, relay, pg_url, healthy, n=1)[0])
        result = await customer.result(job, within=20)
        assert result.content == "taken over: stuck" and taker.stats.completed == 1
        gate.set()  # the stalled node's model answers now
        await stalled_job_ends(stalled, job.id)
        assert stalled.stats.released == 1 and stalled.stats.completed == 0
        await customer.sync()
        assert len(results_on_the_relay(relay, job.id)) == 1
        assert "error" not in customer.statuses(job)


async def stalled_job_ends(node: ProviderNode, job_id: str) -> None:
    """Wait for the job's work on the node to run out (each piece reports to the book, which
    starts the next or ends the job)."""
    async with asyncio.timeout(10):
        while (work := node._work.get(job_id)) is not None:
            await asyncio.wait([work])
    job = node.book.get(job_id)
    assert job is not None and job.state in TERMINAL
