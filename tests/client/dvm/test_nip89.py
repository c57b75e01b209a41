"""NIP-89 announcements and heartbeats (client/dvm/nip89.py): what a provider builds, the customer
parses back to the same values; the liveness rule is one rule. No I/O."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.dvm.nip89 import (
    KIND_HANDLER,
    KIND_HEARTBEAT,
    Announcement,
    PriceList,
    build_announcement,
    default_d_tag,
    is_alive,
    parse_announcement,
    parse_heartbeat,
)
from client.nostr.errors import InvalidAnnouncement
from client.nostr.event import Event
from client.nostr.keys import Keys

KEYS = Keys.generate()
NOW = 1_700_000_000

prices = st.builds(
    PriceList,
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
)
names = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=20
)
announcements = st.builds(
    Announcement,
    models=st.lists(names, max_size=5, unique=True).map(tuple),
    price=prices,
    payment=st.sampled_from(["free", "after", "before"]),
    max_tokens=st.integers(1, 10**6),
    max_prompt_chars=st.integers(1, 10**7),
    heartbeat_s=st.integers(1, 10**5),
    model_prices=st.dictionaries(names, prices, max_size=3),
    name=st.text(max_size=30),
    lud16=st.sampled_from(["", "node@example.com"]),
    weights=st.lists(
        st.tuples(names, st.just("sha256:" + "ab" * 32), st.just("llama.cpp")), max_size=2
    ).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(a=announcements, online=st.booleans())
def test_what_a_provider_announces_the_customer_reads_back(a: Announcement, online: bool) -> None:
    event = build_announcement(KEYS, a, created_at=NOW, online=online)
    assert event.verify() and event.kind == KIND_HANDLER
    info = parse_announcement(event, received_at=NOW + 1)
    assert info.pubkey == KEYS.public_key and info.created_at == NOW
    assert info.d_tag == default_d_tag(KEYS.public_key)
    assert info.models == a.models and info.swarm and not info.foreign
    assert info.max_tokens == a.max_tokens and info.max_prompt_chars == a.max_prompt_chars
    assert info.heartbeat_s == a.heartbeat_s and info.online == online
    assert info.expiration == NOW + 3 * a.heartbeat_s
    if a.is_free:
        assert info.payment == "free" and info.price == PriceList()
    else:
        assert info.payment == a.payment and info.price == a.price
        assert dict(info.model_prices) == dict(a.model_prices)
    assert info.lud16 == a.lud16
    expected_weights = {}
    for model, digest, engine in a.weights:
        expected_weights.setdefault(model, (digest, engine))
    assert dict(info.model_weights) == expected_weights
    # The heartbeat rule is the parsed provider's status, whoever asks.
    for age in (0, a.heartbeat_s, 2 * a.heartbeat_s + 60, 2 * a.heartbeat_s + 61):
        assert is_alive(event, NOW + age) == info.alive(NOW + age)


def test_liveness_window_and_offline() -> None:
    a = Announcement(
        models=("m",), price=PriceList(), payment="free", max_tokens=1, max_prompt_chars=1,
        heartbeat_s=100,
    )  # fmt: skip
    ev = build_announcement(KEYS, a, created_at=NOW)
    assert is_alive(ev, NOW + 260) and not is_alive(ev, NOW + 261)
    assert not is_alive(build_announcement(KEYS, a, created_at=NOW, online=False), NOW)
    foreign = Event.create(KEYS, KIND_HANDLER, json.dumps({"name": "x"}), [["k", "5050"]])
    assert parse_announcement(foreign).foreign and not is_alive(foreign, foreign.created_at)
    assert not is_alive(Event.create(KEYS, 1, "hi", []), NOW)


def test_the_amount_a_dvm_client_reads_is_the_minimum_in_whole_sats() -> None:
    a = Announcement(
        models=("m",), price=PriceList(1000, 3000, 2500), payment="after", max_tokens=1,
        max_prompt_chars=1, heartbeat_s=60, kinds=(5050, 5001),
    )  # fmt: skip
    ev = build_announcement(KEYS, a, created_at=NOW)
    assert json.loads(ev.content)["amount"] == "3"
    assert [t[1] for t in ev.tags_named("k")] == ["5050", "5001"]
    with pytest.raises(InvalidAnnouncement, match="heartbeat"):
        build_announcement(KEYS, dataclasses.replace(a, heartbeat_s=0), created_at=NOW)


def test_heartbeat_parsing() -> None:
    beat = Event.create(
        KEYS, KIND_HEARTBEAT, "", [["d", "x"], ["expiration", str(NOW + 60)]], created_at=NOW
    )
    hb = parse_heartbeat(beat)
    assert (hb.pubkey, hb.created_at, hb.until, hb.d_tag) == (KEYS.public_key, NOW, NOW + 60, "x")
    far = Event.create(KEYS, KIND_HEARTBEAT, "", [["expiration", str(NOW + 10**6)]], created_at=NOW)
    assert parse_heartbeat(far).until == NOW + 3600
    with pytest.raises(InvalidAnnouncement):
        parse_heartbeat(Event.create(KEYS, KIND_HANDLER, "", [], created_at=NOW))
