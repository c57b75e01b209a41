"""ProviderNode limits and bad input: busy queue, rate limit, caps, bids, dead backends. Every
refusal is error feedback that says why, is counted, and the node keeps serving."""

from __future__ import annotations

import asyncio

from client.dvm.nip90 import JobSpec
from client.nostr.event import Event
from client.nostr.keys import Keys
from provider.limits import Limits
from provider.pricing import Pricing
from relay_mock import Relay
from router.errors import BackendError
from tests.support.customer import Customer
from tests.support.nodes import NodeFactory, mock_backend


async def test_full_queue_answers_busy_at_once(start_node: NodeFactory, customer: Customer) -> None:
    gate = asyncio.Event()
    backend = mock_backend().with_gate(gate)
    limits = Limits(max_concurrent=1, queue_size=1)
    async with start_node(backend, limits=limits) as node:
        running = await customer.submit(JobSpec(prompt="1"))
        await customer.feedback(running, "processing")
        waiting = await customer.submit(JobSpec(prompt="2"))
        refused = await customer.submit(JobSpec(prompt="3"))
        err = await customer.error(refused)  # while the first is still held
        assert backend.calls == 1 and node.book.waiting == 1
        gate.set()
        assert (await customer.result(running)).content == "Echo: 1"
        assert (await customer.result(waiting)).content == "Echo: 2"
        again = await customer.submit(JobSpec(prompt="4"))  # room again
        await customer.result(again)
    assert err.extra.startswith("busy:") and "another provider" in err.extra
    assert customer.replies(refused).results == []
    assert node.stats.refused["busy"] == 1 and node.stats.completed == 3


async def test_concurrency_cap_is_respected(start_node: NodeFactory, customer: Customer) -> None:
    gate = asyncio.Event()
    backend = mock_backend().with_gate(gate)
    async with start_node(backend, limits=Limits(max_concurrent=2, queue_size=10)):
        jobs = [await customer.submit(JobSpec(prompt=str(i))) for i in range(5)]
        await customer.feedback(jobs[1], "processing")
        await customer.sync()
        assert backend.in_flight == 2
        gate.set()
        for j in jobs:
            await customer.result(j)
    assert backend.max_in_flight == 2


async def test_rate_limit_per_customer(start_node: NodeFactory, relay: Relay) -> None:
    limits = Limits(rate_per_minute=1, rate_burst=2)
    async with start_node(limits=limits) as node, Customer([relay.url]) as alice:
        a = [await alice.submit(JobSpec(prompt=str(i))) for i in range(4)]
        err = await alice.error(a[2])
        for j in a[:2]:
            await alice.result(j)
        async with Customer([relay.url]) as bob:
            b = await bob.submit(JobSpec(prompt="bob"))
            await bob.result(b)
    assert "rate limited" in err.extra and "retry in" in err.extra
    # One refusal is announced per window; the 4th is refused silently.
    assert alice.replies(a[3]).feedback == []
    assert node.stats.refused["rate_limited"] == 2


async def test_caps_unknown_model_and_malformed_requests(
    start_node: NodeFactory, customer: Customer
) -> None:
    limits = Limits(max_prompt_chars=20, max_tokens=100, default_max_tokens=50)
    async with start_node(limits=limits) as node:
        cases = {
            "oversized": await customer.submit(JobSpec(prompt="x" * 21)),
            "max_tokens": await customer.submit(JobSpec(prompt="hi", max_tokens=101)),
            "unknown_model": await customer.submit(JobSpec(prompt="hi", model="gpt-9")),
            "malformed": await customer.publish_raw(
                Event.create(customer.keys, 5050, "", [["param", "model", "m1"]])
            ),
            "bad_bid": await customer.publish_raw(
                Event.create(customer.keys, 5050, "", [["i", "hi", "text"], ["bid", "lots"]])
            ),
        }
        errors = {name: (await customer.error(job)).extra for name, job in cases.items()}
        ok = await customer.submit(JobSpec(prompt="fine"))
        await customer.result(ok)
    assert "at most 20 characters" in errors["oversized"]
    assert "ask for at most 100" in errors["max_tokens"]
    assert "gpt-9" in errors["unknown_model"] and "models: m1" in errors["unknown_model"]
    assert "no input" in errors["malformed"]
    assert "bid" in errors["bad_bid"]
    refused = node.stats.refused
    assert refused["oversized"] == refused["max_tokens"] == refused["unknown_model"] == 1
    assert refused["malformed"] == 2
    assert node.stats.errors == 5 and node.stats.completed == 1


