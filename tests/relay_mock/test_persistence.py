"""SQLite persistence: events, replacements and deletions survive a restart of the relay."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from client.nostr.event import Event
from client.nostr.keys import Keys
from relay_mock import PersistenceError, Relay
from tests.support.wire import Wire


async def test_events_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    keys = Keys.generate()
    now = int(time.time())
    keep = Event.create(keys, 1, "keep ü")
    doomed = Event.create(keys, 1, "doomed")
    profile_old = Event.create(keys, 0, "old", created_at=now - 5)
    profile_new = Event.create(keys, 0, "new", created_at=now)
    deletion = Event.create(keys, 5, "", [["e", doomed.id]])
    ephemeral = Event.create(keys, 20000, "gone")
    async with Relay(db=db) as relay, await Wire.open(relay.url) as wire:
        for event in (keep, doomed, profile_old, profile_new, deletion, ephemeral):
            assert (await wire.publish(event))[2] is True
    async with Relay(db=db) as relay, await Wire.open(relay.url) as wire:
        events, _ = await wire.req("all", {"authors": [keys.public_key]})
        assert {e["id"] for e in events} == {keep.id, profile_new.id, deletion.id}
        again = await wire.publish(doomed)
        assert again[2] is False and again[3].startswith("blocked:")
        stored_raw = next(e for e in events if e["id"] == keep.id)
        assert stored_raw["content"] == "keep ü"


async def test_restart_in_place_keeps_the_database_in_use(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    keys = Keys.generate()
    async with Relay(db=db) as relay:
        relay.inject(Event.create(keys, 1, "one"))
        await relay.restart()
        relay.inject(Event.create(keys, 1, "two"))
    async with Relay(db=db) as relay:
        assert sorted(e.content for e in relay.stored_events()) == ["one", "two"]


async def test_expired_rows_are_dropped_on_load(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    clock = [1_700_000_000.0]
    keys = Keys.generate()
    at = int(clock[0])
    async with Relay(db=db, clock=lambda: clock[0]) as relay:
        relay.inject(Event.create(keys, 1, "brief", [["expiration", str(at + 5)]], created_at=at))
        relay.inject(Event.create(keys, 1, "lasting", created_at=at))
    clock[0] += 10
    async with Relay(db=db, clock=lambda: clock[0]) as relay:
        assert [e.content for e in relay.stored_events()] == ["lasting"]


async def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(PersistenceError):
        async with Relay(db=bogus):
            pass
