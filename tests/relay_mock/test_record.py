"""The relay's fast event parse: the same bytes, the same verdicts as client.Event."""

from __future__ import annotations

import json

import pytest

from client.nostr.errors import InvalidEvent
from client.nostr.event import Event, canonical
from client.nostr.keys import Keys
from relay_mock.core import _loads
from relay_mock.record import fast_canonical, parse_record

PK = "ab" * 32


def test_fast_canonical_is_the_reference_for_every_code_point() -> None:
    # Every non-surrogate code point, in content and in a tag, in chunks (one call per chunk).
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for i in range(0, len(chars), 4096):
        text = "".join(chars[i : i + 4096])
        tags = [["t", text], ["x", "\\", '"', text[:7]]]
        assert fast_canonical(PK, 1, 1, tags, text) == canonical(PK, 1, 1, tags, text)
    for c in chars[:0x800]:  # one by one where the escapes live
        assert fast_canonical(PK, 0, 65535, [], c) == canonical(PK, 0, 65535, [], c)


def test_fast_canonical_refuses_lone_surrogates_like_the_reference() -> None:
    with pytest.raises(InvalidEvent, match="surrogate"):
        fast_canonical(PK, 1, 1, [], "a\ud800b")


@pytest.mark.parametrize("field", ["id", "pubkey", "sig"])
@pytest.mark.parametrize("bad", ["upper", "short", "space", "nonhex", "int"])
def test_each_hex_field_is_checked_and_named(field: str, bad: str) -> None:
    obj = Event.create(Keys.generate(), 1, "x").to_dict()
    value = obj[field]
    obj[field] = {
        "upper": value[:-1] + "A",
        "short": value[:-2],
        "space": value[:-2] + " a",
        "nonhex": value[:-1] + "g",
        "int": 5,
    }[bad]
    with pytest.raises(InvalidEvent, match=field):
        parse_record(obj, json.dumps(obj))


def test_all_digit_hex_is_fine() -> None:
    ev = Event.create(Keys.generate(), 1, "x").to_dict()
    ev["id"] = "1" * 64  # right form, wrong id: refused for the id, not its form
    with pytest.raises(InvalidEvent, match="sha256"):
        parse_record(ev, json.dumps(ev))


@pytest.mark.parametrize(
    "text",
    [
        '["EVENT",{"content":"\\ud800"}]',
        '["EVENT",NaN]',
        '["REQ","s",{"until":123456789012345678901234567890}]',
    ],
)
def test_loads_agrees_with_the_standard_library(text: str) -> None:
    assert _loads(text) == json.loads(text)


def test_an_integer_beyond_64_bits_in_an_event_is_still_invalid() -> None:
    from relay_mock.core import RelayCore

    core = RelayCore()
    out: list[str] = []
    peer = core.connect(out.append, 0)
    obj = Event.create(Keys.generate(), 1, "x").to_dict()
    text = json.dumps(["EVENT", obj]).replace(
        f'"created_at": {obj["created_at"]}', '"created_at": 123456789012345678901234567890'
    )
    core.handle(peer, text, 0)
    assert json.loads(out[0])[:3] == ["OK", obj["id"], False]
    assert "created_at" in json.loads(out[0])[3]
