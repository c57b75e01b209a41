"""A 2-of-3 quorum on a paragraph with the real model: three provider nodes run SmolLM2-135M at
temperature 0.7 on different seeds (so they word the answer differently), a fourth returns a
scripted wrong paragraph (the right words, negated claims). With ``auto`` the honest
providers agree, the liar dissents and is not paid; with ``normalized`` nobody agrees."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.customer.quorum import comparator_by_name
from client.customer.swarm import SwarmClient
from client.nostr.errors import QuorumNotReached
from client.nostr.keys import Keys
from client.wallet import NwcWallet, Payer, PaymentLedger, SwarmPayHook
from provider import demo
from router.backends.base import LmBackend
from router.backends.mock import MockBackend

pytestmark = pytest.mark.local_model

PROMPT = "Explain why the sky is blue. Answer in one short paragraph."
# What a liar that knows the topic's words returns: the honest wording, negated claims (an
# embedding model scores it as close to the honest answers as they are to each other).
WRONG = (
    "The sky is not blue because of Rayleigh scattering. Sunlight is not scattered by the air "
    "at all; the sky only looks blue because it reflects the colour of the oceans."
)


def seeded_backend(index: int, model_path: str | None) -> LmBackend:
    from router.backends.llamacpp import LlamaCppBackend

    # Each honest operator samples with its own seed, as independent providers would.
    return LlamaCppBackend(model_path, name=f"local-{index}", n_threads=1, seed=index)


def wrong_backend(model: str) -> LmBackend:
    return MockBackend("liar").with_model(model).with_response(WRONG).with_usage(30, 40)


@pytest.fixture
def scripted_liar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "liar_backend", wrong_backend)


async def ask(swarm_: demo.DemoSwarm, workdir: Path, comparator_name: str) -> object:
    async with NwcWallet(swarm_.customer_uri, timeout=10) as wallet:
        payer = Payer(wallet, PaymentLedger(workdir / f"payments-{comparator_name}.db"))
        async with SwarmClient(Keys.generate(), [swarm_.relay_url], pay=SwarmPayHook(payer)) as c:
            return await c.complete(
                PROMPT,
                model=swarm_.model,
                quorum=2,
                max_sats=50,
                timeout=45,
                max_tokens=80,
                temperature=0.7,
                providers_expected=len(swarm_.providers),
                comparator=comparator_by_name(comparator_name, prompt=PROMPT),
            )


async def test_auto_reaches_a_paragraph_quorum_and_the_liar_is_not_paid(
    tmp_path: Path, scripted_liar: None
) -> None:
    async with demo.demo_swarm(workdir=tmp_path, backend_factory=seeded_backend) as swarm_:
        liar = next(p for p in swarm_.providers if not p.honest)
        honest = {p.pubkey for p in swarm_.providers if p.honest}
        before = await swarm_.balances()
        result = await ask(swarm_, tmp_path, "auto")
        assert result.reached  # type: ignore[attr-defined]
        decision = result.decision  # type: ignore[attr-defined]
        assert "auto picked" in decision.note
        assert len(decision.agreeing) == 2 and set(decision.agreeing) <= honest
        assert liar.pubkey not in decision.agreeing
        agreed_texts = {decision.vote_of(p).text for p in decision.agreeing}
        assert len(agreed_texts) == 2  # really worded differently: exact would not have agreed
        if decision.vote_of(liar.pubkey) is not None:  # it answered before the quorum
            assert liar.pubkey in decision.dissenting
            assert dict(decision.dissent_scores)[liar.pubkey] < 1.0
        after = await swarm_.balances()
        paid = {p.name: after[p.name] - before[p.name] for p in swarm_.providers}
        assert paid[liar.name] == 0
        assert sum(paid.values()) > 0
        assert all(paid[p.name] > 0 for p in swarm_.providers if p.pubkey in decision.agreeing)


async def test_normalized_does_not_agree_on_sampled_paragraphs(
    tmp_path: Path, scripted_liar: None
) -> None:
    async with demo.demo_swarm(workdir=tmp_path, backend_factory=seeded_backend) as swarm_:
        with pytest.raises(QuorumNotReached):
            await ask(swarm_, tmp_path, "normalized")
