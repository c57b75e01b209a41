"""The live-subscription index: an event is matched only against the filters that could want it."""

from __future__ import annotations

import json
import os
import random

import pytest

from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from relay_mock import Limits, Relay
from relay_mock.core import RelayCore
from relay_mock.record import Record, parse_record
from relay_mock.subscriptions import LiveIndex, Subscription
from tests.support.wire import Wire

NOW = 1_700_000_000.0


def rec(event: Event) -> Record:
    raw = event.to_json()
    return parse_record(json.loads(raw), raw)


def junk_filter(rng: random.Random, i: int) -> dict[str, object]:
    """A filter that names no kind and matches nothing honest, in the shapes abusers use."""
    hexes = [rng.randbytes(32).hex() for _ in range(3)]
    shapes: list[dict[str, object]] = [
        {"authors": hexes},
        {"ids": hexes},
        {"#e": hexes},
        {"#p": hexes[:1], "since": 1},
        {"#t": [f"never-{i}-{j}" for j in range(3)]},
        {"#d": [f"nothing-{i}"], "limit": 0},
    ]
    return shapes[i % len(shapes)]


def idle_req(rng: random.Random, sub: int, n_filters: int) -> str:
    filters = [junk_filter(rng, sub * 100 + j) for j in range(n_filters)]
    return json.dumps(["REQ", f"idle{sub}", *filters])


def test_each_field_is_indexed_and_a_match_is_reported_once() -> None:
    index = LiveIndex()
    k = Keys.generate()
    ev = Event.create(k, 7, "x", [["t", "news"], ["t", "news"], ["e", "a" * 64]], created_at=1)
    subs = {
        name: Subscription(None, name, filters)
        for name, filters in {
            "id": (Filter(ids=[ev.id]),),
            "author": (Filter(authors=[k.public_key]),),
            "tag": (Filter(tags={"t": ["news", "other"]}, kinds=[1, 7]),),
            "kind": (Filter(kinds=[7]),),
            "residue": (Filter(since=1),),
            "two_filters": (Filter(kinds=[7]), Filter(tags={"e": ["a" * 64]})),
            "wrong_kind": (Filter(tags={"t": ["news"]}, kinds=[1]),),
            "empty": (Filter(authors=[]),),
        }.items()
    }
    for sub in subs.values():
        index.add(sub)
    assert index.residue == 1 and len(index) == len(subs)
    got = [s.sub_id for s in index.matching(rec(ev))]
    assert sorted(got) == sorted(["id", "author", "tag", "kind", "residue", "two_filters"])
    for sub in subs.values():
        index.remove(sub)
    assert len(index) == 0 and index.filters == 0 and index.residue == 0
    assert index.matching(rec(ev)) == [] and index.last_checks == 0
    assert index.buckets() == 0  # nothing left behind once every subscription is gone


def test_many_idle_filters_are_not_checked_per_event() -> None:
    """20 abusive connections x 50 subscriptions x 20 filters without kinds: an honest event is
    matched against the one filter that wants it, not 20,000."""
    core = RelayCore(limits=Limits(max_subscriptions=50))
    rng = random.Random(1)
    for _ in range(20):
        peer = core.connect(lambda text: None, NOW)
        for sub in range(50):
            core.handle(peer, idle_req(rng, sub, 20), NOW)
    assert core.live.filters == 20 * 50 * 20 and core.live.residue == 0
    got: list[str] = []
    reader = core.connect(got.append, NOW)
    core.handle(reader, json.dumps(["REQ", "honest", {"kinds": [1]}]), NOW)
    writer = core.connect(lambda text: None, NOW)
    keys = Keys.generate()
    for i in range(20):
        ev = Event.create(
            keys, 1, f"honest {i}", [["t", "chat"], ["p", keys.public_key]], created_at=int(NOW)
        )
        core.handle(writer, '["EVENT",' + ev.to_json() + "]", NOW)
        assert core.live.last_checks <= 2
    assert sum(m.startswith('["EVENT","honest"') for m in got) == 20


async def test_idle_filters_over_websockets_cost_publishing_few_checks() -> None:
    rng = random.Random(2)
    async with Relay() as relay:
        idlers = [await Wire.open(relay.url) for _ in range(3)]
        try:
            for wire in idlers:
                for sub in range(50):
                    await wire.send(idle_req(rng, sub, 20))
                for _ in range(50):
                    await wire.next_of("EOSE")
            assert relay.stats().live_filters == 3 * 50 * 20
            async with await Wire.open(relay.url) as reader, await Wire.open(relay.url) as pub:
                await reader.req("live", {"kinds": [1], "#t": ["chat"]})
                before = relay.stats().filters_checked
                keys = Keys.generate()
                for i in range(10):
                    ev = Event.create(keys, 1, f"hi {i}", [["t", "chat"]])
                    assert (await pub.publish(ev))[2] is True
                    assert (await reader.next_of("EVENT"))[2]["id"] == ev.id
                assert relay.stats().filters_checked - before <= 10
        finally:
            for wire in idlers:
                await wire.close()


@pytest.mark.slow
async def test_150_connections_of_idle_filters() -> None:
    """The issue's case at full size: 150 x 50 x 20 = 150,000 live filters without kinds."""
    rng = random.Random(3)
    n = int(os.environ.get("IDLE_CONNECTIONS", "150"))
    async with Relay() as relay:
        idlers = [await Wire.open(relay.url) for _ in range(n)]
        try:
            for wire in idlers:
                for sub in range(50):
                    await wire.send(idle_req(rng, sub, 20))
            for wire in idlers:
                for _ in range(50):
                    await wire.next_of("EOSE", wait=60)
            assert relay.stats().live_filters == n * 50 * 20
            async with await Wire.open(relay.url) as reader, await Wire.open(relay.url) as pub:
                await reader.req("live", {"kinds": [1]})
                before = relay.stats().filters_checked
                keys = Keys.generate()
                for i in range(100):
                    assert (await pub.publish(Event.create(keys, 1, f"x{i}")))[2] is True
                    await reader.next_of("EVENT")
                assert relay.stats().filters_checked - before <= 100
        finally:
            for wire in idlers:
                await wire.close()
