"""Stored results under flow control: they go out as the reader drains, within a bounded buffer
per connection; a live subscriber that falls too far behind gets CLOSED with a reason."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from client.nostr.event import Event
from client.nostr.keys import Keys
from relay_mock import Limits, Relay
from relay_mock.core import RelayCore
from tests.support.wire import Wire

NOW = 1_700_000_000


def rss() -> int:
    """This process's resident memory in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def fill(relay: Relay, n: int, size: int, kind: int = 1) -> list[str]:
    """Store ``n`` events of ``size`` bytes of content; their ids, newest first."""
    keys = Keys.generate()
    ids = []
    for i in range(n):
        ev = Event.create(keys, kind, f"{i:06d}" + "x" * size, created_at=NOW + i)
        assert relay.inject(ev)[0]
        ids.append(ev.id)
    return ids[::-1]


def test_core_paces_stored_results_and_holds_live_events_until_eose() -> None:
    """Pure: with the peer's buffer full nothing more goes out; as it is read, the rest, then
    EOSE, then the live event that arrived meanwhile."""
    core = RelayCore(limits=Limits(max_write_buffer=40_000))
    out: list[str] = []
    unread = [0]

    def send(text: str) -> None:
        out.append(text)
        unread[0] += len(text)

    reader = core.connect(send, NOW, buffered=lambda: unread[0])
    keys = Keys.generate()
    stored = [Event.create(keys, 1, f"{i} " + "y" * 5000, created_at=NOW + i) for i in range(20)]
    writer = core.connect(lambda text: None, NOW)
    for ev in stored:
        core.handle(writer, '["EVENT",' + ev.to_json() + "]", NOW)
    core.handle(reader, json.dumps(["REQ", "s", {"kinds": [1]}]), NOW)
    first = len(out)
    assert 0 < first < 20 and reader.backlog  # about half the buffer, then it waits
    assert not core.pump(reader, NOW) or len(out) == first  # still unread: nothing more
    live = Event.create(keys, 1, "live", created_at=NOW + 100)
    core.handle(writer, '["EVENT",' + live.to_json() + "]", NOW)
    assert len(out) == first  # held back, not sent before the stored ones
    while reader.backlog:
        unread[0] = 0  # the client reads everything sent so far
        core.pump(reader, NOW)
    msgs = [json.loads(m) for m in out]
    ids = [m[2]["id"] for m in msgs if m[0] == "EVENT"]
    assert ids[:-1] == [ev.id for ev in reversed(stored)]
    assert [m[0] for m in msgs[-2:]] == ["EOSE", "EVENT"] and ids[-1] == live.id


def test_core_drops_results_deleted_while_they_wait() -> None:
    core = RelayCore(limits=Limits(max_write_buffer=20_000))
    out: list[str] = []
    unread = [0]

    def send(text: str) -> None:
        out.append(text)
        unread[0] += len(text)

    reader = core.connect(send, NOW, buffered=lambda: unread[0])
    writer = core.connect(lambda text: None, NOW)
    keys = Keys.generate()
    stored = [Event.create(keys, 1, "z" * 4000, created_at=NOW + i) for i in range(10)]
    for ev in stored:
        core.handle(writer, '["EVENT",' + ev.to_json() + "]", NOW)
    core.handle(reader, json.dumps(["REQ", "s", {"kinds": [1]}]), NOW)
    oldest = stored[0]
    deletion = Event.create(keys, 5, "", [["e", oldest.id]], created_at=NOW + 20)
    core.handle(writer, '["EVENT",' + deletion.to_json() + "]", NOW)
    while reader.backlog:
        unread[0] = 0
        core.pump(reader, NOW)
    ids = [json.loads(m)[2]["id"] for m in out if m.startswith('["EVENT"')]
    assert oldest.id not in ids and len(ids) == 9


async def test_a_result_far_larger_than_the_buffer_reaches_a_reader() -> None:
    async with Relay(limits=Limits(max_write_buffer=512 * 1024)) as relay:
        ids = fill(relay, 80, 100_000)  # 8 MB of stored results, 16x the buffer
        async with await Wire.open(relay.url) as wire:
            events, end = await wire.req("all", {"kinds": [1]})
            assert end == ["EOSE", "all"]
            assert [e["id"] for e in events] == ids
            # Still a working connection afterwards.
            assert (await wire.publish(Event.create(Keys.generate(), 1, "after")))[2] is True


async def non_reader(url: str) -> ClientConnection:
    # max_queue=1: the client library buffers little, so what waits is on the relay's side.
    return await connect(url, compression=None, max_size=None, max_queue=1)


