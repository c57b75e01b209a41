"""EVENT over a real websocket: validation, OK prefixes, storage by kind class, NIP-09, NIP-40."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from client.nostr.event import Event
from client.nostr.keys import Keys
from relay_mock import Faults, Relay
from tests.support.wire import Wire


def tampered(event: Event, **changes: Any) -> str:
    obj = event.to_dict()
    obj.update(changes)
    return json.dumps(["EVENT", obj])


@pytest.fixture
async def wire(relay: Relay):  # type: ignore[no-untyped-def]
    async with await Wire.open(relay.url) as w:
        yield w


async def test_valid_event_gets_ok_true_and_duplicate_prefix(wire: Wire) -> None:
    event = Event.create(Keys.generate(), 1, "héllo ünïcode 🌍")
    assert await wire.publish(event) == ["OK", event.id, True, ""]
    again = await wire.publish(event)
    assert again[2] is True and again[3].startswith("duplicate:")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"content": "changed"}, "id"),
        ({"sig": "00" * 64}, "signature"),
        ({"kind": "1"}, "kind"),
        ({"created_at": -5}, "created_at"),
        ({"created_at": 1.5}, "created_at"),
        ({"tags": [["e", 5]]}, "tag"),
        ({"tags": "x"}, "tags"),
        ({"content": None}, "content"),
        ({"pubkey": "AB" * 32}, "pubkey"),
        ({"pubkey": "ab" + " " * 60 + "cd"}, "pubkey"),
        ({"sig": "zz" * 64}, "sig"),
    ],
)
async def test_invalid_events_get_ok_false_invalid(
    wire: Wire, relay: Relay, changes: dict[str, Any], words: str
) -> None:
    event = Event.create(Keys.generate(), 1, "original")
    await wire.send(tampered(event, **changes))
    ok = await wire.next_of("OK")
    assert ok[:3] == ["OK", event.id, False]
    assert ok[3].startswith("invalid:") and words in ok[3]
    assert relay.stats().stored_events == 0


async def test_missing_field_is_invalid(wire: Wire) -> None:
    event = Event.create(Keys.generate(), 1, "x")
    obj = event.to_dict()
    del obj["sig"]
    await wire.send(["EVENT", obj])
    assert (await wire.next_of("OK"))[2:] == [False, "invalid: event lacks field 'sig'"]


async def test_event_text_is_stored_and_forwarded_as_received(wire: Wire, relay: Relay) -> None:
    event = Event.create(Keys.generate(), 1, "spaced out")
    # Different key order and whitespace than we would write: the relay must not re-encode.
    obj = event.to_dict()
    text = "{ " + ", ".join(f'"{k}": {json.dumps(obj[k])}' for k in reversed(list(obj))) + " }"
    await wire.send('[ "EVENT" , ' + text + " ]")
    assert (await wire.next_of("OK"))[2] is True
    await wire.send(["REQ", "r", {"ids": [event.id]}])
    raw = await wire.ws.recv()
    assert raw == '["EVENT","r",' + text + "]"


async def test_replaceable_over_the_wire(wire: Wire) -> None:
    keys = Keys.generate()
    now = int(time.time())
    first = Event.create(keys, 0, '{"name":"a"}', created_at=now - 10)
    second = Event.create(keys, 0, '{"name":"b"}', created_at=now)
    await wire.publish(first)
    await wire.publish(second)
    stale = await wire.publish(Event.create(keys, 0, '{"name":"old"}', created_at=now - 20))
    assert stale[3].startswith("duplicate:")
    events, _ = await wire.req("p", {"kinds": [0], "authors": [keys.public_key]})
    assert [e["id"] for e in events] == [second.id]


async def test_ephemeral_delivered_live_not_stored(relay: Relay) -> None:
    keys = Keys.generate()
    async with await Wire.open(relay.url) as sub, await Wire.open(relay.url) as pub:
        _, end = await sub.req("live", {"kinds": [20001]})
        assert end == ["EOSE", "live"]
        event = Event.create(keys, 20001, "now only")
        assert (await pub.publish(event))[2] is True
        got = await sub.next_of("EVENT")
        assert got[2]["id"] == event.id
        events, _ = await pub.req("later", {"kinds": [20001]})
    assert events == []
    assert relay.stats().stored_events == 0


async def test_auth_kind_is_never_relayed(wire: Wire) -> None:
    event = Event.create(Keys.generate(), 22242, "", [["challenge", "x"]])
    ok = await wire.publish(event)
    assert ok[2] is False and ok[3].startswith("invalid:")


async def test_deletion_by_author_over_the_wire(wire: Wire) -> None:
    author, stranger = Keys.generate(), Keys.generate()
    note = Event.create(author, 1, "regret")
    await wire.publish(note)
    forged = Event.create(stranger, 5, "", [["e", note.id]])
    await wire.publish(forged)
    events, _ = await wire.req("a", {"ids": [note.id]})
    assert len(events) == 1
    deletion = Event.create(author, 5, "oops", [["e", note.id], ["k", "1"]])
    assert (await wire.publish(deletion))[2] is True
    events, _ = await wire.req("b", {"ids": [note.id]})
    assert events == []
    again = await wire.publish(note)
    assert again[2] is False and again[3].startswith("blocked:")


async def test_a_strangers_deletion_before_the_event_does_not_spoil_the_authors(
    wire: Wire,
) -> None:
    """NIP-09 by arrival order: stranger's deletion, then the author's, then the event (late, e.g.
    from another relay): refused; and nobody is served it."""
    author, stranger = Keys.generate(), Keys.generate()
    note = Event.create(author, 1, "late")
    assert (await wire.publish(Event.create(stranger, 5, "", [["e", note.id]])))[2] is True
    assert (await wire.publish(Event.create(author, 5, "", [["e", note.id]])))[2] is True
    ok = await wire.publish(note)
    assert ok[2] is False and ok[3].startswith("blocked:")
    assert (await wire.req("q", {"ids": [note.id]}))[0] == []


async def test_expired_event_refused_and_expiring_event_hidden_later() -> None:
    clock = [1_700_000_000.0]
    async with Relay(clock=lambda: clock[0]) as relay, await Wire.open(relay.url) as wire:
        keys = Keys.generate()
        now = int(clock[0])
        expired = Event.create(keys, 1, "x", [["expiration", str(now - 1)]], created_at=now)
        ok = await wire.publish(expired)
        assert ok[2] is False and "expired" in ok[3]
        soon = Event.create(keys, 1, "y", [["expiration", str(now + 60)]], created_at=now)
        assert (await wire.publish(soon))[2] is True
        events, _ = await wire.req("a", {"authors": [keys.public_key]})
        assert [e["id"] for e in events] == [soon.id]
        clock[0] += 61
        events, _ = await wire.req("b", {"authors": [keys.public_key]})
        assert events == []
        assert relay.stats().stored_events == 0  # purged, not only hidden


async def test_refused_kind_gets_blocked(relay: Relay, wire: Wire) -> None:
    relay.faults.refuse_kinds = frozenset({5050})
    ok = await wire.publish(Event.create(Keys.generate(), 5050, "job"))
    assert ok[2] is False and ok[3].startswith("blocked:")
    assert (await wire.publish(Event.create(Keys.generate(), 1, "fine")))[2] is True


async def test_restricted_writes_by_pubkey() -> None:
    allowed, other = Keys.generate(), Keys.generate()
    async with (
        Relay(allowed_pubkeys=[allowed.public_key], faults=Faults()) as relay,
        await Wire.open(relay.url) as wire,
    ):
        assert (await wire.publish(Event.create(allowed, 1, "ok")))[2] is True
        ok = await wire.publish(Event.create(other, 1, "no"))
        assert ok[2] is False and ok[3].startswith("restricted:")


async def test_created_at_limits() -> None:
    from relay_mock import Limits

    clock = 1_700_000_000
    limits = Limits(created_at_lower_limit=3600, created_at_upper_limit=60)
    async with (
        Relay(limits=limits, clock=lambda: clock) as relay,
        await Wire.open(relay.url) as wire,
    ):
        keys = Keys.generate()
        old = await wire.publish(Event.create(keys, 1, "old", created_at=clock - 7200))
        future = await wire.publish(Event.create(keys, 1, "future", created_at=clock + 600))
        fine = await wire.publish(Event.create(keys, 1, "fine", created_at=clock - 10))
    assert old[2] is False and "past" in old[3]
    assert future[2] is False and "future" in future[3]
    assert fine[2] is True


async def test_inject_and_stored_events(relay: Relay) -> None:
    keys = Keys.generate()
    event = Event.create(keys, 1, "seeded")
    assert relay.inject(event) == (True, "")
    assert [e.id for e in relay.stored_events()] == [event.id]
    async with await Wire.open(relay.url) as wire:
        events, _ = await wire.req("s", {"kinds": [1]})
    assert events[0]["id"] == event.id
