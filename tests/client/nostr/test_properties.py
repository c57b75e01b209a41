"""Round trips for random inputs (hypothesis): event JSON, NIP-19, NIP-44."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client import Event, Keys
from client.nostr import nip19, nip44

KEYS = [Keys.generate() for _ in range(3)]
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
tags = st.lists(st.lists(text, min_size=1, max_size=4), max_size=5)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))


def _event_round_trip(content: str, tag_list: list[list[str]], kind: int, ts: int) -> None:
    ev = Event.create(KEYS[0], kind, content, tag_list, created_at=ts)
    back = Event.from_json(ev.to_json())
    assert back == ev and back.verify()


def _nip19_round_trip(data: bytes, relays: list[str], kind: int | None) -> None:
    for hrp in nip19.BARE:
        assert nip19.decode(nip19.encode(hrp, data)) == (hrp, data)
    pointer = nip19.EventPointer(data.hex(), tuple(relays), KEYS[1].public_key, kind)
    assert nip19.decode(nip19.encode("nevent", pointer)) == ("nevent", pointer)
    profile = nip19.ProfilePointer(data.hex(), tuple(relays))
    assert nip19.decode(nip19.encode("nprofile", profile)) == ("nprofile", profile)


CK = nip44.conversation_key(KEYS[0].secret_hex, KEYS[1].public_key)


def _nip44_round_trip(plaintext: str) -> None:
    payload = nip44.encrypt(plaintext, CK)
    assert nip44.decrypt(payload, CK) == plaintext


relay = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=60)
args19 = (
    st.binary(min_size=32, max_size=32),
    st.lists(relay, max_size=3),
    st.none() | st.integers(0, 2**32 - 1),
)
args01 = (text, tags, st.integers(0, 65535), st.integers(0, 2**40))


@FAST
@given(*args01)
def test_event_json_round_trip(content: str, tag_list: list[list[str]], kind: int, ts: int) -> None:
    _event_round_trip(content, tag_list, kind, ts)


@FAST
@given(*args19)
def test_nip19_round_trip(data: bytes, relays: list[str], kind: int | None) -> None:
    _nip19_round_trip(data, relays, kind)


@FAST
@given(text.filter(bool))
def test_nip44_round_trip(plaintext: str) -> None:
    _nip44_round_trip(plaintext)


@pytest.mark.fuzz
@FUZZ
@given(*args01)
def test_fuzz_event_json_round_trip(
    content: str, tag_list: list[list[str]], kind: int, ts: int
) -> None:
    _event_round_trip(content, tag_list, kind, ts)


@pytest.mark.fuzz
@FUZZ
@given(*args19)
def test_fuzz_nip19_round_trip(data: bytes, relays: list[str], kind: int | None) -> None:
    _nip19_round_trip(data, relays, kind)


@pytest.mark.fuzz
@FUZZ
@given(text.filter(bool))
def test_fuzz_nip44_round_trip(plaintext: str) -> None:
    _nip44_round_trip(plaintext)


@FAST
@given(
    text, tags, st.integers(0, 65535), st.integers(0, 2**40), st.binary(min_size=32, max_size=32)
)
def test_canonical_fast_path_equals_plain_json(
    content: str, tag_list: list[list[str]], kind: int, ts: int, pub: bytes
) -> None:
    import json

    from client.nostr.event import canonical

    reference = json.dumps(
        [0, pub.hex(), ts, kind, tag_list, content], separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    assert canonical(pub.hex(), ts, kind, tag_list, content) == reference
