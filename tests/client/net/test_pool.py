"""RelayPool over real websockets: relay_mock, a scripted relay for what relay_mock refuses,
dead and silent relays, restarts, CLOSED, NOTICE, AUTH and bounded queues."""

from __future__ import annotations

import asyncio
import json

import pytest

from client.net.pool import RelayPool
from client.net.relay import auth_event, backoff_delay, resubscribe_filters
from client.nostr.errors import PublishError, RelayError
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from relay_mock import Relay
from tests.support.scripted import ScriptedRelay, dead_url, silent_server

KEYS = Keys.generate()


def note(text: str, keys: Keys = KEYS, created_at: int | None = None) -> Event:
    return Event.create(keys, 1, text, [["t", "pooltest"]], created_at=created_at)


FILTER = Filter(kinds=[1], tags={"t": ["pooltest"]})


async def next_event(sub: object) -> Event:
    return await asyncio.wait_for(sub.__anext__(), 5)  # type: ignore[attr-defined]


# --- pure helpers ------------------------------------------------------------------------


def test_backoff_delay_grows_caps_and_jitters() -> None:
    assert backoff_delay(0, base=1, cap=60, rand=lambda: 0.0) == 0.5
    assert backoff_delay(0, base=1, cap=60, rand=lambda: 1.0) == 1.0
    assert backoff_delay(3, base=1, cap=60, rand=lambda: 1.0) == 8.0
    assert backoff_delay(50, base=1, cap=60, rand=lambda: 1.0) == 60.0
    assert backoff_delay(50, base=1, cap=60, rand=lambda: 0.0) == 30.0


def test_resubscribe_filters_use_since_before_last_seen() -> None:
    f = Filter(kinds=[1])
    (g,) = resubscribe_filters((f,), 1000, 500, 30)
    assert g.since == 970 and g.kinds == f.kinds
    (h,) = resubscribe_filters((f,), None, 500, 30)
    assert h.since == 470
    (k,) = resubscribe_filters((Filter(kinds=[1], since=990),), 1000, 500, 30)
    assert k.since == 990  # never earlier than the caller's own since


def test_auth_event_shape() -> None:
    ev = auth_event(KEYS, "ws://r", "abc")
    assert ev.kind == 22242 and ev.verify()
    assert ["relay", "ws://r"] in ev.tags and ["challenge", "abc"] in ev.tags


# --- one relay ---------------------------------------------------------------------------


async def test_publish_and_subscribe_round_trip(relay: Relay) -> None:
    async with RelayPool([relay.url]) as pool:
        async with pool.subscribe(FILTER) as sub:
            ev = note("hello")
            results = await pool.publish(ev)
            assert results == {relay.url: (True, "")}
            got = await next_event(sub)
            assert got == ev
        assert pool.status()[relay.url].state == "connected"


async def test_publish_refused_raises_with_each_relay_answer(relay: Relay) -> None:
    relay.faults.refuse_kinds = frozenset({1})
    async with RelayPool([relay.url]) as pool:
        with pytest.raises(PublishError) as exc:
            await pool.publish(note("no"))
        ok, msg = exc.value.results[relay.url]
        assert not ok and msg.startswith("blocked:")


async def test_wait_eose_then_stored_events(relay: Relay) -> None:
    old = note("stored")
    assert relay.inject(old)[0]
    async with RelayPool([relay.url]) as pool:
        sub = pool.subscribe(FILTER)
        assert await next_event(sub) == old
        await asyncio.wait_for(sub.wait_eose(), 5)
        sub.close()
        with pytest.raises(StopAsyncIteration):  # closed: iteration ends
            await sub.__anext__()


async def test_subscription_closed_by_relay_ends_iteration(relay: Relay) -> None:
    async with RelayPool([relay.url]) as pool:
        sub = pool.subscribe(FILTER)
        await asyncio.wait_for(sub.wait_eose(), 5)
        assert relay.close_subscriptions("error: shutting down") == 1
        with pytest.raises(RelayError, match="shutting down"):
            await next_event(sub)
        assert sub.closed_by == {relay.url: "error: shutting down"}


