"""Fault switches, changed while the relay runs: latency, drops (seeded), disconnects, refused
kinds, stop and restart on the same port."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from client.nostr.event import Event
from client.nostr.keys import Keys
from relay_mock import Faults, Relay
from tests.support.wire import Wire


async def test_latency_delays_but_keeps_order(relay: Relay) -> None:
    keys = Keys.generate()
    events = [Event.create(keys, 1, str(i)) for i in range(10)]
    async with await Wire.open(relay.url) as wire:
        relay.faults.latency = 0.05
        for event in events[:5]:
            await wire.send('["EVENT",' + event.to_json() + "]")
        oks = [await wire.recv()]  # the others are (most likely) still queued behind it
        relay.faults.latency = 0.0  # switched off mid-queue: order must still hold
        for event in events[5:]:
            await wire.send('["EVENT",' + event.to_json() + "]")
        oks += [await wire.recv() for _ in events[1:]]
    assert [ok[1] for ok in oks] == [e.id for e in events]
    assert relay.stats().messages_delayed >= 1


async def _publish_all_then_eose(url: str, events: list[Event]) -> list[str]:
    """Publish without waiting, then REQ: the EOSE comes after every OK that was not dropped."""
    async with await Wire.open(url) as wire:
        for event in events:
            await wire.send('["EVENT",' + event.to_json() + "]")
        await wire.send(["REQ", "end", {"limit": 0}])
        acked: list[str] = []
        while (msg := await wire.recv())[0] != "EOSE":
            assert msg[0] == "OK"
            acked.append(msg[1])
    return acked


async def test_drop_rate_is_seeded_and_replayable() -> None:
    keys = Keys.generate()
    events = [Event.create(keys, 1, str(i)) for i in range(40)]
    runs = []
    for _ in range(2):
        faults = Faults(drop_rate=0.5, drop_verbs=frozenset({"OK"}))
        async with Relay(seed=1234, faults=faults) as relay:
            acked = await _publish_all_then_eose(relay.url, events)
            assert relay.stats().messages_dropped == len(events) - len(acked)
            assert relay.stats().stored_events == len(events)  # dropped replies, not events
        runs.append(acked)
    assert 0 < len(runs[0]) < len(events)
    assert runs[0] == runs[1]


async def test_drop_everything_then_recover(relay: Relay) -> None:
    keys = Keys.generate()
    relay.faults.drop_rate = 1.0
    relay.faults.drop_verbs = frozenset({"OK"})
    async with await Wire.open(relay.url) as wire:
        lost = Event.create(keys, 1, "lost reply")
        await wire.send('["EVENT",' + lost.to_json() + "]")
        await wire.send(["REQ", "after", {"limit": 0}])
        assert await wire.recv() == ["EOSE", "after"]  # the OK before it was dropped
        assert relay.stats().messages_dropped == 1
        relay.faults.reset()
        assert relay.faults == Faults()
        ok = await wire.publish(Event.create(keys, 1, "heard"))
        assert ok[2] is True
    assert relay.stats().messages_dropped == 1


@pytest.mark.parametrize("mode", ["close", "abort"])
async def test_disconnect_after_n_messages(relay: Relay, mode: str) -> None:
    relay.faults.disconnect_after = 3
    relay.faults.disconnect_mode = mode  # type: ignore[assignment]
    keys = Keys.generate()
    async with connect(relay.url) as ws:
        replies = []
        for i in range(3):
            event = Event.create(keys, 1, str(i))
            await ws.send('["EVENT",' + event.to_json() + "]")
        with pytest.raises(ConnectionClosed) as info:
            while True:
                replies.append(json.loads(await ws.recv()))
    if mode == "close":
        assert [r[0] for r in replies] == ["OK", "OK", "OK"]
        assert info.value.rcvd is not None and info.value.rcvd.code == 1011
    else:
        assert info.value.rcvd is None  # no close frame: the TCP connection was reset
    assert relay.stats().disconnects_forced == 1
    relay.faults.disconnect_after = None
    async with await Wire.open(relay.url) as wire:
        for i in range(5):
            assert (await wire.publish(Event.create(keys, 1, f"after {i}")))[2] is True


async def test_refuse_kinds_switched_on_and_off(relay: Relay) -> None:
    keys = Keys.generate()
    async with await Wire.open(relay.url) as wire:
        relay.faults.refuse_kinds = frozenset({7})
        assert (await wire.publish(Event.create(keys, 7, "+")))[3].startswith("blocked:")
        relay.faults.refuse_kinds = frozenset()
        assert (await wire.publish(Event.create(keys, 7, "+")))[2] is True


def test_fault_values_are_validated() -> None:
    faults = Faults()
    with pytest.raises(ValueError):
        faults.drop_rate = 1.5
    with pytest.raises(ValueError):
        faults.latency = -1


@pytest.mark.parametrize("abort", [False, True])
async def test_stop_and_restart_on_the_same_port(relay: Relay, abort: bool) -> None:
    keys = Keys.generate()
    url = relay.url
    kept = Event.create(keys, 1, "kept")
    async with connect(url) as ws:
        await ws.send('["EVENT",' + kept.to_json() + "]")
        assert json.loads(await ws.recv())[2] is True
        await relay.stop(abort=abort)
        assert not relay.running
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    with pytest.raises(OSError):
        async with connect(url, open_timeout=2):
            pass
    await relay.start()
    assert relay.url == url
    async with await Wire.open(url) as wire:
        events, _ = await wire.req("s", {"ids": [kept.id]})
    assert [e["id"] for e in events] == [kept.id]


async def test_disconnect_all_while_listening(relay: Relay) -> None:
    wires = [await Wire.open(relay.url) for _ in range(3)]
    assert await relay.disconnect_all() == 3
    for wire in wires:
        with pytest.raises(ConnectionClosed):
            await wire.ws.recv()
    await relay.wait_idle()
    async with await Wire.open(relay.url) as wire:
        assert (await wire.req("s", {}))[1] == ["EOSE", "s"]
