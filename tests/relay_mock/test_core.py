"""The protocol core without sockets: messages in, replies out, time passed in."""

from __future__ import annotations

import json

from client.nostr.event import Event
from client.nostr.keys import Keys
from relay_mock import Limits
from relay_mock.core import RelayCore, ok_message, same_relay

NOW = 1_700_000_000.0


def peer_of(core: RelayCore, now: float = NOW, challenge: str | None = None):  # type: ignore[no-untyped-def]
    out: list[list[object]] = []
    peer = core.connect(lambda text: out.append(json.loads(text)), now, challenge)
    return peer, out


def event_msg(event: Event) -> str:
    return '["EVENT",' + event.to_json() + "]"


def test_event_req_and_live_delivery_between_peers() -> None:
    core = RelayCore()
    alice, alice_out = peer_of(core)
    bob, bob_out = peer_of(core)
    keys = Keys.generate()
    stored = Event.create(keys, 1, "stored", created_at=int(NOW))
    core.handle(alice, event_msg(stored), NOW)
    assert alice_out == [["OK", stored.id, True, ""]]
    core.handle(bob, json.dumps(["REQ", "s", {"kinds": [1]}]), NOW)
    assert [m[0] for m in bob_out] == ["EVENT", "EOSE"]
    live = Event.create(keys, 1, "live", created_at=int(NOW))
    core.handle(alice, event_msg(live), NOW)
    assert bob_out[-1] == ["EVENT", "s", live.to_dict()]
    core.disconnect(bob)
    core.handle(alice, event_msg(Event.create(keys, 1, "nobody", created_at=int(NOW))), NOW)
    assert len(bob_out) == 3 and len(core.live) == 0


def test_rate_limit_refills_with_the_clock_passed_in() -> None:
    core = RelayCore(limits=Limits(event_rate=1, event_burst=1))
    peer, out = peer_of(core)
    keys = Keys.generate()
    for t in (NOW, NOW + 0.5, NOW + 1.0):
        core.handle(peer, event_msg(Event.create(keys, 1, str(t), created_at=int(NOW))), t)
    assert [m[2] for m in out] == [True, False, True]


def test_auth_window_is_judged_by_the_time_passed_in() -> None:
    core = RelayCore(auth_required=True, relay_url="ws://127.0.0.1:9")
    peer, out = peer_of(core, challenge="c1")
    assert out == [["AUTH", "c1"]]
    keys = Keys.generate()
    auth = Event.create(
        keys, 22242, "", [["relay", "ws://127.0.0.1:9"], ["challenge", "c1"]], created_at=int(NOW)
    )
    core.handle(peer, '["AUTH",' + auth.to_json() + "]", NOW + 3600)
    assert out[-1][2] is False
    core.handle(peer, '["AUTH",' + auth.to_json() + "]", NOW + 60)
    assert out[-1] == ["OK", auth.id, True, ""]
    assert peer.authed == {keys.public_key}


def test_ok_message_is_valid_json_with_escaped_reason() -> None:
    eid = "ab" * 32
    assert json.loads(ok_message(eid, True)) == ["OK", eid, True, ""]
    reason = 'invalid: "quoted" \\ and ünï'
    assert json.loads(ok_message(eid, False, reason)) == ["OK", eid, False, reason]


def test_same_relay() -> None:
    assert same_relay("ws://localhost:7447/", "ws://127.0.0.1:7447")
    assert same_relay("wss://relay.example.com", "wss://relay.example.com")
    assert not same_relay("ws://127.0.0.1:7448", "ws://127.0.0.1:7447")
    assert not same_relay("http://127.0.0.1:7447", "ws://127.0.0.1:7447")
    assert not same_relay("ws://127.0.0.1:notaport", "ws://127.0.0.1:7447")


def test_a_verified_event_that_comes_again_is_not_verified_again(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from client.nostr import secp

    calls: list[bytes] = []
    real = secp.verify

    def counting(pk: bytes, msg: bytes, sig: bytes) -> bool:
        calls.append(msg)
        return real(pk, msg, sig)

    monkeypatch.setattr(secp, "verify", counting)
    core = RelayCore()
    peer, out = peer_of(core)
    ephemeral = Event.create(Keys.generate(), 20001, "typing", created_at=int(NOW))
    for _ in range(3):
        core.handle(peer, event_msg(ephemeral), NOW)
    assert out == [["OK", ephemeral.id, True, ""]] * 3 and len(calls) == 1
    # The same id with another signature is checked, and refused.
    forged = ephemeral.to_dict() | {"sig": "00" * 64}
    core.handle(peer, json.dumps(["EVENT", forged]), NOW)
    assert out[-1][:3] == ["OK", ephemeral.id, False] and len(calls) == 2
    # Content changed under a known signature: the id no longer matches.
    altered = ephemeral.to_dict() | {"content": "other"}
    core.handle(peer, json.dumps(["EVENT", altered]), NOW)
    assert out[-1][:3] == ["OK", ephemeral.id, False] and "sha256" in out[-1][3]
