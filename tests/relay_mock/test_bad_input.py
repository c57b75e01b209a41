"""Bad input gets NOTICE, CLOSED or OK-false with a reason; the connection and relay stay up."""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest

from client.nostr.event import Event
from client.nostr.keys import Keys
from relay_mock import Relay
from tests.support.wire import Wire


@pytest.mark.parametrize(
    ("message", "verb"),
    [
        ("not json at all", "NOTICE"),
        ('["EVENT", {"id": ', "NOTICE"),
        ("{}", "NOTICE"),
        ("[]", "NOTICE"),
        ("[1, 2]", "NOTICE"),
        ('"EVENT"', "NOTICE"),
        ("[" * 50_000 + "]" * 50_000, "NOTICE"),
        ('["HELLO", 1]', "NOTICE"),
        ('["EVENT"]', "NOTICE"),
        ('["EVENT", "not an object"]', "NOTICE"),
        ('["EVENT", {"kind": 1}]', "NOTICE"),
        ('["REQ"]', "NOTICE"),
        ('["REQ", 5, {}]', "NOTICE"),
        ('["REQ", "s"]', "CLOSED"),
        ('["REQ", "s", "not a filter"]', "CLOSED"),
        ('["REQ", "s", {"kinds": ["1"]}]', "CLOSED"),
        ('["REQ", "s", {"kinds": [70000]}]', "CLOSED"),
        ('["REQ", "s", {"ids": ["abc"]}]', "CLOSED"),
        ('["REQ", "s", {"#e": ["not hex"]}]', "CLOSED"),
        ('["REQ", "s", {"limit": -1}]', "CLOSED"),
        ('["REQ", "s", {"since": "yesterday"}]', "CLOSED"),
        ('["REQ", "s", {"bogus": 1}]', "CLOSED"),
        ('["COUNT", "s", []]', "CLOSED"),
        ('["CLOSE"]', "NOTICE"),
        ('["CLOSE", 7]', "NOTICE"),
        ('["AUTH"]', "NOTICE"),
        ('["AUTH", {"id": 3}]', "NOTICE"),
        ('"\\ud800"', "NOTICE"),
    ],
)
async def test_bad_message_gets_a_reason_and_the_connection_stays(
    relay: Relay, message: str, verb: str
) -> None:
    async with await Wire.open(relay.url) as wire:
        await wire.send(message)
        reply = await wire.recv()
        assert reply[0] == verb
        reason = reply[-1]
        assert isinstance(reason, str) and reason.split(":")[0] in ("invalid", "error")
        event = Event.create(Keys.generate(), 1, "still here")
        assert (await wire.publish(event))[2] is True


async def test_extra_elements_after_the_event_get_ok_false(relay: Relay) -> None:
    event = Event.create(Keys.generate(), 1, "x")
    async with await Wire.open(relay.url) as wire:
        await wire.send(["EVENT", event.to_dict(), "extra"])
        assert (await wire.recv())[:3] == ["OK", event.id, False]


async def test_lone_surrogate_in_content_is_invalid(relay: Relay) -> None:
    event = Event.create(Keys.generate(), 1, "x")
    obj = event.to_dict()
    text = json.dumps(["EVENT", obj]).replace('"content": "x"', '"content": "\\ud800"')
    async with await Wire.open(relay.url) as wire:
        await wire.send(text)
        ok = await wire.recv()
    assert ok[:3] == ["OK", event.id, False] and ok[3].startswith("invalid:")


async def test_binary_frame_gets_notice(relay: Relay) -> None:
    async with await Wire.open(relay.url) as wire:
        await wire.send(b'["REQ","s",{}]')
        reply = await wire.recv()
        assert reply[0] == "NOTICE" and "binary" in reply[1]
        assert (await wire.req("s", {}))[1] == ["EOSE", "s"]


async def test_flood_without_reading_is_answered_in_order(relay: Relay) -> None:
    """A client that writes thousands of messages before reading any: the relay applies
    backpressure instead of buffering without bound, and answers everything in order."""
    keys = Keys.generate()
    events = [Event.create(keys, 1, f"flood {i}") for i in range(600)]
    async with await Wire.open(relay.url) as wire:
        for i, event in enumerate(events):
            await wire.send('["EVENT",' + event.to_json() + "]")
            await wire.send("garbage" if i % 2 else '["BOGUS"]')
        replies: list[Any] = [await wire.recv() for _ in range(2 * len(events))]
    oks = [r for r in replies if r[0] == "OK"]
    assert [r[1] for r in oks] == [e.id for e in events]
    assert all(r[2] for r in oks)
    assert sum(r[0] == "NOTICE" for r in replies) == len(events)
    assert relay.stats().stored_events == len(events)


async def test_connections_leave_nothing_behind(relay: Relay) -> None:
    """Open, subscribe, drop (cleanly or not): the relay's per-connection state returns to zero."""
    keys = Keys.generate()
    relay.inject(Event.create(keys, 1, "x"))
    for round_ in range(3):
        wires = [await Wire.open(relay.url) for _ in range(10)]
        for i, wire in enumerate(wires):
            await wire.req("a", {"kinds": [1]})
            await wire.req("b", {"#p": [keys.public_key]}, {"authors": [keys.public_key]})
            if i % 2:
                wire.ws.transport.abort()  # vanish without a close frame
            else:
                await wire.close()
        for wire in wires:
            await wire.ws.wait_closed()
        await relay.wait_idle()
        stats = relay.stats()
        assert (stats.connections, stats.subscriptions) == (0, 0), round_
        assert relay.core.peers == set()
        assert relay.core.live.buckets() == 0 and relay.core.live.filters == 0
    gc.collect()


async def test_text_frame_that_is_not_utf8_closes_with_1007(relay: Relay) -> None:
    from websockets.exceptions import ConnectionClosed

    async with await Wire.open(relay.url) as wire:
        await wire.ws.send(b'["REQ","s",{}]\xff', text=True)
        with pytest.raises(ConnectionClosed) as info:
            await wire.ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1007
    async with await Wire.open(relay.url) as wire:
        assert (await wire.req("s", {}))[1] == ["EOSE", "s"]


async def test_negentropy_is_refused_with_neg_err(relay: Relay) -> None:
    """NIP-77: NEG-OPEN and NEG-MSG get NEG-ERR for their subscription (not a NOTICE)."""
    async with await Wire.open(relay.url) as wire:
        await wire.send(["NEG-OPEN", "neg1", {"kinds": [1]}, "6100"])
        reply = await wire.recv()
        assert reply[:2] == ["NEG-ERR", "neg1"] and reply[2].startswith("blocked:")
        await wire.send(["NEG-CLOSE", "neg1"])  # answered by nothing
        await wire.send(["NEG-MSG", "neg2", "6100"])
        assert (await wire.recv())[:2] == ["NEG-ERR", "neg2"]
        await wire.send(["NEG-OPEN"])
        assert (await wire.recv())[0] == "NOTICE"
