"""Keys, events, filters and wire messages: behaviour and typed errors on bad input."""

from __future__ import annotations

import json

import pytest

from client import Event, Filter, Keys
from client.nostr import messages as m
from client.nostr import nip19
from client.nostr.errors import (
    Bech32Error,
    InvalidEvent,
    InvalidFilter,
    InvalidId,
    InvalidKey,
    InvalidMessage,
    InvalidSignature,
    NostrSwarmError,
)
from client.nostr.keys import parse_pubkey


def test_keys_forms_round_trip() -> None:
    k = Keys.generate()
    assert Keys.from_secret(k.secret_hex) == k
    assert Keys.from_secret(k.nsec) == k
    assert Keys.from_secret(k.secret_hex.upper()) == k
    assert parse_pubkey(k.npub) == k.public_key
    assert len(k.public_key) == 64 and k.npub.startswith("npub1") and k.nsec.startswith("nsec1")
    assert k.secret_hex not in repr(k)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "zz" * 32,
        "00" * 32,
        "ff" * 32,
        "12",
        "nsec1qqqq",
        "npub180cvv07tjdrrgpa0j7j7tmnyl2yr6yr7l8j4s3evf6u64th6gkwsyjh6w6",
    ],
)
def test_bad_secret_keys_raise_invalid_key(bad: str) -> None:
    with pytest.raises(InvalidKey):
        Keys.from_secret(bad)


def test_event_create_verify_and_tamper() -> None:
    k = Keys.generate()
    ev = Event.create(k, 1, "hello", [["t", "x"]], created_at=1_700_000_000)
    assert ev.verify() and ev.pubkey == k.public_key and ev.created_at == 1_700_000_000
    assert Event.from_json(ev.to_json()) == ev

    tampered = Event.from_json(ev.to_json())
    tampered.content = "hellO"
    assert not tampered.verify()
    with pytest.raises(InvalidId):
        tampered.check()

    other = Event.create(Keys.generate(), 1, "hello", [["t", "x"]], created_at=1_700_000_000)
    swapped = Event.from_json(ev.to_json())
    swapped.sig = other.sig  # right id, signature by someone else
    with pytest.raises(InvalidSignature):
        swapped.check()
    # Signing someone else's id under our pubkey fails too.
    stolen = Event(other.id, ev.pubkey, other.created_at, 1, other.tags, other.content, other.sig)
    assert not stolen.verify()


def test_event_json_keeps_unicode_raw() -> None:
    ev = Event.create(Keys.generate(), 1, "ö🌍\u2028")
    text = ev.to_json()
    assert "ö🌍" in text and "\\u" not in text.replace("\\u2028", "")
    assert Event.from_json(text.encode("utf-8")).verify()


def _good() -> dict:
    return Event.create(Keys.generate(), 1, "x").to_dict()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("sig"),
        lambda d: d.update(id=d["id"].upper()),
        lambda d: d.update(id=d["id"][:-1]),
        lambda d: d.update(pubkey="g" * 64),
        lambda d: d.update(created_at="1"),
        lambda d: d.update(created_at=True),
        lambda d: d.update(created_at=-5),
        lambda d: d.update(created_at=1.5),
        lambda d: d.update(kind=70000),
        lambda d: d.update(kind=None),
        lambda d: d.update(tags="x"),
        lambda d: d.update(tags=[[]]),
        lambda d: d.update(tags=[["e", 1]]),
        lambda d: d.update(tags=[["e", None]]),
        lambda d: d.update(tags=["e"]),
        lambda d: d.update(content=5),
        lambda d: d.update(sig="00" * 63),
    ],
)
def test_malformed_events_raise_invalid_event(mutate) -> None:  # type: ignore[no-untyped-def]
    d = _good()
    mutate(d)
    with pytest.raises(InvalidEvent):
        Event.from_dict(d)


@pytest.mark.parametrize("text", ["", "{", "[]", "null", "42", '{"id": 1}', b"\xff\xfe"])
def test_event_from_bad_json(text: str | bytes) -> None:
    with pytest.raises(InvalidEvent):
        Event.from_json(text)


def test_lone_surrogate_is_refused() -> None:
    with pytest.raises(InvalidEvent):
        Event.create(Keys.generate(), 1, "bad \ud800 surrogate")


def test_filter_matching() -> None:
    a, b = Keys.generate(), Keys.generate()
    ev = Event.create(
        a, 5050, "", [["e", "1" * 64], ["p", b.public_key], ["t", "ai"]], created_at=100
    )
    assert Filter(kinds=[5050]).matches(ev)
    assert not Filter(kinds=[1]).matches(ev)
    assert Filter(authors=[a.public_key], since=100, until=100).matches(ev)
    assert not Filter(since=101).matches(ev) and not Filter(until=99).matches(ev)
    assert Filter(ids=[ev.id]).matches(ev) and not Filter(ids=["0" * 64]).matches(ev)
    assert Filter(tags={"p": [b.public_key], "t": ["x", "ai"]}).matches(ev)
    assert not Filter(tags={"p": [a.public_key]}).matches(ev)
    assert not Filter(tags={"q": ["x"]}).matches(ev)
    f = Filter.from_dict({"kinds": [5050], "#e": ["1" * 64], "limit": 3})
    assert f.matches(ev) and f.limit == 3
    assert Filter.from_dict(f.to_dict()) == f


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {"kinds": "1"},
        {"kinds": [True]},
        {"kinds": [-1]},
        {"ids": ["ABC"]},
        {"authors": ["a" * 63]},
        {"#e": ["not-hex"]},
        {"#t": [1]},
        {"since": "0"},
        {"limit": -1},
        {"bogus": 1},
        {"#ab": ["x"]},
    ],
)
def test_bad_filters(bad: object) -> None:
    with pytest.raises(InvalidFilter):
        Filter.from_dict(bad)