async def test_relay_restart_resubscribes_without_loss_or_repeat(relay: Relay) -> None:
    async with RelayPool([relay.url], backoff_min=0.05, backoff_max=0.1) as pool:
        conn = pool.relays[0]
        sub = pool.subscribe(FILTER)
        before = note("before")
        await pool.publish(before)
        assert await next_event(sub) == before
        await relay.stop()
        await asyncio.wait_for(conn.disconnected.wait(), 5)
        # Published while we were away: only the re-subscription can bring it.
        missed = note("while away")
        assert relay.inject(missed)[0]
        await relay.start()
        await asyncio.wait_for(conn.wait_connects(2), 5)
        assert await next_event(sub) == missed
        after = note("after")
        await pool.publish(after)
        assert await next_event(sub) == after
        assert sub.duplicates >= 1  # "before" came again with the since-based REQ, dropped
        assert sub.get_nowait() is None


async def test_publish_waits_for_a_reconnecting_relay(relay: Relay) -> None:
    async with RelayPool([relay.url], backoff_min=0.05, backoff_max=0.1) as pool:
        conn = pool.relays[0]
        await relay.stop()
        await asyncio.wait_for(conn.disconnected.wait(), 5)
        task = asyncio.create_task(pool.publish(note("late"), ok_timeout=5))
        await relay.start()
        results = await asyncio.wait_for(task, 10)
        assert results[relay.url][0]


# --- several relays ----------------------------------------------------------------------


async def test_two_relays_deduplicate() -> None:
    async with Relay() as r1, Relay() as r2, RelayPool([r1.url, r2.url]) as pool:
        sub = pool.subscribe(FILTER)
        ev = note("both")
        results = await pool.publish(ev, wait_all=True)
        assert results == {r1.url: (True, ""), r2.url: (True, "")}
        assert await next_event(sub) == ev
        marker = note("marker")
        await pool.publish(marker, wait_all=True)
        assert await next_event(sub) == marker
        assert sub.duplicates >= 1 and sub.get_nowait() in (None, marker)


async def test_dead_relay_does_not_block_the_pool(relay: Relay) -> None:
    dead = dead_url()
    async with RelayPool([dead, relay.url], connect_timeout=1.0, backoff_min=0.05) as pool:
        assert pool.connected_urls() == [relay.url]
        status = pool.status()[dead]
        assert status.state in ("backoff", "connecting") and status.failures >= 1
        assert "Error" in status.last_error or "refused" in status.last_error.lower()
        sub = pool.subscribe(FILTER)
        ev = note("one relay is enough")
        results = await pool.publish(ev)
        assert results[relay.url] == (True, "")
        assert not results[dead][0]
        assert await next_event(sub) == ev


async def test_silent_relay_costs_at_most_the_connect_timeout(relay: Relay) -> None:
    async with silent_server() as silent:
        pool = RelayPool([silent, relay.url], connect_timeout=0.3, backoff_min=0.05)
        await asyncio.wait_for(pool.start(), 5)
        try:
            assert pool.connected_urls() == [relay.url]
            assert "Timeout" in pool.status()[silent].last_error
        finally:
            await pool.close()
        assert all(s.state == "closed" for s in pool.status().values())


async def test_all_relays_dead_publish_fails_clearly() -> None:
    dead = dead_url()
    async with RelayPool([dead], connect_timeout=0.5, backoff_min=0.05) as pool:
        with pytest.raises(PublishError) as exc:
            await pool.publish(note("nowhere"), ok_timeout=0.2)
        assert dead in exc.value.results and "not connected" in str(exc.value)


def test_pool_needs_urls() -> None:
    with pytest.raises(RelayError):
        RelayPool(["", " "])


