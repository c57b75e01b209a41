"""A relay that stores an event but loses its OK: the pool sends the event again and reports the
relay's "duplicate" acceptance, instead of a refusal for an event the relay took."""

from __future__ import annotations

import asyncio

import pytest

from client.net.pool import RelayPool
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from relay_mock import Relay


async def test_lost_ok_is_recovered_by_resending(relay: Relay) -> None:
    keys = Keys.generate()
    event = Event.create(keys, 1, "hello")
    async with RelayPool([relay.url], keys=keys) as watcher, RelayPool([relay.url]) as pool:
        sub = watcher.subscribe(Filter(ids=[event.id]))
        await sub.wait_eose()
        relay.faults.drop_verbs = frozenset({"OK"})
        relay.faults.drop_rate = 1.0
        publishing = asyncio.create_task(pool.publish(event, ok_timeout=5.0))
        delivered = await asyncio.wait_for(anext(aiter(sub)), 5)
        assert delivered.id == event.id  # stored and forwarded, while its OK was lost
        relay.faults.reset()
        results = await publishing
    accepted, message = results[relay.url]
    assert accepted and message.startswith("duplicate")


async def test_publish_cancelled_as_its_ok_arrives_stays_cancelled(relay: Relay) -> None:
    """Python 3.11's wait_for could swallow a cancellation that came together with the OK; a
    node's announce loop then missed its shutdown. publish must honour the cancellation."""
    keys = Keys.generate()
    event = Event.create(keys, 1, "cancel me")
    async with RelayPool([relay.url], keys=keys) as watcher, RelayPool([relay.url]) as pool:
        sub = watcher.subscribe(Filter(ids=[event.id]))
        await sub.wait_eose()
        relay.faults.drop_verbs = frozenset({"OK"})
        relay.faults.drop_rate = 1.0
        conn = pool.relays[0]
        task = asyncio.create_task(conn.publish(event, 5.0))
        await asyncio.wait_for(anext(aiter(sub)), 5)  # the relay has it; the OK is lost
        future = conn._pending[event.id][0]
        future.set_result((True, ""))  # the OK and the cancellation arrive together
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
