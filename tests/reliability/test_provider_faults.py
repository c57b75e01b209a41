"""Providers failing under a paid swarm: a crash mid-job (a real SIGKILL of a node in its own
process), model backends that time out (real HTTP upstreams that never answer), and a slow
provider. Each ends with the money audit and one more job through every part."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from client.customer.swarm import Progress
from client.dvm.nip90 import KIND_TEXT_RESULT
from client.net.pool import RelayPool
from client.nostr.errors import QuorumNotReached
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from provider import Limits
from relay_mock import Relay
from router.backends import OpenAICompatBackend
from tests.support.market import MODEL, Market, mock
from tests.support.upstreams import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]


async def test_provider_crash_mid_job(relay: Relay, tmp_path: Path) -> None:
    async with Market(tmp_path, [relay.url]) as market:
        gate = asyncio.Event()
        honest = [await market.add_provider(mock("4").with_gate(gate)) for _ in range(2)]
        # The third node runs in its own process; its model takes a minute: it dies mid-job.
        keys, store = Keys.generate(), tmp_path / "doomed.db"
        account = market.ledger.create_account("doomed").id
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.reliability.provider_proc",
            "--relay", relay.url, "--ledger", str(tmp_path / "network.db"),
            "--account", str(account), "--store", str(store), "--secret", keys.secret_hex,
            "--latency-ms", "60000",
            cwd=REPO, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)  # type: ignore[union-attr]
            assert line.strip() == b"ready"
            await market.open_customer()
            working = asyncio.Event()

            def watch(p: Progress) -> None:
                if p.kind == "feedback" and p.provider == keys.public_key:
                    working.set()

            job = asyncio.create_task(market.ask("2+2?", on_progress=watch, providers_expected=3))
            await asyncio.wait_for(working.wait(), 15)  # it has taken the job ...
            proc.kill()  # ... and dies: no error feedback, no result, no goodbye
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        gate.set()
        result = await asyncio.wait_for(job, 20)
        assert set(result.agreeing) == {h.pubkey for h in honest}
        assert result.statuses[keys.public_key] == "processing"  # last heard of it
        # Back up with the same key, wallet and store: the interrupted job is not run again.
        backend = mock("4")
        revived = await market.add_provider(backend, keys=keys, account_id=account, store=store)
        assert revived.node.store.get(result.job_id).state == "failed"  # type: ignore[union-attr]
        assert backend.calls == 0
        money = market.audit()
        assert money["spent"] == money["owed"] and money["payments"] == 2
        assert market.balance(revived) == 0
        await market.still_serving()
        market.audit()


async def test_backend_timeouts(relay: Relay, tmp_path: Path) -> None:
    async with (
        FakeOpenAI(models=[MODEL], reply="4") as up_a,
        FakeOpenAI(models=[MODEL], reply="4") as up_b,
        FakeOpenAI(models=[MODEL], reply="4") as hung,
        Market(tmp_path, [relay.url]) as market,
    ):
        hung.hold()  # takes the request, never answers
        limits = Limits(rate_per_minute=None, job_timeout=0.5)
        backends = [OpenAICompatBackend(up.base_url, models=[MODEL]) for up in (up_a, up_b, hung)]
        for backend in backends:
            market.closing(backend.close)
            await market.add_provider(backend, limits=limits)
        timed_out = market.sellers[2]
        await market.open_customer()
        result = await market.ask("2+2?")
        assert result.text == "4" and timed_out.pubkey not in result.agreeing
        # Every backend stuck: each provider says so, and the customer hears it at once
        # (no waiting for its own timeout), with nothing paid.
        for up in (up_a, up_b):
            up.hold()
        with pytest.raises(QuorumNotReached, match="no agreement possible") as err:
            await market.ask("3+3?", timeout=30)
        failed = err.value.received
        errors = [p for p in failed.providers.values() if p.status == "error"]
        assert len(errors) >= 2  # two of three out: a quorum of two is impossible
        assert all("did not answer within 0.5 s" in p.extra for p in errors)
        assert failed.timings.total_ms < 10_000
        assert all(s.node.stats.failed["timeout"] >= 1 for s in market.sellers)
        for up in (up_a, up_b, hung):
            up.release()
        money = market.audit()
        assert money["spent"] == money["owed"] and money["payments"] == 2
        await market.still_serving()
        market.audit()


async def test_slow_provider_is_not_waited_for_and_its_late_result_not_paid(
    relay: Relay, tmp_path: Path
) -> None:
    async with Market(tmp_path, [relay.url]) as market:
        slow_gate = asyncio.Event()
        for _ in range(2):
            await market.add_provider(mock("4"))
        slow = await market.add_provider(mock("4").with_gate(slow_gate))
        await market.open_customer()
        async with RelayPool([relay.url]) as watcher:
            late = watcher.subscribe(Filter(kinds=[KIND_TEXT_RESULT], authors=[slow.pubkey]))
            await late.wait_eose()
            # No cancellation, so the slow node surely finishes and sends its invoice.
            result = await market.ask("2+2?", cancel=False)
            assert slow.pubkey not in result.agreeing and len(result.agreeing) == 2
            slow_gate.set()
            answer = await asyncio.wait_for(late.__anext__(), 10)
            assert answer.tag_value("e") == result.job_id and answer.tags_named("amount")
        money = market.audit()
        assert money["spent"] == money["owed"] and money["payments"] == 2
        assert market.balance(slow) == 0  # the late answer's invoice is never paid


async def test_provider_slower_than_the_customer_waits(relay: Relay, tmp_path: Path) -> None:
    async with Market(tmp_path, [relay.url]) as market:
        gate = asyncio.Event()
        await market.add_provider(mock("4"))
        await market.add_provider(mock("4").with_gate(gate))
        await market.open_customer()
        with pytest.raises(QuorumNotReached, match=r"timed out after 1 s\): 1 result") as err:
            await market.ask("2+2?", timeout=1)
        assert err.value.received.results[0].content == "4"
        gate.set()
        assert market.audit()["spent"] == 0  # no quorum, nobody paid
        await market.still_serving()
        market.audit()
