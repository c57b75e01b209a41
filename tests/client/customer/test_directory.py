"""The provider directory: announcements parsed as the provider writes them, newest wins,
heartbeats expire on the injected clock, and the live watcher over relay_mock."""

from __future__ import annotations

import asyncio
import json

import pytest

from client.customer.directory import (
    DirectoryWatcher,
    PriceList,
    ProviderDirectory,
    discover,
    parse_announcement,
)
from client.net.pool import RelayPool
from client.nostr.errors import InvalidAnnouncement
from client.nostr.event import Event
from client.nostr.keys import Keys
from provider.announce import is_alive
from relay_mock import Relay
from tests.support.announcements import FakeClock, announcement

A, B, C = Keys.generate(), Keys.generate(), Keys.generate()


def test_parse_reads_what_the_provider_announces() -> None:
    ev = announcement(A, 1000, lud16="node@example.com")
    info = parse_announcement(ev)
    assert info.pubkey == A.public_key and info.npub == A.npub
    assert info.models == ("llama3", "phi3") and info.payment == "after"
    assert info.price == PriceList(1000, 3000, 2000)
    assert info.price_for("phi3") == PriceList(0, 1000, 500)
    assert info.price_for("llama3") == info.price
    assert info.encryption == ("nip44", "nip04") and info.supports_encryption("nip44")
    assert info.sealed_results == ("nip44",) and info.commit_reveal == ("sha256",)
    assert info.max_tokens == 2048 and info.max_prompt_chars == 32000
    assert info.heartbeat_s == 120 and info.expiration == 1000 + 360
    assert info.swarm and info.profile == "nostr-swarm/1" and info.lud16 == "node@example.com"
    assert info.last_seen == 1000
    # Same quote formula as the provider: 400 prompt tokens and 100 completion tokens.
    assert info.quote_msats("llama3", 400, 100) == max(2000, 400 + 300)
    assert info.quote_msats("phi3", 0, 1000) == 1000
    assert info.serves("llama3") and info.serves(None) and not info.serves("mistral")


def test_free_provider_is_free() -> None:
    info = parse_announcement(announcement(A, 1000, payment="free"))
    assert info.payment == "free" and info.is_free
    assert info.quote_msats("llama3", 10_000, 10_000) == 0


@pytest.mark.parametrize("age", [0, 100, 299, 300])
def test_alive_rule_matches_the_providers(age: int) -> None:
    ev = announcement(A, 1000)
    info = parse_announcement(ev)
    assert info.alive(1000 + age) == is_alive(ev, 1000 + age)


def test_status_online_stale_offline_expired() -> None:
    info = parse_announcement(announcement(A, 1000, heartbeat_s=30))
    assert info.status(1000) == "online"
    assert info.status(1000 + 89) == "online"
    assert info.status(1000 + 90) == "expired"  # NIP-40 expiration (3 beats) comes first
    long = parse_announcement(announcement(A, 1000))
    assert long.status(1000 + 301) == "stale" and not long.alive(1000 + 301)
    off = parse_announcement(announcement(A, 1000, online=False))
    assert off.status(1000) == "offline" and not off.alive(1000)


def test_foreign_dvm_announcement_is_read_leniently() -> None:
    content = {
        "name": "other dvm",
        "amount": "21",
        "supportsEncryption": True,
        "nip90Params": {"model": {"values": ["gpt-x"]}},
    }
    ev = Event.create(A, 31990, json.dumps(content), [["d", "x"], ["k", "5050"]], created_at=5)
    info = parse_announcement(ev)
    assert info.name == "other dvm" and info.models == ("gpt-x",) and not info.swarm
    assert info.price == PriceList(min_msats=21_000) and info.encryption == ("nip44", "nip04")
    assert info.foreign and info.status(5) == "online"  # a fresh announcement is a sign of life
    # No heartbeat tag and no kind-11998 beat: once the announcement is old, liveness is unknown.
    assert info.status(5 + 661) == "unknown" and not info.alive(5 + 661)


@pytest.mark.parametrize(
    ("kind", "tags", "content"),
    [
        (1, [["k", "5050"]], "{}"),
        (31990, [["k", "5300"]], "{}"),
        (31990, [["k", "5050"]], "not json"),
        (31990, [["k", "5050"]], "[1, 2]"),
        (31990, [["k", "5050"]], '{"nostrSwarm": 3}'),
        (31990, [["k", "5050"]], '{"nostrSwarm": {"models": "llama3"}}'),
        (31990, [["k", "5050"]], '{"nostrSwarm": {"pricing": {"minMsats": -1}}}'),
        (31990, [["k", "5050"]], '{"nostrSwarm": {"pricing": {"minMsats": "lots"}}}'),
        (31990, [["k", "5050"], ["heartbeat", "soon"]], "{}"),
    ],
)
def test_bad_announcements_are_refused(kind: int, tags: list[list[str]], content: str) -> None:
    ev = Event.create(A, kind, content, tags, created_at=5)
    with pytest.raises(InvalidAnnouncement):
        parse_announcement(ev)
    directory = ProviderDirectory(clock=FakeClock(5))
    assert directory.offer(ev) is None and directory.rejected == 1 and len(directory) == 0


