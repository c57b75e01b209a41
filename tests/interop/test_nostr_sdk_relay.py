"""rust-nostr's Python client (`nostr-sdk`) publishing, querying and subscribing on relay_mock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import nostr_sdk as sdk

from client.nostr.event import Event
from client.nostr.keys import Keys
from relay_mock import Relay

WAIT = timedelta(seconds=5)


async def sdk_client(relay: Relay) -> sdk.Client:
    client = sdk.Client()
    await client.add_relay(sdk.RelayUrl.parse(relay.url))
    await client.connect()
    return client


async def test_sdk_publishes_and_we_store_the_exact_event(relay: Relay) -> None:
    keys = sdk.Keys.generate()
    client = await sdk_client(relay)
    try:
        event = (
            sdk.EventBuilder(sdk.Kind(1), "from rust ünïcode 🌍")
            .tags([sdk.Tag.parse(["t", "interop"])])
            .finalize(keys)
        )
        out = await client.send_event(event)
        assert [str(u) for u in out.success] and not out.failed
    finally:
        await client.shutdown()
    stored = relay.stored_events()
    assert [e.id for e in stored] == [event.id().to_hex()]
    assert stored[0].verify() and stored[0].content == "from rust ünïcode 🌍"


async def test_sdk_sees_refusals_as_failures(relay: Relay) -> None:
    relay.faults.refuse_kinds = frozenset({1})
    client = await sdk_client(relay)
    try:
        event = sdk.EventBuilder(sdk.Kind(1), "refused").finalize(sdk.Keys.generate())
        out = await client.send_event(event)
        assert not out.success and len(out.failed) == 1
        assert "blocked:" in next(iter(out.failed.values()))
    finally:
        await client.shutdown()


async def test_sdk_queries_with_filters_and_limit(relay: Relay) -> None:
    keys = sdk.Keys.generate()
    client = await sdk_client(relay)
    try:
        for i in range(5):
            ev = (
                sdk.EventBuilder(sdk.Kind(1), f"n{i}")
                .custom_created_at(sdk.Timestamp.from_secs(1_700_000_000 + i))
                .finalize(keys)
            )
            await client.send_event(ev)
        await client.send_event(sdk.EventBuilder(sdk.Kind(7), "+").finalize(keys))
        f = sdk.Filter().author(keys.public_key()).kind(sdk.Kind(1)).limit(2)
        got = await client.fetch_events(sdk.ReqTarget.auto([f]), WAIT)
        assert sorted(e.content() for e in got) == ["n3", "n4"]
    finally:
        await client.shutdown()


async def test_sdk_subscribes_and_gets_live_events_we_publish(relay: Relay) -> None:
    client = await sdk_client(relay)
    try:
        stream = client.notifications()
        sub = await client.subscribe(sdk.ReqTarget.auto([sdk.Filter().kind(sdk.Kind(5050))]))
        ours = Event.create(Keys.generate(), 5050, "job for rust", [["param", "model", "x"]])
        accepted, _ = relay.inject(ours)
        assert accepted

        async def first_new_event() -> sdk.Event:
            while True:
                note = await stream.next()
                assert note is not None
                if note.is_new_event() and note.subscription_id == sub.id:
                    return note.event

        got = await asyncio.wait_for(first_new_event(), WAIT.total_seconds())
        assert got.id().to_hex() == ours.id and got.verify()
    finally:
        await client.shutdown()


async def test_sdk_sync_gets_neg_err_and_fails_at_once(relay: Relay) -> None:
    """NIP-77: rust-nostr's sync sees the relay's NEG-ERR as this relay's failure (and would fall
    back to REQ) instead of waiting out its timeout."""
    client = await sdk_client(relay)
    try:
        opts = sdk.SyncOptions().initial_timeout(timedelta(seconds=30))
        # Far below the 30 s timeout: the summary can only come from the NEG-ERR.
        out = await asyncio.wait_for(client.sync(sdk.Filter().kind(sdk.Kind(1)), opts=opts), 5)
        assert not out.success
        assert [r.startswith("blocked:") and "negentropy" in r for r in out.failed.values()] == [
            True
        ]
    finally:
        await client.shutdown()
