"""Customer and providers whose clocks disagree (each event stamped by its author's clock).

Within the tolerance the swarm works as usual, including across a relay restart mid-job (where
the client re-subscribes with a ``since``). Beyond it, the failure is a clear error, counted at
the provider. The limits are listed in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from client.nostr.errors import QuorumNotReached
from relay_mock import Relay
from tests.support.market import Market, mock

from .skew import wall_clock_skew

# Provider clocks relative to the customer's: one ahead (within its clock_skew_s of 10 s, see
# the limits), two well behind.
OFFSETS = (8.0, -90.0, -90.0)


@pytest.mark.parametrize("inbox", [False, True], ids=["job-subscription", "inbox"])
async def test_skewed_clocks_within_tolerance(
    relay: Relay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inbox: bool
) -> None:
    wall_clock_skew(monkeypatch)
    gate = asyncio.Event()
    async with Market(tmp_path, [relay.url], inbox=inbox) as market:
        backends = [mock("4").with_gate(gate) for _ in OFFSETS]
        for backend, offset in zip(backends, OFFSETS, strict=True):
            await market.add_provider(backend, clock_offset=offset)
        await market.open_customer()
        job = asyncio.create_task(market.ask("2+2?"))
        for b in backends:
            await asyncio.wait_for(b.wait_for_in_flight(1), 10)
        await relay.restart()  # the customer re-subscribes: its `since` must allow for skew
        gate.set()
        result = await asyncio.wait_for(job, 20)
        assert result.text == "4" and len(result.agreeing) == 2
        # At least one agreeing result is stamped well before the job it answers.
        stamps = [r.event.created_at for r in result.results if r.provider in result.agreeing]
        assert min(stamps) <= result.job.created_at - 80
        money = market.audit()
        assert money["spent"] == money["owed"] and money["payments"] == 2
        await market.still_serving()
        market.audit()


async def test_provider_clock_far_ahead_sees_jobs_as_expired(
    relay: Relay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wall_clock_skew(monkeypatch)
    async with Market(tmp_path, [relay.url]) as market:
        # The job expires `timeout + 60 s` after the customer's now; this node lives past that.
        # (Its clock_skew_s lets it see jobs stamped up to 300 s before its start at all.)
        ahead = await market.add_provider(mock("4"), clock_offset=200.0, clock_skew_s=300)
        await market.open_customer()
        with pytest.raises(QuorumNotReached, match=r"timed out after 1 s\): 0 result"):
            await market.ask("2+2?", quorum=1, timeout=1, providers_expected=None)
        assert ahead.node.stats.ignored["expired"] == 1  # counted (and logged at debug)
        assert market.audit()["spent"] == 0
