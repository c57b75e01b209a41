"""A quorum that fails because providers refused says why (usually: the bid is below their
price), so a caller is not left guessing after a timeout."""

from __future__ import annotations

import contextlib

import pytest

from client.customer.swarm import SwarmClient
from client.nostr.errors import QuorumNotReached
from client.nostr.keys import Keys
from relay_mock import Relay
from tests.support.scripted import ScriptedProvider


async def test_the_error_names_why_providers_refused(relay: Relay) -> None:
    made = [ScriptedProvider([relay.url], "x", fail=True) for _ in range(2)]
    async with contextlib.AsyncExitStack() as stack:
        for p in made:
            await stack.enter_async_context(p)
        async with SwarmClient(Keys.generate(), [relay.url]) as swarm:
            with pytest.raises(QuorumNotReached) as e:
                await swarm.complete("q", quorum=2, timeout=10, targets=[p.pubkey for p in made])
    assert "no agreement possible" in str(e.value)
    # the first refusal already makes a quorum of 2 of 2 impossible: it ends the job at once
    assert "1 provider(s) refused: model down" in str(e.value)
