"""NIP-01 wire messages in both directions: typed parse results and builders. No I/O.

Parsers take the JSON text of one websocket frame and return a dataclass or raise
:class:`InvalidMessage` (or :class:`InvalidEvent`/:class:`InvalidFilter` for a bad payload).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from client.nostr.errors import InvalidEvent, InvalidFilter, InvalidMessage
from client.nostr.event import Event, _dumps
from client.nostr.filter import Filter

MAX_SUB_ID = 64

# --- client -> relay --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientEvent:
    event: Event


@dataclass(frozen=True, slots=True)
class ClientReq:
    sub_id: str
    filters: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class ClientClose:
    sub_id: str


@dataclass(frozen=True, slots=True)
class ClientAuth:
    event: Event


@dataclass(frozen=True, slots=True)
class ClientCount:
    sub_id: str
    filters: tuple[Filter, ...]


ClientMessage = ClientEvent | ClientReq | ClientClose | ClientAuth | ClientCount

# --- relay -> client --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelayEvent:
    sub_id: str
    event: Event


@dataclass(frozen=True, slots=True)
class RelayOk:
    event_id: str
    accepted: bool
    message: str

    @property
    def prefix(self) -> str:
        return split_prefix(self.message)[0]


@dataclass(frozen=True, slots=True)
class RelayEose:
    sub_id: str


@dataclass(frozen=True, slots=True)
class RelayClosed:
    sub_id: str
    message: str

    @property
    def prefix(self) -> str:
        return split_prefix(self.message)[0]


@dataclass(frozen=True, slots=True)
class RelayNotice:
    message: str


@dataclass(frozen=True, slots=True)
class RelayAuth:
    challenge: str


@dataclass(frozen=True, slots=True)
class RelayCount:
    sub_id: str
    count: int


RelayMessage = RelayEvent | RelayOk | RelayEose | RelayClosed | RelayNotice | RelayAuth | RelayCount


def split_prefix(message: str) -> tuple[str, str]:
    """``"rate-limited: slow down"`` -> ``("rate-limited", "slow down")``; none -> ``("", msg)``."""
    head, sep, rest = message.partition(":")
    if sep and head and " " not in head:
        return head, rest.strip()
    return "", message


def _load(text: str | bytes) -> list[Any]:
    try:
        msg = json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: absurd nesting
        raise InvalidMessage(f"message is not valid JSON: {exc}") from None
    if not isinstance(msg, list) or not msg or not isinstance(msg[0], str):
        raise InvalidMessage("message must be a JSON array starting with a verb string")
    return msg


def _sub_id(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_SUB_ID:
        raise InvalidMessage(
            f"subscription id must be a non-empty string of at most {MAX_SUB_ID} characters"
        )
    return value


def parse_filters(items: list[Any]) -> tuple[Filter, ...]:
    return tuple(Filter.from_dict(f) for f in items)


def parse_client_message(text: str | bytes, *, verify: bool = True) -> ClientMessage:
    msg = _load(text)
    verb = msg[0]
    if verb == "EVENT":
        if len(msg) != 2:
            raise InvalidMessage("EVENT takes exactly one event")
        return ClientEvent(Event.from_dict(msg[1], verify=verify))
    if verb in ("REQ", "COUNT"):
        if len(msg) < 3:
            raise InvalidMessage(f"{verb} needs a subscription id and at least one filter")
        sub_id = _sub_id(msg[1])
        filters = parse_filters(msg[2:])
        return ClientReq(sub_id, filters) if verb == "REQ" else ClientCount(sub_id, filters)
    if verb == "CLOSE":
        if len(msg) != 2:
            raise InvalidMessage("CLOSE takes exactly one subscription id")
        return ClientClose(_sub_id(msg[1]))
    if verb == "AUTH":
        if len(msg) != 2:
            raise InvalidMessage("AUTH takes exactly one event")
        return ClientAuth(Event.from_dict(msg[1], verify=verify))
    raise InvalidMessage(f"unknown verb {verb[:32]!r}")


def parse_relay_message(text: str | bytes, *, verify: bool = True) -> RelayMessage:
    msg = _load(text)
    verb = msg[0]
    try:
        if verb == "EVENT":
            if len(msg) != 3:
                raise InvalidMessage("EVENT from a relay has a subscription id and an event")
            return RelayEvent(_sub_id(msg[1]), Event.from_dict(msg[2], verify=verify))
        if verb == "OK":
            if len(msg) != 4 or not isinstance(msg[2], bool) or not isinstance(msg[3], str):
                raise InvalidMessage('OK must be ["OK", id, true|false, message]')
            if not isinstance(msg[1], str):
                raise InvalidMessage("OK event id must be a string")
            return RelayOk(msg[1], msg[2], msg[3])
        if verb == "EOSE":
            if len(msg) != 2:
                raise InvalidMessage("EOSE takes exactly one subscription id")
            return RelayEose(_sub_id(msg[1]))
        if verb == "CLOSED":
            if len(msg) != 3 or not isinstance(msg[2], str):
                raise InvalidMessage('CLOSED must be ["CLOSED", sub_id, message]')
            return RelayClosed(_sub_id(msg[1]), msg[2])
        if verb == "NOTICE":
            if len(msg) != 2 or not isinstance(msg[1], str):
                raise InvalidMessage("NOTICE takes exactly one string")
            return RelayNotice(msg[1])
        if verb == "AUTH":
            if len(msg) != 2 or not isinstance(msg[1], str):
                raise InvalidMessage("AUTH from a relay takes exactly one challenge string")
            return RelayAuth(msg[1])
        if verb == "COUNT":
            if (
                len(msg) != 3
                or not isinstance(msg[2], dict)
                or type(msg[2].get("count")) is not int
            ):
                raise InvalidMessage('COUNT must be ["COUNT", sub_id, {"count": n}]')
            return RelayCount(_sub_id(msg[1]), msg[2]["count"])
    except (InvalidEvent, InvalidFilter):
        raise
    raise InvalidMessage(f"unknown verb {verb[:32]!r}")


# --- builders (compact JSON, raw UTF-8) ----------------------------------------------------


def _filters(filters: tuple[Filter, ...] | list[Filter]) -> list[dict[str, Any]]:
    return [f.to_dict() for f in filters]


def event_message(event: Event) -> str:
    return '["EVENT",' + event.to_json() + "]"


def req_message(sub_id: str, filters: list[Filter] | tuple[Filter, ...]) -> str:
    return _dumps(["REQ", _sub_id(sub_id), *_filters(filters)])


def close_message(sub_id: str) -> str:
    return _dumps(["CLOSE", sub_id])


def auth_message(event: Event) -> str:
    return '["AUTH",' + event.to_json() + "]"


def count_message(sub_id: str, filters: list[Filter] | tuple[Filter, ...]) -> str:
    return _dumps(["COUNT", _sub_id(sub_id), *_filters(filters)])


def relay_event_message(sub_id: str, event_json: str) -> str:
    """Forward an event's JSON text exactly as stored (no re-encoding)."""
    return '["EVENT",' + _dumps(sub_id) + "," + event_json + "]"


def ok_message(event_id: str, accepted: bool, message: str = "") -> str:
    return _dumps(["OK", event_id, accepted, message])


def eose_message(sub_id: str) -> str:
    return _dumps(["EOSE", sub_id])


def closed_message(sub_id: str, message: str) -> str:
    return _dumps(["CLOSED", sub_id, message])


def notice_message(message: str) -> str:
    return _dumps(["NOTICE", message])


def auth_challenge_message(challenge: str) -> str:
    return _dumps(["AUTH", challenge])


def count_result_message(sub_id: str, count: int) -> str:
    return _dumps(["COUNT", sub_id, {"count": count}])
