"""Attacks on provider nodes, end to end over a real relay: a flood of job requests from one
customer, a flood from many throwaway keys, and hostile requests. Each is refused (with one
error feedback per flooder per window, not one per request), counted in the node's stats and
logged; the backend never sees more than the limits allow; an honest paid job goes through
afterwards."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from client.dvm.nip90 import KIND_FEEDBACK, KIND_TEXT_RESULT, JobSpec, build_job
from client.net.pool import RelayPool
from client.nostr import nip44
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from provider import Limits
from relay_mock import Relay
from tests.support.customer import Customer
from tests.support.market import MODEL, Market, mock
from tests.support.wire import Wire

FLOOD = 300


async def _flood(url: str, requests: list[Event]) -> None:
    """Publish as fast as the socket takes them, then collect every OK."""
    async with await Wire.open(url) as wire:
        for ev in requests:
            await wire.send('["EVENT",' + ev.to_json() + "]")
        oks = [await wire.next_of("OK") for _ in requests]
    assert all(ok[2] for ok in oks)


async def _screened(market: Market, relay: Relay) -> None:
    """Return once every node has screened everything published before now: the relay delivers
    in order, and a request without input is refused at once by each node."""
    async with Customer([relay.url]) as probe:
        job = await probe.publish_raw(Event.create(probe.keys, 5050, "", [["t", "probe"]]))
        n = len(market.sellers)
        await probe.wait_for(lambda: len(probe.replies(job).feedback) >= n, 30)


def _errors_to(relay: Relay, node: str, customer: str) -> list[Event]:
    flt = Filter(kinds=[KIND_FEEDBACK], authors=[node], tags={"p": [customer]})
    return [e for e in relay.stored_events(flt) if e.tags_named("status")[0][1] == "error"]


async def test_request_flood_from_one_customer(
    relay: Relay, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "provider.node")
    limits = Limits(rate_per_minute=30, rate_burst=5, max_concurrent=2, queue_size=8)
    async with Market(tmp_path, [relay.url]) as market:
        backends = [mock("4"), mock("4")]
        for b in backends:
            await market.add_provider(b, limits=limits)
        await market.open_customer()
        flooder = Keys.generate()
        spec = JobSpec(prompt="spam", model=MODEL)
        await _flood(relay.url, [build_job(flooder, spec).requests[0] for _ in range(FLOOD)])
        await _screened(market, relay)
        for seller, backend in zip(market.sellers, backends, strict=True):
            stats = seller.node.stats
            assert stats.received == FLOOD + 1  # the flood and the probe
            assert 5 <= stats.accepted <= 7  # the burst, and what refilled meanwhile
            assert stats.refused["rate_limited"] == FLOOD - stats.accepted
            assert backend.calls <= stats.accepted
            # Refusals are told once per window, not 290 times.
            assert 1 <= len(_errors_to(relay, seller.pubkey, flooder.public_key)) <= 2
        logged = [r for r in caplog.records if "refused (rate_limited)" in r.getMessage()]
        assert 2 <= len(logged) <= 4  # once per node per window, like the feedback
        result = await market.ask("2+2?")  # another customer is served at once
        assert result.text == "4"
        market.audit()


async def test_request_flood_from_many_keys(relay: Relay, tmp_path: Path) -> None:
    gate = asyncio.Event()
    limits = Limits(rate_per_minute=30, rate_burst=5, max_concurrent=2, queue_size=8)
    async with Market(tmp_path, [relay.url]) as market:
        backends = [mock("4").with_gate(gate), mock("4").with_gate(gate)]
        for b in backends:
            await market.add_provider(b, limits=limits)
        await market.open_customer()
        sybils = [Keys.generate() for _ in range(100)]
        spec = JobSpec(prompt="spam", model=MODEL)
        await _flood(relay.url, [build_job(k, spec).requests[0] for k in sybils])
        await _screened(market, relay)
        for seller, backend in zip(market.sellers, backends, strict=True):
            stats = seller.node.stats
            assert stats.accepted == 2 + 8  # running plus queued; the rest told "busy"
            assert stats.refused["busy"] == 100 - 10
            assert backend.max_in_flight == 2
        async with RelayPool([relay.url]) as watcher:
            authors = [s.pubkey for s in market.sellers]
            done = watcher.subscribe(Filter(kinds=[KIND_TEXT_RESULT], authors=authors))
            await done.wait_eose()
            gate.set()  # the queue drains (20 results) ...
            for _ in range(20):
                await asyncio.wait_for(done.__anext__(), 15)
        result = await market.ask("2+2?")  # ... and an honest job gets its turn
        assert result.text == "4"
        market.audit()


async def test_hostile_requests_are_refused_with_a_reason(relay: Relay, tmp_path: Path) -> None:
    async with Market(tmp_path, [relay.url]) as market, Customer([relay.url]) as mallory:
        node = (await market.add_provider(mock("4"))).node
        await market.add_provider(mock("4"))
        await market.open_customer()
        ck = nip44.conversation_key(mallory.keys.secret_hex, node.public_key)
        nested = "[" * 5_000 + "]" * 5_000
        sealed = Event.create(
            mallory.keys,
            5050,
            nip44.encrypt(nested, ck),
            [["p", node.public_key], ["encrypted"]],
        )
        huge = build_job(mallory.keys, JobSpec(prompt="x" * 40_000, model=MODEL))
        odd = Event.create(
            mallory.keys,
            5050,
            "",
            [["i", "2+2?", "text"], ["param", "max_tokens", "²"], ["param", "model", MODEL]],
        )
        jobs = [
            await mallory.publish_raw(sealed),
            await mallory.submit(huge),
            await mallory.publish_raw(odd),
        ]
        errors = [await mallory.error(j) for j in jobs]
        assert "not a JSON list of tags" in errors[0].extra
        assert "at most 32000 characters" in errors[1].extra
        assert "max_tokens" in errors[2].extra
        assert node.stats.refused["malformed"] == 2 and node.stats.refused["oversized"] == 1
        assert node.stats.refused["internal"] == 0
        result = await market.ask("2+2?")
        assert result.text == "4"
        market.audit()
