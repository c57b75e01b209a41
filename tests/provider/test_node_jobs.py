"""ProviderNode over a real relay: intake rules, results, encryption, dedupe, restart."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from client.dvm.nip90 import JobSpec, build_encrypted_request, build_request
from client.nostr import nip44
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from relay_mock import Relay
from tests.support.customer import Customer
from tests.support.nodes import NodeFactory, OffsetClock, mock_backend


def result_events(relay: Relay, job_id: str) -> list[Event]:
    return relay.stored_events(Filter(kinds=[6050], tags={"e": [job_id]}))


def replies_to(relay: Relay, job_id: str) -> list[Event]:
    return relay.stored_events(Filter(kinds=[6050, 7000], tags={"e": [job_id]}))


async def test_free_job_end_to_end(
    start_node: NodeFactory, customer: Customer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="provider")
    async with start_node() as node:
        job = await customer.submit(JobSpec(prompt="hello", model="m1", max_tokens=50))
        result = await customer.result(job)
        await customer.feedback(job, "success")
        row = node.store.get(job.id)
    assert row is not None and row.state == "done" and row.completion_tokens == 3
    assert result.content == "Echo: hello"
    assert result.provider == node.public_key and result.amount is None
    ev = result.event
    assert ev.tag_value("e") == job.id and ev.tag_value("p") == customer.public_key
    assert ev.tag_value("i") == "hello"
    assert json.loads(ev.tag_value("request") or "")["id"] == job.id
    assert ev.tags_named("usage") == [["usage", "7", "3", "10"]]
    assert ev.tag_value("model") == "m1"
    # Arrival order at the customer: processing, then the result, then success.
    kinds = [(e.kind, e.tag_value("status")) for e in customer.replies(job).raw]
    assert kinds == [(7000, "processing"), (6050, None), (7000, "success")]
    assert node.stats.completed == 1 and node.stats.tokens == 10
    line = next(r.getMessage() for r in caplog.records if "done" in r.getMessage())
    assert job.id[:12] in line and customer.public_key[:12] in line
    assert "model m1" in line and "tokens 7+3" in line and "sats 0" in line and "latency" in line


async def test_targeted_jobs_served_and_others_ignored(
    start_node: NodeFactory, customer: Customer, relay: Relay
) -> None:
    other = Keys.generate().public_key
    async with start_node() as node:
        not_ours = await customer.submit(JobSpec(prompt="a", targets=(other,)))
        ours = await customer.submit(JobSpec(prompt="b", targets=(other, node.public_key)))
        broadcast = await customer.submit(JobSpec(prompt="c"))
        assert (await customer.result(ours)).content == "Echo: b"
        assert (await customer.result(broadcast)).content == "Echo: c"
    # The relay delivers in order, so the first job was screened before the later ones.
    assert replies_to(relay, not_ours.id) == []
    assert node.stats.ignored["not_for_us"] == 1


async def test_no_replay_of_stale_jobs(
    start_node: NodeFactory, customer: Customer, relay: Relay
) -> None:
    old = build_request(customer.keys, JobSpec(prompt="old"), created_at=int(time.time()) - 100)
    await customer.publish_raw(old)
    async with start_node(clock_skew_s=10) as node:
        fresh = await customer.submit(JobSpec(prompt="fresh"))
        await customer.result(fresh)
        # A relay that ignores `since` must not make the node replay either.
        relay.inject(
            build_request(customer.keys, JobSpec(prompt="old2"), created_at=int(time.time()) - 60)
        )
        barrier = await customer.submit(JobSpec(prompt="barrier"))
        await customer.result(barrier)
    assert replies_to(relay, old.id) == []
    assert node.stats.completed == 2


async def test_expiration_honoured_at_intake_and_in_queue(
    start_node: NodeFactory, customer: Customer, relay: Relay
) -> None:
    gate = asyncio.Event()
    backend = mock_backend().with_gate(gate)
    clock = OffsetClock()
    now = int(time.time())
    async with start_node(backend, clock=clock, limits=_limits(max_concurrent=1)) as node:
        first = await customer.submit(JobSpec(prompt="first"))
        await customer.feedback(first, "processing")
        queued = await customer.submit(JobSpec(prompt="queued", expiration=now + 50))
        await customer.sync()
        assert node.book.waiting == 1
        clock.offset = 100  # the node now lives 100 s later: both jobs below are expired
        late = await customer.submit(JobSpec(prompt="late", expiration=now + 50))
        barrier = await customer.submit(JobSpec(prompt="barrier"))
        gate.set()
        await customer.result(first)
        await customer.result(barrier)
    assert replies_to(relay, late.id) == []
    assert replies_to(relay, queued.id) == []
    assert node.stats.ignored["expired"] == 1 and node.stats.failed["expired"] == 1
    assert backend.calls == 2


def _limits(**kw: object) -> object:
    from provider.limits import Limits

    return Limits(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", ["nip44", "nip04"])
async def test_encrypted_jobs_get_encrypted_replies(
    start_node: NodeFactory, customer: Customer, scheme: str
) -> None:
    async with start_node() as node:
        spec = JobSpec(
            prompt="secret",
            model="m1",
            targets=(node.public_key,),
            encryption=scheme,  # type: ignore[arg-type]
        )
        job = await customer.submit(spec)
        result = await customer.result(job)
        processing = await customer.feedback(job, "processing")
    assert job.requests[0].tag_value("i") is None  # the prompt never went out in clear
    assert result.content == "Echo: secret" and result.encrypted
    ev = result.event
    assert ["encrypted"] in ev.tags and ev.tag_value("i") is None
    assert "secret" not in ev.content
    assert ["encrypted"] in processing.event.tags
    if scheme == "nip04":
        assert "?iv=" in ev.content
    else:
        assert nip44.looks_like_nip44(ev.content)


async def test_sealed_result_for_a_cleartext_job(
    start_node: NodeFactory, customer: Customer
) -> None:
    async with start_node() as node:
        job = await customer.submit(JobSpec(prompt="copy me", params={"sealed": "nip44"}))
        result = await customer.result(job)
    ev = result.event
    assert ev.tags_named("sealed") == [["sealed", "nip44"]]
    assert "copy me" not in ev.content
    key = nip44.conversation_key(customer.keys.secret_hex, node.public_key)
    assert nip44.decrypt(ev.content, key) == "Echo: copy me"


async def test_wrong_encryption_is_an_error_not_a_crash(
    start_node: NodeFactory, customer: Customer
) -> None:
    async with start_node() as node:
        stranger = Keys.generate().public_key
        spec = JobSpec(prompt="x", targets=(stranger,), encryption="nip44")
        sealed_for_other = build_encrypted_request(customer.keys, spec, stranger)
        # Same ciphertext, but addressed to our node: it cannot decrypt it.
        bad = Event.create(
            customer.keys,
            5050,
            sealed_for_other.content,
            [["p", node.public_key], ["encrypted"]],
        )
        job = await customer.publish_raw(bad)
        err = await customer.error(job)
        ok = await customer.submit(JobSpec(prompt="still alive"))
        await customer.result(ok)
    assert "cannot decrypt" in err.extra and "public key" in err.extra
    assert node.stats.refused["decrypt"] == 1


async def test_dedupe_across_relays(start_node: NodeFactory) -> None:
    async with Relay() as r1, Relay() as r2:
        urls = [r1.url, r2.url]
        async with start_node(relays=urls) as node, Customer(urls) as alice:
            job = await alice.submit(JobSpec(prompt="twice"))
            await alice.result(job)
            # The same event once more, straight into each relay.
            r1.inject(job.requests[0])
            barrier = await alice.submit(JobSpec(prompt="barrier"))
            await alice.result(barrier)
        ids = {e.id for e in r1.stored_events(Filter(kinds=[6050], tags={"e": [job.id]}))}
        ids |= {e.id for e in r2.stored_events(Filter(kinds=[6050], tags={"e": [job.id]}))}
        assert len(ids) == 1
        assert node.stats.accepted == 2


async def test_restart_does_not_reprocess(
    start_node: NodeFactory, customer: Customer, relay: Relay, tmp_path: Path
) -> None:
    keys = Keys.generate()
    store = tmp_path / "provider.sqlite"
    backend = mock_backend()
    async with start_node(backend, keys=keys, store=store) as first:
        job = await customer.submit(JobSpec(prompt="once"))
        await customer.result(job)
    assert first.stats.completed == 1
    # A wide skew window makes the relay hand the old job to the new node again.
    async with start_node(backend, keys=keys, store=store, clock_skew_s=3600) as second:
        barrier = await customer.submit(JobSpec(prompt="barrier"))
        await customer.result(barrier)
    assert second.stats.duplicates == 1 and second.stats.completed == 1
    assert len(result_events(relay, job.id)) == 1
    assert backend.calls == 2
