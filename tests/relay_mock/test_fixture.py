"""The shared ``relay`` fixture gives a listening relay that stores and answers."""

from __future__ import annotations

from client.nostr.event import Event
from client.nostr.keys import Keys
from relay_mock import Relay
from tests.support.wire import Wire


async def test_fixture_relay_stores_and_answers(relay: Relay) -> None:
    assert relay.url.startswith("ws://127.0.0.1:")
    keys = Keys.generate()
    event = Event.create(keys, 1, "hello")
    async with await Wire.open(relay.url) as wire:
        assert await wire.publish(event) == ["OK", event.id, True, ""]
        events, end = await wire.req("s", {"authors": [keys.public_key]})
    assert [e["id"] for e in events] == [event.id]
    assert end == ["EOSE", "s"]