async def test_clients_that_never_read_cost_bounded_memory() -> None:
    """10 clients, 2 REQs each for 6 MB of stored events, then they stop reading: the relay holds
    about max_write_buffer per connection, not the results."""
    limit = 512 * 1024
    async with Relay(limits=Limits(max_write_buffer=limit)) as relay:
        ids = fill(relay, 60, 100_000)
        async with await Wire.open(relay.url) as warm:  # allocator and code paths warmed up
            assert len((await warm.req("w", {"kinds": [1]}))[0]) == 60
        base = rss()
        clients = [await non_reader(relay.url) for _ in range(10)]
        try:
            for ws in clients:
                await ws.send(json.dumps(["REQ", "a", {"kinds": [1]}]))
                await ws.send(json.dumps(["REQ", "b", {"kinds": [1]}]))
            for ws in clients:  # each has been answered, then reads no more
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))[0] == "EVENT"
            grown = rss() - base
            # Unbounded, this would be 10 x 2 x 6 MB = 120 MB.
            assert grown < 10 * limit + 24 * 1024 * 1024, grown
            assert relay.stats().connections == 10 and relay.stats().subscriptions == 20
            # Once one reads, it gets everything, in order, for both subscriptions.
            ws = clients[0]
            got: dict[str, list[str]] = {"a": [ids[0]], "b": []}
            ends = set()
            while len(ends) < 2:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if msg[0] == "EVENT":
                    got[msg[1]].append(msg[2]["id"])
                else:
                    assert msg[0] == "EOSE"
                    ends.add(msg[1])
            assert got == {"a": ids, "b": ids}
        finally:
            for ws in clients:
                ws.transport.abort()
        await relay.wait_idle()


async def test_a_live_subscriber_that_falls_behind_gets_closed_with_a_reason() -> None:
    limit = 256 * 1024
    async with Relay(limits=Limits(max_write_buffer=limit)) as relay:
        slow = await non_reader(relay.url)
        try:
            await slow.send(json.dumps(["REQ", "live", {"kinds": [1]}]))
            assert json.loads(await asyncio.wait_for(slow.recv(), 5)) == ["EOSE", "live"]
            keys = Keys.generate()
            sent = 0
            async with await Wire.open(relay.url) as pub:
                # Until the relay gives up on it: its output beyond the kernel's socket buffers
                # passes the limit. Each OK arrives after the event was forwarded.
                while relay.stats().subscriptions and sent < 2000:
                    ok = await pub.publish(Event.create(keys, 1, f"{sent} " + "w" * 60_000))
                    assert ok[2] is True
                    sent += 1
            assert relay.stats().subscriptions == 0, "the slow subscription was never closed"
            assert relay.stats().refused.get("error") == 1
            received = 0
            while True:
                msg = json.loads(await asyncio.wait_for(slow.recv(), 10))
                if msg[0] != "EVENT":
                    break
                received += 1
            assert msg[:2] == ["CLOSED", "live"] and msg[2].startswith("error: slow consumer")
            assert 0 < received < sent
            # The connection itself stays usable.
            await slow.send(json.dumps(["REQ", "again", {"kinds": [1], "limit": 1}]))
            assert json.loads(await asyncio.wait_for(slow.recv(), 5))[0] == "EVENT"
        finally:
            slow.transport.abort()  # its queue is full: a close handshake would wait it out


@pytest.mark.slow
async def test_the_issue_sizes_400_events_of_120_kb() -> None:
    """Full size, default limits: a fast reader gets all 400; 10 non-readers stay bounded."""
    async with Relay() as relay:
        ids = fill(relay, 400, 120_000)
        async with await Wire.open(relay.url) as wire:
            events, end = await wire.req("all", {"kinds": [1]})
            assert end == ["EOSE", "all"] and [e["id"] for e in events] == ids
        base = rss()
        n = int(os.environ.get("NON_READERS", "10"))
        clients = [await non_reader(relay.url) for _ in range(n)]
        try:
            for ws in clients:
                await ws.send(json.dumps(["REQ", "a", {"kinds": [1]}]))
                await ws.send(json.dumps(["REQ", "b", {"kinds": [1]}]))
            for ws in clients:
                assert json.loads(await asyncio.wait_for(ws.recv(), 30))[0] == "EVENT"
            grown = rss() - base
            assert grown < n * relay.limits.max_write_buffer + 32 * 1024 * 1024, grown
        finally:
            for ws in clients:
                ws.transport.abort()