async def test_low_bid_refused_with_quote(start_node: NodeFactory, customer: Customer) -> None:
    from relay_mock.lightning.ledger import Ledger
    from relay_mock.lightning.wallet import LedgerWallet

    ledger = Ledger(":memory:")
    wallet = LedgerWallet(ledger, ledger.create_account("node").id)
    pricing = Pricing(msats_per_1k_prompt=1000, msats_per_1k_completion=10_000, min_msats=0)
    async with start_node(pricing=pricing, payment="after", wallet=wallet) as node:
        low = await customer.submit(JobSpec(prompt="hi", max_tokens=100, bid_msats=999))
        err = await customer.error(low)
        enough = await customer.submit(JobSpec(prompt="hi", max_tokens=100, bid_msats=1001))
        result = await customer.result(enough)
    assert err.amount is not None and err.amount.msats == 1001  # 1 prompt token + 100 completion
    assert "bid at least 1001 msats" in err.extra
    assert result.amount is not None and result.amount.msats <= 1001
    assert node.stats.refused["bid_too_low"] == 1


async def test_dead_backend_is_an_error_and_node_keeps_serving(
    start_node: NodeFactory, customer: Customer
) -> None:
    backend = mock_backend().fail_next(
        1, lambda: BackendError("connect to http://127.0.0.1:9/v1 refused", backend="x")
    )
    async with start_node(backend) as node:
        broken = await customer.submit(JobSpec(prompt="a"))
        err = await customer.error(broken)
        ok = await customer.submit(JobSpec(prompt="b"))
        await customer.result(ok)
    assert "backend failed" in err.extra and "another provider" in err.extra
    assert "127.0.0.1" not in err.extra  # no internal addresses in what customers see
    assert node.stats.failed["backend"] == 1 and node.stats.completed == 1


async def test_backend_timeout_is_an_error(start_node: NodeFactory, customer: Customer) -> None:
    never = asyncio.Event()
    backend = mock_backend().with_gate(never)
    async with start_node(backend, limits=Limits(job_timeout=0.05)) as node:
        job = await customer.submit(JobSpec(prompt="slow"))
        err = await customer.error(job)
    assert "did not answer within 0.05 s" in err.extra
    assert node.stats.failed["timeout"] == 1


async def test_garbage_never_crashes(start_node: NodeFactory, customer: Customer) -> None:
    me = Keys.generate()
    weird_tags = [
        [["i", "hi", "text"], ["param", "max_tokens", "-5"]],
        [["i", "hi", "text"], ["param", "temperature", "nan"]],
        [["i", "hi", "text"], ["param", "model"]],
        [["i", "hi", "text"], ["expiration", "soon"]],
        [["i", "hi", "text"], ["p", me.public_key], ["encrypted"]],  # not for us: silent
        [["i", "", "text"]],
        [["i", "hi", "event"]],
        [["i", "hi", "text"]] * 300,
    ]
    async with start_node(keys=Keys.generate()) as node:
        jobs = [
            await customer.publish_raw(Event.create(customer.keys, 5050, "{", tags))
            for tags in weird_tags
        ]
        ok = await customer.submit(JobSpec(prompt="alive"))
        await customer.result(ok)
        for job in jobs[:4] + jobs[5:]:
            await customer.error(job)
    assert customer.replies(jobs[4]).feedback == []
    assert node.stats.refused.total() == 7 and node.stats.ignored["not_for_us"] == 1


async def test_cancelled_jobs_stop_wasting_the_backend(
    start_node: NodeFactory, customer: Customer, relay: Relay
) -> None:
    from client.dvm.nip90 import build_deletion

    gate = asyncio.Event()
    backend = mock_backend().with_gate(gate)
    async with start_node(backend, limits=Limits(max_concurrent=1, queue_size=5)) as node:
        running = await customer.submit(JobSpec(prompt="running"))
        await customer.feedback(running, "processing")
        queued = await customer.submit(JobSpec(prompt="queued"))
        kept = await customer.submit(JobSpec(prompt="kept"))
        # Someone else cannot cancel our job.
        await customer.pool.publish(build_deletion(Keys.generate(), [kept.id]))
        await customer.pool.publish(build_deletion(customer.keys, [running.id, queued.id]))
        await customer.sync()
        assert node.stats.cancelled == 2 and backend.in_flight == 1  # "kept" took the slot
        gate.set()
        await customer.result(kept)
    assert customer.replies(running).results == [] and customer.replies(queued).results == []
    assert customer.statuses(queued) == []
    assert backend.calls == 2  # "running" (cancelled mid-call) and "kept"
