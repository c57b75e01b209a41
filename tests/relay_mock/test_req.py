"""REQ, EOSE, live events, CLOSE, subscription replacement and COUNT over a real websocket."""

from __future__ import annotations

import time

from client.nostr.event import Event
from client.nostr.keys import Keys
from relay_mock import Relay
from tests.support.wire import Wire


async def test_req_several_filters_limit_newest_first_then_eose_then_live(relay: Relay) -> None:
    a, b = Keys.generate(), Keys.generate()
    now = int(time.time())
    notes = [Event.create(a, 1, f"n{i}", created_at=now - 100 + i) for i in range(10)]
    reaction = Event.create(b, 7, "+", [["e", notes[0].id], ["p", a.public_key]], created_at=now)
    async with await Wire.open(relay.url) as pub, await Wire.open(relay.url) as sub:
        for e in [*notes, reaction]:
            await pub.publish(e)
        events, end = await sub.req(
            "feed", {"authors": [a.public_key], "kinds": [1], "limit": 3}, {"#e": [notes[0].id]}
        )
        assert end == ["EOSE", "feed"]
        assert [e["id"] for e in events] == [reaction.id, notes[9].id, notes[8].id, notes[7].id]
        live = Event.create(a, 1, "live one")
        await pub.publish(live)
        got = await sub.next_of("EVENT")
        assert got[1] == "feed" and got[2]["id"] == live.id
        # An event no filter wants is not sent: the next message is for the next match.
        await pub.publish(Event.create(b, 1, "not followed"))
        wanted = Event.create(b, 7, "+", [["e", notes[0].id]])
        await pub.publish(wanted)
        assert (await sub.next_of("EVENT"))[2]["id"] == wanted.id


async def test_since_until_on_the_wire(relay: Relay) -> None:
    keys = Keys.generate()
    base = int(time.time()) - 1000
    events = [Event.create(keys, 1, str(i), created_at=base + i) for i in range(6)]
    async with await Wire.open(relay.url) as wire:
        for e in events:
            await wire.publish(e)
        got, _ = await wire.req(
            "w", {"authors": [keys.public_key], "since": base + 2, "until": base + 4}
        )
    assert [e["content"] for e in got] == ["4", "3", "2"]


async def test_close_stops_live_events(relay: Relay) -> None:
    keys = Keys.generate()
    async with await Wire.open(relay.url) as pub, await Wire.open(relay.url) as sub:
        await sub.req("one", {"kinds": [1]})
        await sub.req("two", {"kinds": [7]})
        await sub.send(["CLOSE", "one"])
        await pub.publish(Event.create(keys, 1, "after close"))
        marker = Event.create(keys, 7, "marker")
        await pub.publish(marker)
        got = await sub.next_of("EVENT")
        assert got[1] == "two" and got[2]["id"] == marker.id
        assert relay.stats().subscriptions == 1


async def test_same_sub_id_replaces_the_subscription(relay: Relay) -> None:
    keys = Keys.generate()
    async with await Wire.open(relay.url) as pub, await Wire.open(relay.url) as sub:
        await sub.req("s", {"kinds": [1]})
        await sub.req("s", {"kinds": [7]})
        assert relay.stats().subscriptions == 1
        await pub.publish(Event.create(keys, 1, "old filter"))
        new = Event.create(keys, 7, "new filter")
        await pub.publish(new)
        assert (await sub.next_of("EVENT"))[2]["id"] == new.id


async def test_subscriber_gets_each_event_once_per_subscription(relay: Relay) -> None:
    keys = Keys.generate()
    async with await Wire.open(relay.url) as pub, await Wire.open(relay.url) as sub:
        await sub.req("s", {"kinds": [1]}, {"authors": [keys.public_key]})
        first = Event.create(keys, 1, "matches both filters")
        await pub.publish(first)
        second = Event.create(keys, 1, "second")
        await pub.publish(second)
        assert (await sub.next_of("EVENT"))[2]["id"] == first.id
        assert (await sub.next_of("EVENT"))[2]["id"] == second.id


async def test_count(relay: Relay) -> None:
    keys = Keys.generate()
    async with await Wire.open(relay.url) as wire:
        for i in range(3):
            await wire.publish(Event.create(keys, 1, str(i)))
        await wire.send(["COUNT", "c", {"authors": [keys.public_key]}])
        assert await wire.recv() == ["COUNT", "c", {"count": 3}]


async def test_relay_side_close_sends_closed(relay: Relay) -> None:
    async with await Wire.open(relay.url) as wire:
        await wire.req("s", {"kinds": [1]})
        assert relay.close_subscriptions("error: shutting down for maintenance") == 1
        assert await wire.recv() == ["CLOSED", "s", "error: shutting down for maintenance"]
        assert relay.stats().subscriptions == 0