def test_newest_announcement_wins_and_older_ones_change_nothing() -> None:
    clock = FakeClock(1000)
    d = ProviderDirectory(clock=clock)
    first = announcement(A, 1000)
    update = announcement(A, 1010, models=("mistral",))
    assert d.offer(first) is not None
    assert d.offer(update) is not None
    info = d.get(A.public_key)
    assert info is not None and info.models == ("mistral",)
    assert d.offer(first) is None and d.superseded == 1  # arrived late from another relay
    assert d.get(A.public_key).models == ("mistral",)  # type: ignore[union-attr]
    # A tie on created_at: the lower id wins, whatever the arrival order.
    x, y = announcement(B, 1000, name="x"), announcement(B, 1000, name="y")
    low, high = sorted([x, y], key=lambda e: e.id)
    d.offer(high)
    d.offer(low)
    d.offer(high)
    assert d.get(B.public_key).event_id == low.id  # type: ignore[union-attr]


def test_heartbeats_expire_on_the_clock_and_offline_goes_at_once() -> None:
    clock = FakeClock(1000)
    d = ProviderDirectory(clock=clock)
    d.offer(announcement(A, 1000))
    d.offer(announcement(B, 1000))
    assert {i.pubkey for i in d.alive()} == {A.public_key, B.public_key}
    clock.advance(200)
    d.offer(announcement(A, 1200))  # A beats, B misses
    clock.advance(101)  # 301 s after B's last beat: two beats missed plus slack
    assert d.alive_keys() == [A.public_key]
    assert d.status(B.public_key) == "stale"
    d.offer(announcement(A, 1302, online=False))
    assert d.alive() == [] and d.status(A.public_key) == "offline"
    clock.advance(100)  # B's expiration (3 beats) passed: pruned; A is only offline
    assert d.prune() == 1 and B.public_key not in d and A.public_key in d
    clock.advance(2 * 86400)
    assert d.prune() == 1 and len(d) == 0


def test_alive_by_model_and_swarm_only() -> None:
    d = ProviderDirectory(clock=FakeClock(1000), swarm_only=True)
    d.offer(announcement(A, 1000, models=("llama3",)))
    d.offer(announcement(B, 1000, models=("phi3",)))
    foreign = Event.create(C, 31990, "{}", [["k", "5050"], ["heartbeat", "60"]], created_at=1000)
    assert d.offer(foreign) is None and C.public_key not in d
    assert d.alive_keys("llama3") == [A.public_key]
    assert d.alive_keys("llama3:latest") == []
    assert set(d.alive_keys()) == {A.public_key, B.public_key}


async def publish_as(relay: Relay, keys: Keys, *events: Event) -> None:
    async with RelayPool([relay.url], keys=keys) as pool:
        for ev in events:
            await pool.publish(ev)


async def test_discover_reads_stored_announcements_from_the_relay(relay: Relay) -> None:
    clock = FakeClock()
    now = int(clock.now)
    await publish_as(relay, A, announcement(A, now - 10))
    await publish_as(relay, B, announcement(B, now - 350))  # missed two beats, not yet expired
    await publish_as(relay, C, announcement(C, now - 5, payment="free"))
    async with RelayPool([relay.url]) as pool:
        d = await discover(pool, clock=clock)
    assert len(d) == 3 and d.status(B.public_key) == "stale"
    assert set(d.alive_keys()) == {A.public_key, C.public_key}
    assert d.get(C.public_key).is_free  # type: ignore[union-attr]


async def test_watcher_follows_updates_heartbeats_and_shutdowns(relay: Relay) -> None:
    clock = FakeClock()
    now = int(clock.now)
    d = ProviderDirectory(clock=clock)
    async with (
        RelayPool([relay.url], keys=A) as a_pool,
        RelayPool([relay.url]) as customer,
    ):
        await a_pool.publish(announcement(A, now))
        async with DirectoryWatcher(customer, d) as watcher:
            assert d.alive_keys() == [A.public_key]  # stored: there before the watcher returned
            # An update (new models) replaces the entry live.
            await a_pool.publish(announcement(A, now + 1, models=("mistral",)))
            await asyncio.wait_for(
                watcher.wait_for(lambda dd: dd.get(A.public_key).models == ("mistral",)), 5
            )
            # The heartbeat keeps it alive as time passes; silence does not.
            clock.advance(250)
            await a_pool.publish(announcement(A, now + 250, models=("mistral",)))
            await asyncio.wait_for(
                watcher.wait_for(lambda dd: dd.get(A.public_key).created_at == now + 250), 5
            )
            clock.advance(250)
            assert d.alive_keys() == [A.public_key]
            clock.advance(100)
            assert d.alive_keys() == []
            # A graceful shutdown is seen at once.
            await a_pool.publish(announcement(A, now + 600, online=False, models=("mistral",)))
            await asyncio.wait_for(
                watcher.wait_for(lambda dd: dd.status(A.public_key) == "offline"), 5
            )
