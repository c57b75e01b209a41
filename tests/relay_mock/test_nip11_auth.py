"""NIP-11 over HTTP on the relay's port, and NIP-42 AUTH."""

from __future__ import annotations

import time

import aiohttp

from client.nostr.event import Event
from client.nostr.keys import Keys
from relay_mock import Limits, Relay
from tests.support.wire import Wire


async def test_nip11_document_states_the_limits_in_force() -> None:
    limits = Limits(
        max_subscriptions=7,
        max_message_length=5000,
        max_limit=99,
        default_limit=10,
        max_filters=4,
        max_filter_values=30,
        max_connections=40,
        max_connections_per_ip=9,
    )
    async with Relay(limits=limits, auth_required=True) as relay, aiohttp.ClientSession() as http:
        async with http.get(relay.http_url, headers={"Accept": "application/nostr+json"}) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/nostr+json"
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            doc = await resp.json(content_type=None)
        async with http.get(relay.http_url) as plain:
            assert plain.status == 200
            assert "websocket" in await plain.text()
    lim = doc["limitation"]
    assert lim["max_subscriptions"] == 7
    assert lim["max_message_length"] == 5000
    assert lim["max_limit"] == 99 and lim["default_limit"] == 10
    assert (lim["max_filters"], lim["max_filter_values"]) == (4, 30)
    assert (lim["max_connections"], lim["max_connections_per_ip"]) == (40, 9)
    assert lim["auth_required"] is True
    assert {1, 11, 42}.issubset(doc["supported_nips"])
    assert doc["name"]


async def test_nip11_does_not_disturb_websocket_clients() -> None:
    async with Relay() as relay, aiohttp.ClientSession() as http:
        async with http.get(relay.http_url, headers={"Accept": "application/nostr+json"}) as r:
            assert r.status == 200
        async with await Wire.open(relay.url) as wire:
            assert (await wire.publish(Event.create(Keys.generate(), 1, "x")))[2] is True


def auth_event(keys: Keys, challenge: str, relay_url: str, **over: object) -> Event:
    tags = [["relay", relay_url], ["challenge", challenge]]
    return Event.create(
        keys,
        int(over.get("kind", 22242)),  # type: ignore[call-overload]
        "",
        over.get("tags", tags),  # type: ignore[arg-type]
        created_at=int(over.get("created_at", time.time())),  # type: ignore[call-overload]
    )


async def test_auth_required_flow() -> None:
    keys = Keys.generate()
    async with Relay(auth_required=True) as relay, await Wire.open(relay.url) as wire:
        challenge_msg = await wire.recv()
        assert challenge_msg[0] == "AUTH" and isinstance(challenge_msg[1], str)
        challenge = challenge_msg[1]
        note = Event.create(keys, 1, "hi")
        refused = await wire.publish(note)
        assert refused[2] is False and refused[3].startswith("auth-required:")
        _, closed = await wire.req("s", {"kinds": [1]})
        assert closed[0] == "CLOSED" and closed[2].startswith("auth-required:")

        bad = [
            auth_event(keys, "wrong", relay.url),
            auth_event(keys, challenge, "ws://elsewhere.example:1"),
            auth_event(keys, challenge, relay.url, kind=1),
            auth_event(keys, challenge, relay.url, created_at=time.time() - 3600),
        ]
        for event in bad:
            await wire.send('["AUTH",' + event.to_json() + "]")
            ok = await wire.next_of("OK")
            assert ok[1:3] == [event.id, False] and ok[3].startswith("invalid:")

        good = auth_event(keys, challenge, relay.url.replace("127.0.0.1", "localhost") + "/")
        await wire.send('["AUTH",' + good.to_json() + "]")
        assert await wire.next_of("OK") == ["OK", good.id, True, ""]
        assert (await wire.publish(note))[2] is True
        events, end = await wire.req("s", {"kinds": [1]})
        assert end == ["EOSE", "s"] and [e["id"] for e in events] == [note.id]
        # The AUTH event itself is never stored or relayed.
        assert relay.stats().stored_events == 1


async def test_auth_with_a_forged_signature_fails() -> None:
    keys = Keys.generate()
    async with Relay(auth_required=True) as relay, await Wire.open(relay.url) as wire:
        challenge = (await wire.recv())[1]
        event = auth_event(keys, challenge, relay.url)
        obj = event.to_dict()
        obj["sig"] = "11" * 64
        await wire.send(["AUTH", obj])
        ok = await wire.next_of("OK")
        assert ok[2] is False and ok[3].startswith("invalid:")
        refused = await wire.publish(Event.create(keys, 1, "still locked"))
        assert refused[3].startswith("auth-required:")


async def test_auth_when_not_asked_is_refused(relay: Relay) -> None:
    keys = Keys.generate()
    async with await Wire.open(relay.url) as wire:
        event = auth_event(keys, "whatever", relay.url)
        await wire.send('["AUTH",' + event.to_json() + "]")
        ok = await wire.recv()
    assert ok[:3] == ["OK", event.id, False]
