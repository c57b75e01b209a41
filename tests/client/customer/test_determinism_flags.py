"""Providers that claim the same weights and settings but answer differently are flagged."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from client.customer.directory import ProviderDirectory
from client.customer.reputation import (
    DeterminismFlag,
    ModelClaim,
    ReputationLedger,
    determinism_flags,
)
from client.customer.selection import Broadcast, Selector
from client.customer.swarm import SwarmClient
from client.nostr.keys import Keys
from relay_mock import Relay
from tests.support.announcements import announcement
from tests.support.scripted import ScriptedProvider

HASH = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
CUSTOMER = Keys.generate()


def claims(
    *providers: str, weights: str = HASH, engine: str = "llama.cpp"
) -> dict[str, ModelClaim]:
    return {p: ModelClaim("smollm2-135m-instruct", weights, engine) for p in providers}


def test_same_hash_and_seed_different_answer_is_flagged() -> None:
    answers = {"a": "Paris is the capital.", "b": "Paris is the capital.", "c": "Lyon."}
    flags = determinism_flags(
        answers, claims("a", "b", "c"), model="smollm2-135m-instruct", temperature=0.7, seed=7
    )
    assert [f.provider for f in flags] == ["c"]
    assert flags[0].peers == ("a", "b") and flags[0].weights == HASH


def test_two_providers_disagreeing_are_both_flagged() -> None:
    # Two claims of one deterministic output that differ: nobody can tell which one lies.
    flags = determinism_flags(
        {"a": "4", "b": "5"},
        claims("a", "b"),
        model="smollm2-135m-instruct",
        temperature=0,
        seed=None,
    )
    assert sorted(f.provider for f in flags) == ["a", "b"]


def test_no_flag_without_deterministic_settings_or_shared_claim() -> None:
    answers = {"a": "4", "b": "5"}
    model = "smollm2-135m-instruct"
    # Sampling without a seed: different answers are expected.
    assert (
        determinism_flags(answers, claims("a", "b"), model=model, temperature=0.7, seed=None) == []
    )
    # Different weights, or the same weights under different engines, may differ.
    mixed = {**claims("a"), **claims("b", weights=OTHER)}
    assert determinism_flags(answers, mixed, model=model, temperature=0, seed=1) == []
    engines = {**claims("a"), **claims("b", engine="vllm")}
    assert determinism_flags(answers, engines, model=model, temperature=0, seed=1) == []
    # Same claim, same answer: nothing to flag; a claim for another model does not count.
    same = {"a": "4", "b": "4"}
    assert determinism_flags(same, claims("a", "b"), model=model, temperature=0, seed=1) == []
    assert determinism_flags(answers, claims("a", "b"), model="other", temperature=0, seed=1) == []


def test_ledger_keeps_flags(tmp_path: Path) -> None:
    path = tmp_path / "rep.sqlite"
    flag = DeterminismFlag("c", "smollm2-135m-instruct", HASH, "llama.cpp", ("a", "b"))
    with ReputationLedger(path, customer="me", clock=lambda: 100.0) as ledger:
        assert ledger.record_flags([flag]) == 1
        assert ledger.record_flags([]) == 0
    with ReputationLedger(path, customer="me") as again:
        assert again.flags() == [flag]
        assert again.flags("a") == []
    with ReputationLedger(path, customer="someone else") as other:
        assert other.flags() == []


# --- SwarmClient records the flags by itself -------------------------------------------------


async def test_swarm_client_flags_same_claims_that_disagree(relay: Relay) -> None:
    """Three providers announce the same GGUF hash and engine; asked with a seed, one answers
    differently. The client's ledger holds the flag after the job, without the caller asking;
    asked without a seed (sampling), the same disagreement is expected and not flagged."""
    model = "smollm2-135m-instruct"
    weights = ((model, HASH, "llama.cpp"),)
    liar = ScriptedProvider([relay.url], "Lyon")
    honest = [ScriptedProvider([relay.url], "Paris", gate=liar.answered) for _ in range(2)]
    async with contextlib.AsyncExitStack() as stack:
        for p in (liar, *honest):
            await stack.enter_async_context(p)
            await p.send(
                announcement(
                    p.keys, int(time.time()), models=(model,), weights=weights, payment="free"
                )
            )
        ledger = ReputationLedger(customer=CUSTOMER.public_key)
        selector = Selector(directory=ProviderDirectory(), ledger=ledger, policy=Broadcast())
        targets = [liar.pubkey, *(h.pubkey for h in honest)]
        async with SwarmClient(CUSTOMER, [relay.url], selector=selector) as swarm:
            unseeded = await swarm.complete(
                "Capital of France?", model=model, temperature=0.7, targets=targets, timeout=10
            )
            assert unseeded.dissenting == (liar.pubkey,)
            assert ledger.flags() == []
            liar.answered.clear()
            seeded = await swarm.complete(
                "Capital of France?",
                model=model,
                temperature=0.7,
                seed=7,
                targets=targets,
                timeout=10,
            )
            assert seeded.dissenting == (liar.pubkey,)
        flags = ledger.flags()
        assert [f.provider for f in flags] == [liar.pubkey]
        assert flags[0].weights == HASH and flags[0].engine == "llama.cpp"
        assert set(flags[0].peers) == {h.pubkey for h in honest}
