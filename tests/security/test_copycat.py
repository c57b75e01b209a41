"""A copycat provider against SwarmClient over relay_mock, in every copy-resistance mode.

The copycat runs no model: it watches kind 6050 on the relay and republishes the first result of
each job under its own key, faster than the honest providers (the second honest provider is gated
until the copycat has acted). Honest providers are real ProviderNodes where the order of events
does not matter, a scripted honest committer where it does.
"""

from __future__ import annotations

import asyncio
import contextlib

from client.customer.swarm import SwarmClient
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from relay_mock import Relay
from tests.support.copy_actors import ANSWER, Copycat, HonestCommitter, honest_node

WAIT = 15.0


async def test_clear_mode_copycat_counts_but_is_marked_copyable(relay: Relay) -> None:
    async with contextlib.AsyncExitStack() as stack:
        cat = await stack.enter_async_context(Copycat(relay.url))
        a = await stack.enter_async_context(honest_node(relay.url))
        b = await stack.enter_async_context(honest_node(relay.url, gate=cat.acted))
        swarm = await stack.enter_async_context(SwarmClient(Keys.generate(), [relay.url]))
        result = await swarm.complete("Capital of France?", quorum=2, timeout=WAIT)
    assert result.reached and result.text == ANSWER
    # The copy was faster than the second honest provider and agrees: it counts, but marked.
    assert set(result.agreeing) == {a.public_key, cat.pubkey}
    assert b.public_key not in result.agreeing
    assert result.protection == {a.public_key: "clear", cat.pubkey: "clear"}
    assert cat.pubkey in result.copyable
    assert cat.copied[result.job_id].pubkey == a.public_key


async def test_sealed_mode_copycat_has_nothing_to_copy(relay: Relay) -> None:
    async with contextlib.AsyncExitStack() as stack:
        cat = await stack.enter_async_context(Copycat(relay.url))
        a = await stack.enter_async_context(honest_node(relay.url))
        b = await stack.enter_async_context(honest_node(relay.url, gate=cat.acted))
        swarm = await stack.enter_async_context(SwarmClient(Keys.generate(), [relay.url]))
        result = await swarm.complete(
            "Capital of France?", quorum=2, timeout=WAIT, sealing="require"
        )
    assert result.reached and result.text == ANSWER
    assert set(result.agreeing) == {a.public_key, b.public_key}
    assert result.protection == {a.public_key: "sealed", b.public_key: "sealed"}
    assert result.copyable == ()
    # What the copycat saw on the relay was ciphertext; its re-signed copy does not open.
    seen = cat.copied[result.job_id]
    assert ANSWER not in seen.content and ["sealed", "nip44"] in seen.tags
    assert result.rejected.get("decrypt") == 1
    assert cat.pubkey not in result.protection and cat.pubkey not in result.dissenting


async def test_prefer_mode_counts_a_clear_provider_as_copyable(relay: Relay) -> None:
    async with contextlib.AsyncExitStack() as stack:
        cat = await stack.enter_async_context(Copycat(relay.url))
        a = await stack.enter_async_context(honest_node(relay.url))
        b = await stack.enter_async_context(honest_node(relay.url, gate=cat.acted))
        swarm = await stack.enter_async_context(SwarmClient(Keys.generate(), [relay.url]))
        result = await swarm.complete(
            "Capital of France?", quorum=2, timeout=WAIT, sealing="prefer"
        )
    assert result.reached and set(result.agreeing) == {a.public_key, b.public_key}
    assert result.rejected.get("decrypt") == 1
    assert result.protection[a.public_key] == "sealed"


