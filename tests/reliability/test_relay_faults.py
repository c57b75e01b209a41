"""Relays failing under a paid swarm: real ProviderNodes, a real SwarmClient paying from a ledger.

Each test ends with the money audit (nothing paid twice, only agreeing providers paid, money
conserved) and one more job through every part (nothing died).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from client.nostr.errors import PublishError, QuorumNotReached
from relay_mock import Relay
from tests.support.market import Market, mock


async def test_relay_restarted_mid_job(relay: Relay, tmp_path: Path) -> None:
    gate = asyncio.Event()
    async with Market(tmp_path, [relay.url]) as market:
        backends = [mock("4").with_gate(gate) for _ in range(3)]
        for b in backends:
            await market.add_provider(b)
        await market.open_customer()
        job = asyncio.create_task(market.ask("2+2?"))
        for b in backends:  # every provider is working on it ...
            await asyncio.wait_for(b.wait_for_in_flight(1), 10)
        await relay.restart()  # ... when the relay goes down and comes back
        gate.set()
        result = await asyncio.wait_for(job, 20)
        assert result.text == "4" and len(result.agreeing) == 2
        assert result.sats_paid > 0
        money = market.audit()
        assert money["spent"] == money["owed"] and money["payments"] == 2
        assert relay.stats().disconnects_forced == 0  # a real stop, not the fault switch
        await market.still_serving()
        market.audit()


@pytest.mark.parametrize("drop_rate", [0.1, 0.3])
async def test_relay_drops_messages(relay: Relay, tmp_path: Path, drop_rate: float) -> None:
    async with Market(tmp_path, [relay.url]) as market:
        for _ in range(3):  # short publish timeouts: a lost OK costs that long
            await market.add_provider(mock("4"), publish_timeout=1.0)
        await market.open_customer(publish_timeout=1.0)
        relay.faults.drop_rate = drop_rate  # any message from the relay, to anyone
        outcomes = await asyncio.gather(
            *(market.ask(f"job {i}", timeout=2.5) for i in range(8)), return_exceptions=True
        )
        relay.faults.reset()
        reached = [o for o in outcomes if not isinstance(o, BaseException)]
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        # A job either completes or fails with one of the two clear errors, never anything else.
        assert all(isinstance(e, (QuorumNotReached, PublishError)) for e in failed), failed
        for e in failed:
            assert str(e).startswith(("quorum 2 not reached", "no relay accepted event")), e
        assert reached, "with some messages lost, most jobs still complete"
        assert all(r.text == "4" and len(r.agreeing) == 2 for r in reached)
        assert relay.stats().messages_dropped > 0
        money = market.audit()
        # Every completed job paid its two agreeing providers once; failed ones paid nothing.
        assert money["payments"] <= 2 * len(reached)
        assert money["spent"] <= money["owed"]
        await market.still_serving()
        market.audit()


async def test_one_of_two_relays_dead(relay: Relay, tmp_path: Path) -> None:
    async with Relay(seed=1) as second, Market(tmp_path, [relay.url, second.url]) as market:
        gate = asyncio.Event()
        dead_url = second.url
        backends = [mock("4").with_gate(gate) for _ in range(3)]
        for b in backends:
            await market.add_provider(b)
        await market.open_customer()
        # Each provider sees the job on both relays and works it once.
        job = asyncio.create_task(market.ask("2+2?"))
        for b in backends:
            await asyncio.wait_for(b.wait_for_in_flight(1), 10)
        await second.stop(abort=True)  # one relay dies mid-job and stays dead
        gate.set()
        result = await asyncio.wait_for(job, 20)
        assert result.text == "4" and len(result.agreeing) == 2
        assert all(s.node.stats.accepted == 1 for s in market.sellers)
        # Later jobs go through the live relay alone.
        await market.still_serving()
        money = market.audit()
        assert money["spent"] == money["owed"] and money["payments"] == 4
        assert market.swarm is not None
        assert market.swarm.pool.status()[dead_url].state != "connected"
