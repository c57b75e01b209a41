"""`swarm ask --policy best` asks the providers the ledger trusts and leaves out the liar; every
job's outcome lands in the reputation ledger."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path

import pytest

from client.cli import main
from client.customer.reputation import Observation, ReputationLedger
from client.nostr.keys import Keys
from provider import ProviderNode
from relay_mock import Relay
from router.backends import MockBackend


async def test_policy_best_targets_trusted_providers_and_records(
    relay: Relay, tmp_path: Path
) -> None:
    customer = Keys.generate()
    ledger_path = tmp_path / "reputation.sqlite"
    providers = [Keys.generate() for _ in range(3)]
    honest, liar = providers[:2], providers[2]
    with ReputationLedger(ledger_path, customer=customer.public_key) as ledger:
        for _ in range(5):
            ledger.record([Observation(p.public_key, "agreed") for p in honest])
            ledger.record([Observation(liar.public_key, "dissented")])
        liar_score_before = ledger.score(liar.public_key)
        honest_score_before = ledger.score(honest[0].public_key)
    async with contextlib.AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(
                ProviderNode(
                    keys,
                    [relay.url],
                    MockBackend(f"m{i}").with_response("Paris" if keys in honest else "Rome"),
                )
            )
            for i, keys in enumerate(providers)
        ]
        argv = [
            "ask", "capital of France?", "--relay", relay.url, "--quorum", "2", "--timeout", "10",
            "--policy", "best", "--spare", "0", "--key", customer.secret_hex,
            "--ledger", str(ledger_path), "--json", "--quiet",
        ]  # fmt: skip
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = await asyncio.to_thread(main, argv)
    outcome = json.loads(out.getvalue())
    assert code == 0 and outcome["text"] == "Paris"
    assert nodes[2].stats.accepted == 0  # the liar was never asked
    assert sorted(outcome["agreeing"]) == sorted(k.public_key for k in honest)
    with ReputationLedger(ledger_path, customer=customer.public_key) as ledger:
        assert ledger.score(honest[0].public_key) > honest_score_before
        # Not asked, not judged: only time decay moves its score.
        assert ledger.score(liar.public_key) == pytest.approx(liar_score_before, rel=1e-3)
