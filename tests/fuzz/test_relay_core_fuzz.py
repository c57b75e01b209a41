"""The relay's protocol core under random frames (pure: no sockets, time passed in).

Whatever two connections send, in any order, under three relay configurations:

- ``RelayCore.handle`` never raises;
- every reply is a NIP-01 relay message our own client parses (forwarded events verify), except a
  ``CLOSED`` that echoes back a subscription id the client got wrong;
- every ``EVENT`` whose object claims a plausible id gets exactly one ``OK`` for that id, and on
  the default configuration that OK is ``true`` exactly when the client's own parser
  (``parse_client_message``, which verifies) accepts the message (kind 22242 excepted, and an
  id already stored, answered ``duplicate`` before any check: nothing is stored or forwarded);
- only authentic events are stored; no connection holds more subscriptions than allowed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given

from client.nostr.errors import ProtocolError
from client.nostr.event import Event
from client.nostr.messages import ClientEvent, RelayOk, parse_client_message, parse_relay_message
from relay_mock import Limits
from relay_mock.core import RelayCore
from relay_mock.record import event_id_of

from .mutate import EVENTS, NOW, Mutator
from .profiles import DEEP, QUICK, seeds

CONFIGS: list[dict[str, Any]] = [
    {},
    {
        "limits": Limits(
            max_subscriptions=2,
            max_filters=2,
            max_limit=3,
            max_message_length=300,
            max_content_length=20,
            max_event_tags=2,
            event_rate=2,
            event_burst=2,
            created_at_lower_limit=60,
            created_at_upper_limit=60,
        )
    },
    {"auth_required": True, "relay_url": "ws://127.0.0.1:7447"},
]


EXEMPT = ("invalid: kind 22242", "duplicate:")


def check_reply(text: str) -> None:
    try:
        parse_relay_message(text, verify=True)
    except ProtocolError:
        msg = json.loads(text)
        # A REQ with a bad subscription id is refused under the id as sent.
        assert msg[0] == "CLOSED" and msg[2].startswith("invalid: subscription id"), text


def _client_view(frame: str | bytes) -> tuple[str | None, bool | None]:
    """(claimed event id, whether the client's parser accepts it) for EVENT messages."""
    if not isinstance(frame, str):
        return None, None
    try:
        msg = json.loads(frame)
    except (ValueError, RecursionError):
        return None, None
    if type(msg) is not list or len(msg) < 2 or msg[0] != "EVENT":
        return None, None
    eid = event_id_of(msg[1])
    try:
        parsed = parse_client_message(frame, verify=True)
    except ProtocolError:
        return eid, False
    except RecursionError:
        return eid, None
    return eid, isinstance(parsed, ClientEvent)


def run_case(seed: int) -> None:
    m = Mutator(seed)
    config = m.r.randrange(len(CONFIGS))
    core = RelayCore(**CONFIGS[config])
    outs: list[list[str]] = [[], []]
    peers = [core.connect(out.append, NOW, challenge="c") for out in outs]
    for ev in m.r.sample(EVENTS, 3):  # stored events for REQs to find
        core.handle(peers[0], '["EVENT",' + ev.to_json() + "]", NOW)
    for out in outs:
        out.clear()
    for step in range(m.r.randrange(1, 6)):
        who = m.r.randrange(2)
        frame = m.client_frame()
        before = len(outs[who])
        core.handle(peers[who], frame, NOW + step * 0.1)
        replies = outs[who][before:]
        for text in replies:
            check_reply(text)
        eid, client_ok = _client_view(frame)
        if eid is None:
            continue
        oks = [r for r in map(parse_relay_message, replies) if isinstance(r, RelayOk)]
        assert [ok.event_id for ok in oks] == [eid], (frame, replies)
        # Exceptions: kind 22242 is never relayed, and a stored id is answered "duplicate"
        # before any check (nothing is stored or forwarded for it).
        ok = oks[0]
        if config == 0 and client_ok is not None and not ok.message.startswith(EXEMPT):
            assert ok.accepted == client_ok, (frame, ok)
    for out in outs:  # live events forwarded to the other connection parse and verify too
        for text in out:
            check_reply(text)
    for rec in core.store.all():
        assert Event.from_json(rec.raw, verify=True).id == rec.id
    for peer in peers:
        assert len(peer.subs) <= core.limits.max_subscriptions
    assert len(core.live) == sum(len(p.subs) for p in peers)


@QUICK
@given(seeds)
def test_relay_core_answers_any_frame(seed: int) -> None:
    run_case(seed)


@pytest.mark.fuzz
@DEEP
@given(seeds)
def test_fuzz_relay_core_answers_any_frame(seed: int) -> None:
    run_case(seed)
