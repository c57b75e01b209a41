"""The pure intake decision: ignore / refuse (with an actionable reason) / accept with a quote."""

from __future__ import annotations

import json

import pytest

from client.dvm.nip90 import JobSpec, build_encrypted_request, build_request
from client.nostr import nip04, nip44
from client.nostr.event import Event
from client.nostr.keys import Keys
from provider.intake import Accept, Ignore, IntakePolicy, ModelCatalog, Refuse, evaluate, screen
from provider.limits import Limits
from provider.pricing import Pricing

NOW = 1_700_000_000
ME = Keys.generate()
ALICE = Keys.generate()


def policy(**kw: object) -> IntakePolicy:
    base: dict[str, object] = {
        "keys": ME,
        "limits": Limits(max_prompt_chars=100, max_tokens=500, default_max_tokens=100),
        "pricing": Pricing(msats_per_1k_prompt=1000, msats_per_1k_completion=10_000),
        "payment": "after",
        "catalog": ModelCatalog(("llama3:latest", "phi3"), default="phi3"),
        "not_before": NOW - 10,
    }
    base.update(kw)
    return IntakePolicy(**base)  # type: ignore[arg-type]


def req(spec: JobSpec, created_at: int = NOW) -> Event:
    return build_request(ALICE, spec, created_at=created_at)


def test_accepts_broadcast_and_targeted_jobs_with_quote() -> None:
    d = screen(req(JobSpec(prompt="x" * 40, model="phi3", max_tokens=200)), policy(), NOW)
    assert isinstance(d, Accept)
    assert (d.model, d.max_tokens, d.prompt_tokens) == ("phi3", 200, 10)
    assert d.quote_msats == 10 + 2000
    d = screen(req(JobSpec(prompt="hi", targets=(ME.public_key,))), policy(), NOW)
    assert isinstance(d, Accept) and d.model == "phi3" and d.max_tokens == 100  # defaults


def test_free_policy_quotes_zero_and_ignores_bid() -> None:
    d = screen(req(JobSpec(prompt="hi", bid_msats=0)), policy(payment="free"), NOW)
    assert isinstance(d, Accept) and d.quote_msats == 0


def test_ollama_tag_is_implied() -> None:
    d = screen(req(JobSpec(prompt="hi", model="llama3")), policy(), NOW)
    assert isinstance(d, Accept) and d.model == "llama3:latest"


def test_ignores_jobs_for_others_stale_and_expired() -> None:
    other = Keys.generate().public_key
    assert screen(req(JobSpec(prompt="hi", targets=(other,))), policy(), NOW) == Ignore(
        "not_for_us"
    )
    assert screen(req(JobSpec(prompt="hi"), created_at=NOW - 11), policy(), NOW) == Ignore("stale")
    expired = req(JobSpec(prompt="hi", expiration=NOW))
    assert screen(expired, policy(), NOW) == Ignore("expired")
    assert isinstance(screen(expired, policy(), NOW - 1), Accept)


@pytest.mark.parametrize(
    ("spec", "reason", "words"),
    [
        (JobSpec(prompt="hi", model="gpt-9"), "unknown_model", "models: llama3:latest, phi3"),
        (JobSpec(prompt="x" * 101), "oversized", "at most 100 characters"),
        (JobSpec(prompt="hi", max_tokens=501), "max_tokens", "ask for at most 500"),
        (JobSpec(prompt="hi", max_tokens=100, bid_msats=10), "bid_too_low", "bid at least 1001"),
        (JobSpec(prompt="hi", params={"sealed": "rot13"}), "sealed", "nip44"),
        (JobSpec(prompt="hi", params={"temperature": "hot"}), "malformed", "temperature"),
    ],
)
def test_refusals_say_why(spec: JobSpec, reason: str, words: str) -> None:
    d = screen(req(spec), policy(), NOW)
    assert isinstance(d, Refuse), d
    assert d.reason == reason and words in d.message
    if reason == "bid_too_low":
        assert d.amount_msats == 1001


def test_malformed_events_are_refused_not_raised() -> None:
    no_input = Event.create(ALICE, 5050, "", [["param", "model", "phi3"]], created_at=NOW)
    d = screen(no_input, policy(), NOW)
    assert isinstance(d, Refuse) and d.reason == "malformed" and d.request.id == no_input.id
    url_input = Event.create(ALICE, 5050, "", [["i", "https://x", "url"]], created_at=NOW)
    d = screen(url_input, policy(), NOW)
    assert isinstance(d, Refuse) and d.reason == "unsupported_input" and "type text" in d.message


@pytest.mark.parametrize("scheme", ["nip44", "nip04"])
def test_encrypted_jobs_are_decrypted(scheme: str) -> None:
    spec = JobSpec(prompt="secret prompt", model="phi3", targets=(ME.public_key,))
    event = build_encrypted_request(ALICE, spec, ME.public_key, scheme=scheme, created_at=NOW)  # type: ignore[arg-type]
    d = screen(event, policy(), NOW)
    assert isinstance(d, Accept)
    assert d.request.prompt == "secret prompt" and d.request.encryption == scheme


def test_wrong_encryption_gets_actionable_error() -> None:
    stranger = Keys.generate()
    # Sealed to someone else's key but p-tagged to us: we cannot read it.
    payload = json.dumps([["i", "hi", "text"]])
    for content in (
        nip44.encrypt(payload, nip44.conversation_key(ALICE.secret_hex, stranger.public_key)),
        nip04.encrypt(payload, ALICE.secret_hex, stranger.public_key),
        "not encrypted at all",
    ):
        event = Event.create(
            ALICE, 5050, content, [["p", ME.public_key], ["encrypted"]], created_at=NOW
        )
        d = screen(event, policy(), NOW)
        assert isinstance(d, Refuse) and d.reason == "decrypt"
        assert "this node's public key" in d.message


def test_sealed_param_and_sampling_params() -> None:
    spec = JobSpec(prompt="hi", temperature=0.5, top_k=40, seed=7, params={"sealed": "NIP44"})
    d = screen(req(spec), policy(), NOW)
    assert isinstance(d, Accept)
    assert d.seal == "nip44"
    assert d.params == {"temperature": 0.5, "top_k": 40, "seed": 7}


def test_evaluate_without_bid_check() -> None:
    d = screen(req(JobSpec(prompt="hi", bid_msats=1)), policy(), NOW)
    assert isinstance(d, Refuse)
    assert isinstance(evaluate(d.request, policy(), check_bid=False), Accept)


def test_catalog_any_model_and_defaults() -> None:
    assert ModelCatalog((), any_model=True).resolve("whatever") == "whatever"
    assert ModelCatalog(("a", "b")).resolve(None) == "a"
    assert ModelCatalog(("a", "b"), default="b").resolve("  ") == "b"
    assert ModelCatalog(("a",)).resolve("c") is None
