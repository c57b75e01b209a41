"""The adapters against real parts: a SwarmClient's progress through ProgressTap, a provider
node's earnings and a customer's reputation through probes (relay, nodes and wallets on
127.0.0.1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from client.customer.swarm import Progress
from client.nostr.errors import QuorumNotReached
from router.dashboard.hub import DashboardHub
from router.dashboard.sources import ProgressTap
from tests.support.market import MODEL, mock

from .stage import ANSWER, market_stage


class Wake:
    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __call__(self) -> None:
        self.event.set()


async def test_a_swarm_job_goes_through_the_tap_to_agreed_and_paid(tmp_path: Path) -> None:
    async with market_stage(tmp_path, providers=2) as stage:
        hub = stage.hub
        viewer = hub.join(Wake())
        hub.take(viewer)
        result = await stage.ask("What is the capital of France?")
        assert result.reached and result.text == ANSWER
        job = hub.job(result.job_id)
        assert job is not None
        assert job["model"] == MODEL and job["quorum"] == 2
        assert job["prompt"] == "What is the capital of France?"
        assert job["outcome"] == "reached" and job["text"] == ANSWER
        states = {p["key"]: p["state"] for p in job["providers"]}
        assert states == {s.pubkey: "paid" for s in stage.sellers}
        assert job["paid_msats"] == result.msats_paid > 0
        cards = hub.snapshot()["cards"]
        assert cards["reached"] == 1 and cards["msats_out"] == result.msats_paid
        # The probes: the providers' earnings once their nodes saw the invoices paid, and the
        # customer's reputation of both.
        for seller in stage.sellers:
            await seller.node.check_invoices()
        stage.app.refresh()
        earnings = hub.snapshot()["earnings"]
        assert earnings["paid_msats"] == result.msats_paid and earnings["jobs_done"] == 2
        rows = hub.snapshot()["reputation"]
        assert {r["provider"] for r in rows} == {s.pubkey for s in stage.sellers}
        assert all(r["jobs"] == 1 and r["agreed"] == pytest.approx(1.0) for r in rows)
        hub.leave(viewer)


async def test_a_quorum_that_cannot_form_ends_failed(tmp_path: Path) -> None:
    async with market_stage(tmp_path, providers=0) as stage:
        for reply in ("yes", "no"):
            await stage.market.add_provider(mock(reply))
        hub = stage.hub
        viewer = hub.join(Wake())
        tap = ProgressTap(hub, model=MODEL, quorum=2, prompt="yes or no?")
        with pytest.raises(QuorumNotReached) as err:
            await stage.market.ask("yes or no?", on_progress=tap, timeout=5)
        tap.finish(err.value.received or None)
        assert tap.job_id is not None
        job = hub.job(tap.job_id)
        assert job is not None and job["outcome"] == "failed"
        assert sorted(p["state"] for p in job["providers"]) == ["answered", "answered"]
        assert hub.snapshot()["cards"]["failed"] == 1
        hub.leave(viewer)


async def test_the_tap_builds_nothing_while_nobody_watches(tmp_path: Path) -> None:
    async with market_stage(tmp_path, providers=2) as stage:
        result = await stage.ask("2+2?")
        assert result.reached
        assert stage.hub.snapshot()["jobs"] == []
        assert stage.hub.snapshot()["cards"]["msats_out"] == 0


def test_a_retried_job_is_a_new_job_with_its_own_outcome() -> None:
    """The router may send one request to the swarm twice (a retry): the tap follows the second
    job from its own ``published`` step to its own end."""
    hub = DashboardHub()
    hub.join(Wake())
    tap = ProgressTap(hub, model=MODEL, quorum=2, prompt="2+2?")
    tap(Progress("published", 1.0, detail="job-1"))
    tap.finish(None)  # the first attempt timed out
    tap(Progress("published", 2.0, detail="job-2"))
    tap.finish(None)  # and so did the second
    for job_id in ("job-1", "job-2"):
        job = hub.job(job_id)
        assert job is not None and job["outcome"] == "failed", job_id
    assert hub.snapshot()["cards"] == {
        "in_flight": 0,
        "reached": 0,
        "failed": 2,
        "msats_in": 0,
        "msats_out": 0,
        "viewers": 1,
    }
