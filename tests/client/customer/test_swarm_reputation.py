"""SwarmClient with a reputation ledger and a selector, over relay_mock with scripted providers:
the ledger rises for agreeing providers and falls for liars and timeouts, the selector targets
announced providers by reputation, block-lists and membership hold even against a broadcast."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from client.customer.directory import ProviderDirectory
from client.customer.reputation import ReputationLedger
from client.customer.selection import (
    AccessList,
    BestReputation,
    Broadcast,
    QuorumMembership,
    Selector,
)
from client.customer.swarm import SwarmClient
from client.nostr.errors import NoProvidersAvailable, QuorumNotReached
from client.nostr.keys import Keys
from relay_mock import Relay
from tests.support.announcements import announcement
from tests.support.scripted import ScriptedProvider

CUSTOMER = Keys.generate()


@contextlib.asynccontextmanager
async def running(*made: ScriptedProvider) -> AsyncIterator[list[ScriptedProvider]]:
    async with contextlib.AsyncExitStack() as stack:
        for p in made:
            await stack.enter_async_context(p)
        yield list(made)


async def announce_all(*ps: ScriptedProvider) -> None:
    now = int(time.time())
    for p in ps:
        await p.send(announcement(p.keys, now, name=p.pubkey[:8], payment="free"))


async def test_ledger_rises_for_agreement_and_falls_for_lies_and_timeouts(relay: Relay) -> None:
    ledger = ReputationLedger(customer=CUSTOMER.public_key)
    liar = ScriptedProvider([relay.url], "Lyon")
    honest = [ScriptedProvider([relay.url], "Paris", gate=liar.answered) for _ in range(2)]
    silent = ScriptedProvider([relay.url], lambda _req: None)
    async with (
        running(liar, *honest, silent),
        SwarmClient(CUSTOMER, [relay.url], reputation=ledger) as swarm,
    ):
        h1, h2 = honest
        result = await swarm.complete(
            "Capital of France?", quorum=2, timeout=10, targets=[liar.pubkey, h1.pubkey, h2.pubkey]
        )
        assert result.text == "Paris" and result.dissenting == (liar.pubkey,)
        assert ledger.score(h1.pubkey) > 0.5 and ledger.score(h2.pubkey) > 0.5
        assert ledger.score(liar.pubkey) < 0.5
        rec = ledger.get(h1.pubkey)
        assert rec is not None and rec.agreed == pytest.approx(1.0) and rec.latency_ms is not None
        liar_rec = ledger.get(liar.pubkey)
        assert liar_rec is not None and liar_rec.dissented == pytest.approx(1.0)
        # The silent provider lets the job time out: it is the one blamed.
        with pytest.raises(QuorumNotReached):
            await swarm.complete(
                "Capital of Italy?", quorum=2, timeout=1.5, targets=[h1.pubkey, silent.pubkey]
            )
        quiet = ledger.get(silent.pubkey)
        assert quiet is not None and quiet.timeouts == pytest.approx(1.0)
        assert ledger.score(silent.pubkey) < 0.5
        again = ledger.get(h1.pubkey)
        assert again is not None and again.agreed == pytest.approx(1.0) and again.jobs == 2
        assert ledger.score(h1.pubkey) > ledger.score(silent.pubkey)


async def test_selector_targets_announced_providers_by_reputation(relay: Relay) -> None:
    liar = ScriptedProvider([relay.url], "Lyon")
    honest = [ScriptedProvider([relay.url], "Paris", gate=liar.answered) for _ in range(3)]
    offline = ScriptedProvider([relay.url], "Paris")
    async with running(liar, *honest, offline):
        await announce_all(liar, *honest)
        await offline.send(announcement(offline.keys, int(time.time()), online=False))
        ledger = ReputationLedger(customer=CUSTOMER.public_key)
        selector = Selector(
            directory=ProviderDirectory(), ledger=ledger, policy=BestReputation(), spare=2
        )
        async with SwarmClient(CUSTOMER, [relay.url], selector=selector) as swarm:
            # The directory was filled from the relay on entering.
            assert selector.directory is not None
            alive = set(selector.directory.alive_keys())
            assert alive == {liar.pubkey, *(h.pubkey for h in honest)}
            first = await swarm.complete("Capital of France?", quorum=2, timeout=10)
            assert first.text == "Paris"
            asked = {t[1] for t in first.job.requests[0].tags_named("p")}
            assert len(asked) == 4 and offline.pubkey not in asked
            assert first.dissenting == (liar.pubkey,)
            # With the liar caught, the next jobs go to the honest providers only.
            assert ledger.score(liar.pubkey) < 0.5
            pick = selector.select(2)
            assert liar.pubkey not in pick.targets[:3]
            second = await swarm.complete("Capital of Spain?", quorum=2, timeout=10)
            assert set(second.agreeing) <= {h.pubkey for h in honest}
            assert not offline.seen


async def test_block_list_holds_in_targeted_and_broadcast_jobs(relay: Relay) -> None:
    blocked = ScriptedProvider([relay.url], "Lyon")
    gate = asyncio.Event()
    gate.set()
    honest = [ScriptedProvider([relay.url], "Paris", gate=gate) for _ in range(2)]

    async def open_after_blocked() -> None:
        await blocked.answered.wait()
        gate.set()

    async with running(blocked, *honest):
        await announce_all(blocked, *honest)
        access = AccessList.parse(block=[blocked.keys.npub])
        selector = Selector(directory=ProviderDirectory(), policy=BestReputation(), access=access)
        async with SwarmClient(CUSTOMER, [relay.url], selector=selector) as swarm:
            result = await swarm.complete("Capital of France?", quorum=2, timeout=10)
            assert result.text == "Paris" and blocked.pubkey not in result.providers
            p_tags = {t[1] for t in result.job.requests[0].tags_named("p")}
            assert p_tags == {h.pubkey for h in honest}
            # Broadcast: the blocked key answers first but is never counted.
            selector.policy = Broadcast()
            gate.clear()
            opener = asyncio.create_task(open_after_blocked())
            result = await swarm.complete("Capital of France?", quorum=2, timeout=10)
            await opener
            assert result.job.requests[0].tags_named("p") == []
            assert result.text == "Paris"
            assert blocked.pubkey not in {v.provider for v in result.decision.votes}
            assert result.providers[blocked.pubkey].result is not None  # it did answer
            # Asking for a blocked key explicitly does not make it count.
            with pytest.raises(NoProvidersAvailable):
                await swarm.complete(
                    "x?", quorum=2, timeout=5, targets=[blocked.pubkey, honest[0].pubkey]
                )


async def test_sybils_win_a_plain_broadcast_but_not_a_membership_quorum(relay: Relay) -> None:
    """Two fresh keys of one operator agree on a lie before the honest providers answer."""
    sybils = [ScriptedProvider([relay.url], "Lyon") for _ in range(2)]
    both = asyncio.Event()

    async def after_sybils() -> None:
        await asyncio.gather(*(s.answered.wait() for s in sybils))
        both.set()

    honest = [ScriptedProvider([relay.url], "Paris", gate=both) for _ in range(2)]
    async with running(*sybils, *honest):
        waiter = asyncio.create_task(after_sybils())
        async with SwarmClient(CUSTOMER, [relay.url]) as plain:
            fooled = await plain.complete("Capital of France?", quorum=2, timeout=10)
        assert fooled.text == "Lyon" and set(fooled.agreeing) == {s.pubkey for s in sybils}
        await waiter
        members = QuorumMembership.parse(allow=[h.keys.npub for h in honest])
        selector = Selector(policy=Broadcast(), membership=members)
        async with SwarmClient(CUSTOMER, [relay.url], selector=selector) as guarded:
            result = await guarded.complete("Capital of France?", quorum=2, timeout=10)
        assert result.text == "Paris" and set(result.agreeing) == {h.pubkey for h in honest}


async def test_real_provider_nodes_are_discovered_used_and_dropped_when_they_stop(
    relay: Relay,
) -> None:
    from provider.node import ProviderNode
    from router.backends import MockBackend

    def node() -> ProviderNode:
        backend = MockBackend("mock").with_model("m1").with_response("Echo: {prompt}")
        return ProviderNode(Keys.generate(), [relay.url], backend, connect_timeout=3.0)

    first, second = node(), node()
    ledger = ReputationLedger(customer=CUSTOMER.public_key)
    selector = Selector(directory=ProviderDirectory(), ledger=ledger, spare=0)
    async with first, second:
        async with SwarmClient(CUSTOMER, [relay.url], selector=selector) as swarm:
            d = selector.directory
            assert d is not None and swarm.watcher is not None
            keys = {first.keys.public_key, second.keys.public_key}
            await asyncio.wait_for(swarm.watcher.wait_for(lambda dd: all(k in dd for k in keys)), 5)
            info = d.get(first.keys.public_key)
            assert info is not None and info.models == ("m1",) and info.alive(time.time())
            result = await swarm.complete("hello", model="m1", quorum=2, timeout=10)
            assert result.text == "Echo: hello" and set(result.agreeing) == keys
            assert all(ledger.score(k) > 0.5 for k in keys)
            await second.close()  # graceful stop: announced offline
            await asyncio.wait_for(
                swarm.watcher.wait_for(lambda dd: dd.status(second.keys.public_key) == "offline"),
                5,
            )
            with pytest.raises(NoProvidersAvailable):
                await swarm.complete("hello", model="m1", quorum=2, timeout=10)
            alone = await swarm.complete("hello", model="m1", quorum=1, timeout=10)
            assert alone.agreeing == (first.keys.public_key,)