async def test_bad_url_reported_not_crashing() -> None:
    async with RelayPool(["not a url"], connect_timeout=0.5) as pool:
        st = pool.status()["not a url"]
        assert st.state == "closed" and st.last_error


# --- what a correct relay would never send -----------------------------------------------


async def test_forged_offfilter_and_junk_events_are_dropped() -> None:
    good = note("good")
    forged = {**good.to_dict(), "content": "tampered"}
    other_kind = Event.create(KEYS, 7, "+", [["t", "pooltest"]])
    bad_sig = {**note("x").to_dict(), "sig": "0" * 128}

    def on_req(sub_id: str, filters: list[dict[str, object]]) -> list[str]:
        return [
            "not json",
            json.dumps(["EVENT", sub_id, forged]),
            json.dumps(["EVENT", sub_id, bad_sig]),
            json.dumps(["EVENT", sub_id, other_kind.to_dict()]),
            json.dumps(["EVENT", sub_id, {"id": 1}]),
            json.dumps(["EVENT", "someone-else", good.to_dict()]),
            json.dumps(["EVENT", sub_id, good.to_dict()]),
            json.dumps(["EVENT", sub_id, good.to_dict()]),
            json.dumps(["NOTICE", "hello from the script"]),
            json.dumps(["EOSE", sub_id]),
        ]

    async with ScriptedRelay(on_req) as sr, RelayPool([sr.url]) as pool:
        sub = pool.subscribe(FILTER)
        assert await next_event(sub) == good  # the forgery with good's id did not shadow it
        await asyncio.wait_for(sub.wait_eose(), 5)
        assert sub.rejected == 3  # forged, bad signature, outside the filter
        assert sub.duplicates == 1
        assert sub.get_nowait() is None
        assert pool.relays[0].bad_messages == 2
        assert pool.status()[sr.url].notices == ("hello from the script",)


async def test_bounded_queue_drops_instead_of_growing() -> None:
    events = [note(f"flood {i}") for i in range(20)]

    def on_req(sub_id: str, filters: list[dict[str, object]]) -> list[str]:
        out = [json.dumps(["EVENT", sub_id, e.to_dict()]) for e in events]
        return [*out, json.dumps(["EOSE", sub_id])]

    async with ScriptedRelay(on_req) as sr, RelayPool([sr.url], queue_size=5) as pool:
        sub = pool.subscribe(FILTER)
        await asyncio.wait_for(sub.wait_eose(), 5)  # EOSE comes after the 20 events
        assert sub.dropped == 15
        got = [sub.get_nowait() for _ in range(6)]
        assert got[:5] == events[:5] and got[5] is None


# --- NIP-42 ------------------------------------------------------------------------------


async def test_auth_on_demand_for_read_and_write() -> None:
    async with Relay(auth_required=True) as relay:
        async with RelayPool([relay.url], keys=KEYS) as pool:
            sub = pool.subscribe(FILTER)
            ev = note("authed")
            results = await pool.publish(ev)
            assert results[relay.url] == (True, "")
            assert await next_event(sub) == ev
            assert pool.status()[relay.url].authenticated


async def test_auth_required_without_keys_fails_clearly() -> None:
    async with Relay(auth_required=True) as relay, RelayPool([relay.url]) as pool:
        sub = pool.subscribe(FILTER)
        with pytest.raises(RelayError, match="auth-required"):
            await next_event(sub)
        with pytest.raises(PublishError, match="auth-required"):
            await pool.publish(note("nope"))


async def test_auth_challenge_before_any_request_is_kept_for_later() -> None:
    async with ScriptedRelay(greeting=[json.dumps(["AUTH", "c1"])]) as sr:
        async with RelayPool([sr.url], keys=KEYS) as pool:
            ev = note("no auth needed")
            await pool.publish(ev)
            assert ["AUTH"] not in [m[:1] for m in sr.received]  # lazy: nobody asked for it
            assert not pool.status()[sr.url].authenticated
