"""ProviderNode lifecycle: NIP-89 announcement and heartbeat, graceful shutdown, and the real
customer (SwarmClient) reaching a quorum of two nodes."""

from __future__ import annotations

import asyncio
import json

from client.customer.swarm import SwarmClient
from client.dvm.nip90 import JobSpec
from client.net.pool import RelayPool
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from provider.announce import is_alive
from provider.limits import Limits
from provider.pricing import Pricing
from relay_mock import Relay
from tests.support.customer import Customer
from tests.support.nodes import NodeFactory, mock_backend


class Announcements:
    """Watches a node's kind-31990 events on the relay."""

    def __init__(self, relay: Relay, author: str) -> None:
        self.pool = RelayPool([relay.url], connect_timeout=3.0)
        self.author = author
        self.seen: list[Event] = []

    async def __aenter__(self) -> Announcements:
        await self.pool.start()
        self.sub = self.pool.subscribe(Filter(kinds=[31990], authors=[self.author]))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.close()

    async def next(self) -> Event:
        event = await asyncio.wait_for(self.sub.__anext__(), 10)
        self.seen.append(event)
        return event


async def test_announcement_on_start_and_on_change(start_node: NodeFactory, relay: Relay) -> None:
    keys = Keys.generate()
    backend = mock_backend("m1").with_model("m2")
    async with (
        Announcements(relay, keys.public_key) as watch,
        start_node(backend, keys=keys, name="Test node", payment="free") as node,
    ):
        first = await watch.next()
        content = json.loads(first.content)
        assert first.tag_value("k") == "5050" and first.tag_value("status") == "online"
        assert content["name"] == "Test node"
        assert content["nostrSwarm"]["models"] == ["m1", "m2"]
        assert content["nostrSwarm"]["payment"] == "free"
        assert is_alive(first, node.clock())
        node.set_pricing(Pricing(min_msats=5000))
        second = await watch.next()
        assert json.loads(second.content)["nostrSwarm"]["pricing"]["minMsats"] == 5000
        assert second.created_at > first.created_at
        assert second.tag_value("d") == first.tag_value("d")
        node.set_models(["m2"])
        third = await watch.next()
        assert json.loads(third.content)["nostrSwarm"]["models"] == ["m2"]
    # The relay keeps only the newest, and after a graceful stop that says offline.
    stored = relay.stored_events(Filter(kinds=[31990], authors=[keys.public_key]))
    assert len(stored) == 1 and stored[0].tag_value("status") == "offline"


async def test_heartbeat_republishes_with_fresh_timestamp(
    start_node: NodeFactory, relay: Relay
) -> None:
    keys = Keys.generate()
    async with Announcements(relay, keys.public_key) as watch, start_node(keys=keys, heartbeat_s=1):
        first = await watch.next()
        beat = await watch.next()  # about a second later, nothing changed
    assert beat.content == first.content
    assert beat.created_at > first.created_at
    assert beat.tag_value("heartbeat") == "1"
    assert int(beat.tag_value("expiration") or 0) == beat.created_at + 3


async def test_shutdown_fails_queued_and_unfinished_jobs_with_feedback(
    start_node: NodeFactory, customer: Customer
) -> None:
    gate = asyncio.Event()
    backend = mock_backend().with_gate(gate)
    limits = Limits(max_concurrent=1, queue_size=5, shutdown_grace=0)
    async with start_node(backend, limits=limits) as node:
        running = await customer.submit(JobSpec(prompt="running"))
        await customer.feedback(running, "processing")
        queued = await customer.submit(JobSpec(prompt="queued"))
        await customer.sync()
        assert node.book.waiting == 1
        await node.close()
        err_running = await customer.error(running)
        err_queued = await customer.error(queued)
    assert "stopped before the job finished" in err_running.extra
    assert "shutting down" in err_queued.extra
    assert node.stats.failed["shutdown"] == 2
    assert backend.calls == 1


async def test_shutdown_lets_running_jobs_finish_and_stops_intake(
    start_node: NodeFactory, customer: Customer, relay: Relay
) -> None:
    gate = asyncio.Event()
    backend = mock_backend().with_gate(gate)
    async with start_node(backend, limits=Limits(shutdown_grace=30)) as node:
        running = await customer.submit(JobSpec(prompt="finish me"))
        await customer.feedback(running, "processing")
        closing = asyncio.create_task(node.close())
        await asyncio.wait_for(node.intake_stopped.wait(), 10)
        late = await customer.submit(JobSpec(prompt="too late"))
        assert not closing.done()
        gate.set()
        await asyncio.wait_for(closing, 10)
        result = await customer.result(running)
    assert result.content == "Echo: finish me"
    assert relay.stored_events(Filter(kinds=[6050, 7000], tags={"e": [late.id]})) == []
    assert node.pool.connected_urls() == []


async def test_swarm_client_gets_a_quorum_of_two_nodes(
    start_node: NodeFactory, relay: Relay
) -> None:
    async with (
        start_node(mock_backend(reply="Paris")) as a,
        start_node(mock_backend(reply="Paris")) as b,
        SwarmClient(Keys.generate(), [relay.url]) as swarm,
    ):
        result = await swarm.complete(
            "Capital of France?", model="m1", quorum=2, timeout=10, providers_expected=2
        )
    assert result.text == "Paris"
    assert set(result.agreeing) == {a.public_key, b.public_key}


async def test_node_keeps_serving_across_a_relay_restart(
    start_node: NodeFactory, customer: Customer, relay: Relay
) -> None:
    async with start_node() as node:
        before = await customer.submit(JobSpec(prompt="before"))
        await customer.result(before)
        await relay.restart()
        after = await customer.submit(JobSpec(prompt="after"))
        assert (await customer.result(after)).content == "Echo: after"
        # The re-subscription replays "before" from the relay's store: not worked again.
        await customer.sync()
    assert node.stats.completed == 2
    assert len(relay.stored_events(Filter(kinds=[6050], tags={"e": [before.id]}))) == 1


async def test_swarm_client_encrypted_quorum(start_node: NodeFactory, relay: Relay) -> None:
    async with (
        start_node(mock_backend(reply="42")) as a,
        start_node(mock_backend(reply="42")) as b,
        SwarmClient(Keys.generate(), [relay.url]) as swarm,
    ):
        result = await swarm.complete(
            "secret question",
            quorum=2,
            timeout=10,
            targets=[a.public_key, b.public_key],
            encrypt=True,
        )
    assert result.text == "42"
    assert set(result.agreeing) == {a.public_key, b.public_key}
    assert a.stats.completed == b.stats.completed == 1
