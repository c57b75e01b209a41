"""Limits and their refusals: message size, subscriptions, filters, event rate, tags, content."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from client.nostr.event import Event
from client.nostr.keys import Keys
from relay_mock import Limits, Relay
from tests.support.wire import Wire


async def test_oversized_event_gets_ok_false_and_connection_survives() -> None:
    async with (
        Relay(limits=Limits(max_message_length=2000)) as relay,
        await Wire.open(relay.url) as wire,
    ):
        big = Event.create(Keys.generate(), 1, "x" * 3000)
        ok = await wire.publish(big)
        assert ok[2] is False and ok[3].startswith("invalid:") and "too large" in ok[3]
        # Multi-byte characters count as bytes: 700 characters, 2100 bytes.
        wide = Event.create(Keys.generate(), 1, "é" * 1000)
        assert (await wire.publish(wide))[2] is False
        small = Event.create(Keys.generate(), 1, "fine")
        assert (await wire.publish(small))[2] is True
        await wire.send(["REQ", "r", {"kinds": [1]}, *[{"#t": ["y" * 100]}] * 20])
        assert (await wire.next_of("CLOSED"))[2].startswith("invalid:")


async def test_frame_beyond_the_hard_limit_closes_with_1009() -> None:
    limits = Limits(max_message_length=1000, hard_frame_limit=10_000)
    async with Relay(limits=limits) as relay:
        async with connect(relay.url, max_size=None) as ws:
            await ws.send('["EVENT",' + json.dumps({"content": "x" * 20_000}) + "]")
            try:
                await ws.recv()
            except ConnectionClosed as exc:
                assert exc.rcvd is not None and exc.rcvd.code == 1009
            else:
                raise AssertionError("the relay kept a connection that sent a huge frame")
        assert relay.running
        async with await Wire.open(relay.url) as wire:  # still serving others
            assert (await wire.publish(Event.create(Keys.generate(), 1, "ok")))[2] is True


async def test_too_many_subscriptions_refused_with_closed() -> None:
    async with Relay(limits=Limits(max_subscriptions=2)) as relay, await Wire.open(relay.url) as w:
        assert (await w.req("a", {"kinds": [1]}))[1] == ["EOSE", "a"]
        assert (await w.req("b", {"kinds": [1]}))[1] == ["EOSE", "b"]
        _, end = await w.req("c", {"kinds": [1]})
        assert end[0] == "CLOSED" and end[2].startswith("rate-limited:")
        # Replacing an open one is fine, and closing one frees a slot.
        assert (await w.req("a", {"kinds": [7]}))[1] == ["EOSE", "a"]
        await w.send(["CLOSE", "b"])
        assert (await w.req("c", {"kinds": [1]}))[1] == ["EOSE", "c"]


async def test_too_many_filters_refused() -> None:
    async with Relay(limits=Limits(max_filters=3)) as relay, await Wire.open(relay.url) as w:
        _, end = await w.req("f", *[{"kinds": [i]} for i in range(4)])
        assert end[0] == "CLOSED" and end[2].startswith("invalid:") and "filters" in end[2]
        assert (await w.req("g", *[{"kinds": [i]} for i in range(3)]))[1][0] == "EOSE"


async def test_event_rate_per_connection() -> None:
    clock = [1_700_000_000.0]
    limits = Limits(event_rate=2, event_burst=3)
    async with (
        Relay(limits=limits, clock=lambda: clock[0]) as relay,
        await Wire.open(relay.url) as wire,
        await Wire.open(relay.url) as other,
    ):
        keys = Keys.generate()
        at = int(clock[0])
        results = [
            (await wire.publish(Event.create(keys, 1, str(i), created_at=at)))[2:] for i in range(5)
        ]
        assert [r[0] for r in results] == [True, True, True, False, False]
        assert results[3][1].startswith("rate-limited:")
        # Another connection has its own bucket; time refills this one.
        assert (await other.publish(Event.create(keys, 1, "other", created_at=at)))[2] is True
        clock[0] += 1.0
        refilled = [
            (await wire.publish(Event.create(keys, 1, f"r{i}", created_at=at)))[2] for i in range(3)
        ]
        assert refilled == [True, True, False]


async def test_subscription_id_length() -> None:
    async with Relay() as relay, await Wire.open(relay.url) as wire:
        _, end = await wire.req("x" * 65, {"kinds": [1]})
        assert end[0] == "CLOSED" and end[2].startswith("invalid:")
        _, end = await wire.req("", {"kinds": [1]})
        assert end[0] == "CLOSED"


async def test_tag_count_and_content_length() -> None:
    limits = Limits(max_event_tags=3, max_content_length=10)
    async with Relay(limits=limits) as relay, await Wire.open(relay.url) as wire:
        keys = Keys.generate()
        tags = await wire.publish(Event.create(keys, 1, "x", [["t", str(i)] for i in range(4)]))
        content = await wire.publish(Event.create(keys, 1, "ü" * 11))
        fine = await wire.publish(Event.create(keys, 1, "ü" * 10, [["t", "a"]] * 3))
    assert tags[2] is False and "tags" in tags[3]
    assert content[2] is False and "content" in content[3]
    assert fine[2] is True


async def test_default_and_max_limit_clamp_results() -> None:
    async with (
        Relay(limits=Limits(max_limit=5, default_limit=3)) as relay,
        await Wire.open(relay.url) as wire,
    ):
        keys = Keys.generate()
        for i in range(8):
            relay.inject(Event.create(keys, 1, str(i)))
        no_limit, _ = await wire.req("a", {"kinds": [1]})
        too_big, _ = await wire.req("b", {"kinds": [1], "limit": 100})
    assert len(no_limit) == 3 and len(too_big) == 5


async def test_values_per_filter_are_limited() -> None:
    async with Relay(limits=Limits(max_filter_values=5)) as relay, await Wire.open(relay.url) as w:
        authors = [f"{i:064x}" for i in range(4)]
        assert (await w.req("ok", {"authors": authors, "kinds": [1]}))[1] == ["EOSE", "ok"]
        _, end = await w.req("big", {"authors": authors, "kinds": [1, 2]})
        assert end[0] == "CLOSED" and end[2].startswith("invalid:") and "5 values" in end[2]
        _, end = await w.req("tags", {"#t": ["a", "b", "c", "d", "e", "f"]})
        assert end[0] == "CLOSED"
        assert relay.stats().subscriptions == 1


async def test_connections_are_limited_in_total_and_per_address() -> None:
    limits = Limits(max_connections=3, max_connections_per_ip=2)
    async with Relay(limits=limits) as relay:
        a, b = await Wire.open(relay.url), await Wire.open(relay.url)
        try:
            with pytest.raises(InvalidStatus) as refused:
                await Wire.open(relay.url)  # a third from 127.0.0.1
            assert refused.value.response.status_code == 503
            assert b"from your address" in refused.value.response.body
            await b.close()
            await relay.wait_connections(1)
            c = await Wire.open(relay.url)  # the slot is free again
            assert (await c.publish(Event.create(Keys.generate(), 1, "in")))[2] is True
            await c.close()
        finally:
            await a.close()
            await b.close()
    # The total counts too, whatever the per-address room.
    async with Relay(limits=Limits(max_connections=2, max_connections_per_ip=5)) as relay:
        wires = [await Wire.open(relay.url) for _ in range(2)]
        with pytest.raises(InvalidStatus) as refused:
            await Wire.open(relay.url)
        assert b"too many connections (max 2)" in refused.value.response.body
        for w in wires:
            await w.close()
        assert relay.stats().refused["rate-limited"] == 1
