"""ProviderNode honours commit-reveal: commitment first, the result held until the customer's
reveal call (or its end), over relay_mock with a scripted customer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from client.dvm.nip90 import Job, JobSpec
from client.dvm.sealing import build_reveal_call, commitment_of, salt_of, verify_reveal
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from relay_mock import Relay
from tests.support.copy_actors import ANSWER, honest_node
from tests.support.customer import Customer

COMMIT = {"commit": "sha256"}


@pytest.fixture
async def customer(relay: Relay) -> AsyncIterator[Customer]:
    async with Customer([relay.url]) as c:
        yield c


def results_on_relay(relay: Relay, job: Job) -> list[Event]:
    return relay.stored_events(Filter(kinds=[6050], tags={"e": list(job.ids)}))


async def commitment(customer: Customer, job: Job) -> str:
    r = customer.replies(job)
    await customer.wait_for(lambda: any(commitment_of(f.event) for f in r.feedback))
    return next(c for f in r.feedback if (c := commitment_of(f.event)))


async def test_result_is_held_until_the_reveal_call(relay: Relay, customer: Customer) -> None:
    async with honest_node(relay.url) as node:
        job = await customer.submit(JobSpec(prompt="Capital of France?", params=COMMIT))
        value = await commitment(customer, job)
        await customer.sync()  # the node has screened everything published before
        assert results_on_relay(relay, job) == []  # nothing to copy yet
        assert node.stats.committed == 1 and node.stats.completed == 0
        await customer.pool.publish(build_reveal_call(customer.keys, job, [node.public_key]))
        result = await customer.result(job)
        await customer.feedback(job, "success")
    assert result.content == ANSWER and result.provider == node.public_key
    salt = salt_of(result.event)
    assert salt is not None and verify_reveal(value, job.id, node.public_key, ANSWER, salt)
    assert node.stats.revealed == 1 and node.stats.completed == 1


async def test_sealed_commit_reveal_commits_to_the_plain_text(
    relay: Relay, customer: Customer
) -> None:
    async with honest_node(relay.url) as node:
        job = await customer.submit(
            JobSpec(prompt="Capital of France?", params={**COMMIT, "sealed": "nip44"})
        )
        value = await commitment(customer, job)
        await customer.pool.publish(build_reveal_call(customer.keys, job, [node.public_key]))
        result = await customer.result(job)
    assert result.sealed and result.content == ANSWER and ANSWER not in result.event.content
    salt = salt_of(result.event)
    assert salt is not None and verify_reveal(value, job.id, node.public_key, ANSWER, salt)


async def test_left_out_of_the_call_the_result_is_withheld(
    relay: Relay, customer: Customer
) -> None:
    outsider = Keys.generate()
    async with honest_node(relay.url) as node:
        job = await customer.submit(JobSpec(prompt="Capital of France?", params=COMMIT))
        await commitment(customer, job)
        # A call signed by someone else is ignored, even though it names the node ...
        await customer.pool.publish(build_reveal_call(outsider, job, [node.public_key]))
        # ... and the customer's own call leaves the node out.
        await customer.pool.publish(build_reveal_call(customer.keys, job, [outsider.public_key]))
        error = await customer.error(job)
    assert "without our commitment" in error.extra
    assert results_on_relay(relay, job) == []
    assert node.stats.failed["commit_late"] == 1 and node.stats.revealed == 0


async def test_window_closed_while_working_no_commitment_no_result(
    relay: Relay, customer: Customer
) -> None:
    gate = asyncio.Event()
    async with honest_node(relay.url, gate=gate) as node:
        job = await customer.submit(JobSpec(prompt="Capital of France?", params=COMMIT))
        backend = node.backend
        await asyncio.wait_for(backend.wait_for_in_flight(1), 10)  # type: ignore[attr-defined]
        await customer.pool.publish(build_reveal_call(customer.keys, job, []))
        await customer.sync()
        gate.set()
        error = await customer.error(job)
    assert "without our commitment" in error.extra
    assert not any(commitment_of(f.event) for f in customer.replies(job).feedback)
    assert results_on_relay(relay, job) == [] and node.stats.committed == 0


async def test_no_reveal_call_in_time(relay: Relay, customer: Customer) -> None:
    async with honest_node(relay.url, reveal_timeout_s=0.05) as node:
        job = await customer.submit(JobSpec(prompt="Capital of France?", params=COMMIT))
        error = await customer.error(job)
    assert "no reveal call" in error.extra
    assert results_on_relay(relay, job) == []
    assert node.stats.failed["reveal_timeout"] == 1


async def test_cancelled_while_held(relay: Relay, customer: Customer) -> None:
    async with honest_node(relay.url) as node:
        job = await customer.submit(JobSpec(prompt="Capital of France?", params=COMMIT))
        await commitment(customer, job)
        deletion = Event.create(customer.keys, 5, "quorum reached", [["e", job.id], ["k", "5050"]])
        await customer.pool.publish(deletion)
        await customer.pool.publish(build_reveal_call(customer.keys, job, [node.public_key]))
        await customer.sync()
    assert node.stats.cancelled == 1 and node.stats.revealed == 0
    assert results_on_relay(relay, job) == []


async def test_shutdown_while_held(relay: Relay, customer: Customer) -> None:
    async with honest_node(relay.url) as node:
        job = await customer.submit(JobSpec(prompt="Capital of France?", params=COMMIT))
        await commitment(customer, job)
    error = await customer.error(job)
    assert "shutting down" in error.extra and node.stats.failed["shutdown"] == 1
    assert results_on_relay(relay, job) == []


async def test_unknown_commit_scheme_is_refused(relay: Relay, customer: Customer) -> None:
    async with honest_node(relay.url) as node:
        job = await customer.submit(JobSpec(prompt="?", params={"commit": "md5"}))
        error = await customer.error(job)
    assert "sha256" in error.extra and node.stats.refused["commit"] == 1
