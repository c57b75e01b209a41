"""The weights claim travels in the NIP-89 announcement (provider/announce.py), is read by the
directory, and two providers that claim the same weights and settings but answer differently
are flagged in reputation."""

from __future__ import annotations

import json

from client.customer.directory import parse_announcement
from client.customer.reputation import ReputationLedger, determinism_flags, model_claims
from client.nostr.event import Event
from client.nostr.keys import Keys
from provider.announce import Offer, build_announcement
from provider.pricing import Pricing

MODEL = "smollm2-135m-instruct"
GGUF = "sha256:" + "0f" * 32


def announce(keys: Keys, weights: tuple[tuple[str, str, str], ...]) -> Event:
    offer = Offer(
        models=[MODEL],
        pricing=Pricing(),
        payment="free",
        max_tokens=256,
        max_prompt_chars=4000,
        heartbeat_s=60,
        weights=weights,
    )
    return build_announcement(keys, offer, created_at=1_700_000_000)


def test_announcement_carries_the_model_tag() -> None:
    event = announce(Keys.generate(), ((MODEL, GGUF, "llama.cpp"),))
    assert ["model", MODEL, GGUF, "llama.cpp"] in event.tags
    info = parse_announcement(event)
    assert info.model_weights == {MODEL: (GGUF, "llama.cpp")}
    assert json.loads(event.content)["nostrSwarm"]["models"] == [MODEL]


def test_malformed_model_tags_are_ignored() -> None:
    keys = Keys.generate()
    event = Event.create(
        keys,
        31990,
        "{}",
        [
            ["k", "5050"],
            ["model", MODEL, "md5:abc", "x"],
            ["model", "other", "sha256:" + "zz" * 32],
            ["model", "third", "sha256:" + "ab" * 32],
        ],
        created_at=1_700_000_000,
    )
    assert parse_announcement(event).model_weights == {"third": ("sha256:" + "ab" * 32, "")}


def test_same_weights_same_seed_different_answers_are_flagged() -> None:
    a, b, c = Keys.generate(), Keys.generate(), Keys.generate()
    infos = [parse_announcement(announce(k, ((MODEL, GGUF, "llama.cpp"),))) for k in (a, b, c)]
    claims = model_claims(infos, MODEL)
    assert set(claims) == {a.public_key, b.public_key, c.public_key}
    answers = {
        a.public_key: "Light scatters off the air.",
        b.public_key: "Light scatters off the air.",
        c.public_key: "The sky reflects the sea.",  # claims the same run, returns something else
    }
    flags = determinism_flags(answers, claims, model=MODEL, temperature=0.7, seed=42)
    assert [f.provider for f in flags] == [c.public_key]
    ledger = ReputationLedger(":memory:", customer="me")
    ledger.record_flags(flags)
    assert [f.provider for f in ledger.flags()] == [c.public_key]
    # A provider announcing no weights is never flagged: it claimed nothing.
    bare = parse_announcement(announce(Keys.generate(), ()))
    assert model_claims([bare], MODEL) == {}