def test_client_messages_round_trip() -> None:
    ev = Event.create(Keys.generate(), 1, "hi")
    parsed = m.parse_client_message(m.event_message(ev))
    assert isinstance(parsed, m.ClientEvent) and parsed.event == ev
    req = m.parse_client_message(
        m.req_message("s1", [Filter(kinds=[1]), Filter(authors=[ev.pubkey])])
    )
    assert isinstance(req, m.ClientReq) and req.sub_id == "s1" and len(req.filters) == 2
    assert m.parse_client_message(m.close_message("s1")) == m.ClientClose("s1")
    auth = m.parse_client_message(m.auth_message(ev))
    assert isinstance(auth, m.ClientAuth)
    count = m.parse_client_message(m.count_message("c", [Filter(kinds=[1])]))
    assert isinstance(count, m.ClientCount)


def test_relay_messages_round_trip() -> None:
    ev = Event.create(Keys.generate(), 1, "hi")
    got = m.parse_relay_message(m.relay_event_message("s", ev.to_json()))
    assert isinstance(got, m.RelayEvent) and got.event == ev and got.sub_id == "s"
    ok = m.parse_relay_message(m.ok_message(ev.id, False, "rate-limited: slow down"))
    assert ok == m.RelayOk(ev.id, False, "rate-limited: slow down") and ok.prefix == "rate-limited"
    assert m.parse_relay_message(m.eose_message("s")) == m.RelayEose("s")
    closed = m.parse_relay_message(m.closed_message("s", "auth-required: please"))
    assert isinstance(closed, m.RelayClosed) and closed.prefix == "auth-required"
    assert m.parse_relay_message(m.notice_message("hey")) == m.RelayNotice("hey")
    assert m.parse_relay_message(m.auth_challenge_message("ch")) == m.RelayAuth("ch")
    assert m.parse_relay_message(m.count_result_message("c", 7)) == m.RelayCount("c", 7)
    assert m.split_prefix("no prefix here") == ("", "no prefix here")


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "{}",
        "[]",
        "[1]",
        '["FOO"]',
        '["EVENT"]',
        '["EVENT", {}, {}]',
        '["REQ"]',
        '["REQ", "s"]',
        '["REQ", "", {}]',
        '["REQ", "' + "x" * 65 + '", {}]',
        '["REQ", "s", {"kinds": "x"}]',
        '["CLOSE"]',
        '["CLOSE", 5]',
        '["AUTH", "x"]',
    ],
)
def test_bad_client_messages_raise_typed_errors(text: str) -> None:
    with pytest.raises(NostrSwarmError) as info:
        m.parse_client_message(text)
    assert isinstance(info.value, InvalidMessage | InvalidEvent | InvalidFilter)
    assert str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        '["OK", "x", "true", ""]',
        '["OK", "x", true]',
        '["EOSE"]',
        '["CLOSED", "s"]',
        '["NOTICE", 1]',
        '["COUNT", "s", {"count": "1"}]',
        '["EVENT", "s"]',
        '["WHAT", 1]',
    ],
)
def test_bad_relay_messages_raise_typed_errors(text: str) -> None:
    with pytest.raises(NostrSwarmError):
        m.parse_relay_message(text)


def test_nip19_bad_input() -> None:
    k = Keys.generate()
    good = k.npub
    with pytest.raises(Bech32Error):
        nip19.decode(good[:-1] + ("q" if good[-1] != "q" else "p"))
    with pytest.raises(Bech32Error):
        nip19.decode(good.upper()[:10] + good[10:])  # mixed case
    with pytest.raises(Bech32Error):
        nip19.decode("npub1" + "q" * 6000)
    with pytest.raises(Bech32Error):
        nip19.encode("npub", b"\x00" * 31)
    with pytest.raises(Bech32Error):
        nip19.encode("nbogus", b"\x00" * 32)
    import bech32

    # A valid bech32 string whose TLV is truncated.
    words = bech32.convertbits(bytes([0, 32]) + b"\x01" * 10, 8, 5)
    with pytest.raises(Bech32Error):
        nip19.decode(bech32.bech32_encode("nprofile", words))
    # Unknown TLV types are skipped.
    payload = bytes([0, 32]) + bytes.fromhex(k.public_key) + bytes([9, 2]) + b"zz"
    text = bech32.bech32_encode("nprofile", bech32.convertbits(payload, 8, 5))
    assert nip19.decode(text) == ("nprofile", nip19.ProfilePointer(k.public_key, ()))
    assert nip19.decode("nostr:" + good) == ("npub", bytes.fromhex(k.public_key))


def test_wire_json_is_compact_and_raw() -> None:
    ev = Event.create(Keys.generate(), 1, "é")
    assert json.loads(m.event_message(ev))[1]["content"] == "é"
    assert " " not in m.req_message("s", [Filter(kinds=[1])])