async def test_commit_reveal_rejects_a_late_commitment(relay: Relay) -> None:
    async with contextlib.AsyncExitStack() as stack:
        cat = await stack.enter_async_context(Copycat(relay.url, "late_commit"))
        a = await stack.enter_async_context(honest_node(relay.url))
        h = await stack.enter_async_context(HonestCommitter(relay.url, gate=cat.acted))
        swarm = await stack.enter_async_context(SwarmClient(Keys.generate(), [relay.url]))
        result = await swarm.complete(
            "Capital of France?", quorum=2, timeout=WAIT, commit_reveal=True, commit_quota=2
        )
    assert result.reached and result.text == ANSWER
    assert set(result.agreeing) == {a.public_key, h.pubkey}
    assert result.protection == {a.public_key: "committed", h.pubkey: "committed"}
    # The copycat committed only after a reveal was public: the commitment and the copy it
    # revealed are both refused.
    assert cat.copied[result.job_id].pubkey == a.public_key
    assert result.rejected.get("late_commitment") == 1
    assert result.rejected.get("uncommitted") == 1
    assert cat.pubkey not in result.protection


async def test_commit_reveal_rejects_a_mismatched_reveal(relay: Relay) -> None:
    async with contextlib.AsyncExitStack() as stack:
        cat = await stack.enter_async_context(Copycat(relay.url, "early_commit"))
        a = await stack.enter_async_context(honest_node(relay.url))
        h = await stack.enter_async_context(HonestCommitter(relay.url, gate=cat.acted))
        swarm = await stack.enter_async_context(SwarmClient(Keys.generate(), [relay.url]))
        result = await swarm.complete(
            "Capital of France?", quorum=2, timeout=WAIT, commit_reveal=True, commit_quota=3
        )
    assert result.reached and result.text == ANSWER
    assert set(result.agreeing) == {a.public_key, h.pubkey}
    # It committed in time (to nothing), was called to reveal, and revealed a copy.
    assert result.statuses[cat.pubkey] == "committed"
    assert result.rejected.get("reveal_mismatch") == 1
    assert cat.pubkey not in result.protection


async def test_commit_reveal_with_real_nodes_and_sealing(relay: Relay) -> None:
    """Both defences at once, honest providers all real nodes, the copycat racing them."""
    async with contextlib.AsyncExitStack() as stack:
        cat = await stack.enter_async_context(Copycat(relay.url, "early_commit"))
        a = await stack.enter_async_context(honest_node(relay.url))
        b = await stack.enter_async_context(honest_node(relay.url))
        swarm = await stack.enter_async_context(SwarmClient(Keys.generate(), [relay.url]))
        result = await swarm.complete(
            "Capital of France?",
            quorum=2,
            timeout=WAIT,
            sealing="require",
            commit_reveal=True,
            commit_quota=3,
        )
        await asyncio.wait_for(cat.acted.wait(), WAIT)
    assert result.reached and result.text == ANSWER
    assert set(result.agreeing) == {a.public_key, b.public_key}
    assert result.protection == {a.public_key: "committed", b.public_key: "committed"}
    assert all(r.sealed for r in result.results)
    assert ANSWER not in cat.copied[result.job_id].content
    assert a.stats.committed == 1 and a.stats.revealed == 1


async def test_targeted_encrypted_jobs_keep_the_prompt_private(relay: Relay) -> None:
    prompt = "Capital of France? (secret prompt)"
    async with contextlib.AsyncExitStack() as stack:
        cat = await stack.enter_async_context(Copycat(relay.url))
        a = await stack.enter_async_context(honest_node(relay.url))
        b = await stack.enter_async_context(honest_node(relay.url))
        swarm = await stack.enter_async_context(SwarmClient(Keys.generate(), [relay.url]))
        result = await swarm.complete(
            prompt,
            quorum=2,
            timeout=WAIT,
            targets=[a.public_key, b.public_key],
            encrypt=True,
            sealing="require",
        )
    assert result.reached and result.text == ANSWER
    assert result.protection == {a.public_key: "sealed", b.public_key: "sealed"}
    assert len(result.job.requests) == 2
    stored = relay.stored_events(Filter(kinds=[5050, 6050]))
    assert stored and all(prompt not in e.to_json() for e in stored)
    assert cat.requests == {}  # it could not read a single request
