"""Attacks on the relay while a paid swarm job runs through it: forged and malformed events,
malformed and oversized frames, and a flood of events from one connection. Each is refused with a
reason, counted in ``relay.stats().refused`` and logged; the job completes and the relay answers
afterwards."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from client.nostr.event import Event
from client.nostr.keys import Keys
from relay_mock import Limits, Relay
from tests.support.market import Market, mock
from tests.support.wire import Wire

ATTACKER = Keys.generate()
VICTIM = Keys.generate()


def _forgeries() -> list[tuple[str, str]]:
    """(frame, what the OK or NOTICE must say)."""
    real = Event.create(ATTACKER, 1, "hello")
    tampered = {**real.to_dict(), "content": "goodbye"}
    # The victim's key on the attacker's signature ("signed by one key naming another").
    impostor = Event.create(ATTACKER, 1, "I am the victim")
    wrong_key = {**impostor.to_dict(), "pubkey": VICTIM.public_key}
    unsigned = {**real.to_dict(), "sig": "00" * 64}
    return [
        (json.dumps(["EVENT", tampered]), "invalid: id is not the sha256"),
        (json.dumps(["EVENT", wrong_key]), "invalid: id is not the sha256"),
        (json.dumps(["EVENT", unsigned]), "invalid: signature does not verify"),
        (json.dumps(["EVENT", {**real.to_dict(), "kind": "1"}]), "invalid: kind must be"),
        (json.dumps(["EVENT", {**real.to_dict(), "sig": real.sig.upper()}]), "invalid: sig must"),
        (json.dumps(["EVENT", {**real.to_dict(), "content": "x" * 300_000}]), "too large"),
        ("[" * 100_000 + "]" * 100_000, "invalid: message is not valid JSON"),
        ("not json at all", "invalid: message is not valid JSON"),
        ('{"EVENT": 1}', "invalid: a message is a JSON array"),
        ('["HELLO"]', "invalid: unknown message type"),
        ('["REQ", 7]', "invalid: REQ needs a subscription id string"),
        ('["REQ", "s", {"kinds": "all"}]', "invalid: kinds must be"),
    ]


async def test_forged_malformed_and_oversized_input_while_a_job_runs(
    relay: Relay, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "relay_mock.core")
    gate = asyncio.Event()
    async with Market(tmp_path, [relay.url]) as market:
        for _ in range(2):
            await market.add_provider(mock("4").with_gate(gate))
        await market.open_customer()
        job = asyncio.create_task(market.ask("2+2?"))
        attacks = _forgeries()
        async with await Wire.open(relay.url) as wire:
            for frame, expected in attacks:
                await wire.send(frame)
                reply = await wire.recv()
                assert expected in reply[-1], (frame[:60], reply)
            await wire.send(b"\x00\x01binary")
            assert "binary frames are not supported" in (await wire.recv())[1]
            # A frame past the hard limit costs the sender its connection, no one else's.
            await wire.send("x" * (relay.limits.hard_frame_limit + 1))
            with pytest.raises(ConnectionClosed) as closed:
                await wire.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        gate.set()
        result = await asyncio.wait_for(job, 15)
        assert result.text == "4"
        refused = relay.stats().refused
        assert sum(refused.values()) == len(attacks) + 1 and refused["invalid"] == len(attacks) + 1
        logged = [r for r in caplog.records if r.getMessage().startswith("refused: invalid")]
        assert len(logged) == refused["invalid"]
        assert all(ev.verify() for ev in relay.stored_events())  # nothing forged got in
        await market.still_serving()
        market.audit()


async def test_event_flood_from_one_connection(tmp_path: Path) -> None:
    limits = Limits(event_rate=50, event_burst=50)
    async with Relay(limits=limits) as relay, Market(tmp_path, [relay.url]) as market:
        for _ in range(2):
            await market.add_provider(mock("4"))
        await market.open_customer()
        flood = [Event.create(ATTACKER, 1, f"spam {i}") for i in range(1000)]
        async with await Wire.open(relay.url) as wire:
            # Sent without waiting for answers, as fast as the socket takes them.
            for ev in flood:
                await wire.send('["EVENT",' + ev.to_json() + "]")
            job = asyncio.create_task(market.ask("2+2?"))  # an honest job during the flood
            oks = [await wire.next_of("OK") for _ in flood]
        accepted = sum(ok[2] for ok in oks)
        limited = [ok for ok in oks if not ok[2]]
        assert all(ok[3].startswith("rate-limited:") for ok in limited)
        assert 50 <= accepted < 200 and len(limited) == 1000 - accepted
        assert relay.stats().refused["rate-limited"] == len(limited)
        result = await asyncio.wait_for(job, 15)
        assert result.text == "4"
        await market.still_serving()
        market.audit()
