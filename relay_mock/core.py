"""The relay's protocol logic: one call per incoming websocket message. Pure: no sockets, no
timers, no clock reads. The caller passes the time and gives each connection a ``send`` function;
the server layer (server.py) wires that to the socket and applies the fault switches there.

Replies follow NIP-01: ``OK`` with a standard prefix for every EVENT that carries an id, ``CLOSED``
for a refused REQ, ``NOTICE`` for what cannot be answered otherwise. Nothing here raises on bad
input.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import orjson

from client.nostr.errors import InvalidEvent, InvalidFilter
from client.nostr.filter import Filter
from client.nostr.messages import (
    auth_challenge_message,
    closed_message,
    count_result_message,
    eose_message,
    notice_message,
)
from client.token_bucket import TokenBucket

from .config import Faults, Limits
from .kinds import AUTH
from .record import Record, event_id_of, parse_record, signature_key
from .store import EventStore, Outcome
from .subscriptions import LiveIndex, Subscription, filter_values

log = logging.getLogger("relay_mock.core")
Send = Callable[[str], None]
Buffered = Callable[[], int]


def _nothing_buffered() -> int:
    return 0


# Seconds an AUTH event's created_at may differ from now (NIP-42 suggests about ten minutes).
AUTH_WINDOW = 600
_LOOPBACK = frozenset(("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"))
VERIFIED_CACHE = 10_000  # signatures remembered (about 300 bytes each)
NEGENTROPY_REFUSAL = "blocked: negentropy (NIP-77) is not supported; use REQ"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def ok_message(event_id: str, accepted: bool, message: str = "") -> str:
    """Built as a plain string: the id is already checked to be 64 alphanumerics."""
    if accepted and not message:
        return '["OK","' + event_id + '",true,""]'
    return '["OK","' + event_id + ('",true,' if accepted else '",false,') + _dumps(message) + "]"


class Peer:
    """Protocol state of one connection.

    ``buffered()`` says how many bytes sent to it its reader has not taken yet (the server's
    write buffer); stored results are paced by it. ``backlog`` holds the subscriptions whose
    stored events are still going out, oldest REQ first: :meth:`RelayCore.pump` continues them.
    """

    __slots__ = ("authed", "backlog", "bucket", "buffered", "challenge", "received", "send", "subs")

    def __init__(
        self,
        send: Send,
        challenge: str | None,
        bucket: TokenBucket | None,
        buffered: Buffered = _nothing_buffered,
    ) -> None:
        self.send = send
        self.buffered = buffered
        self.challenge = challenge
        self.bucket = bucket
        self.authed: set[str] = set()
        self.subs: dict[str, Subscription] = {}
        self.backlog: deque[tuple[Subscription, list[Record]]] = deque()
        self.received = 0


class RelayCore:
    def __init__(
        self,
        *,
        limits: Limits | None = None,
        faults: Faults | None = None,
        auth_required: bool = False,
        allowed_pubkeys: set[str] | frozenset[str] | None = None,
        relay_url: str = "",
        store: EventStore | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.faults = faults or Faults()
        self.auth_required = auth_required
        self.allowed_pubkeys = frozenset(allowed_pubkeys) if allowed_pubkeys is not None else None
        self.relay_url = relay_url
        self.store = store or EventStore()
        self.live = LiveIndex()
        self.peers: set[Peer] = set()
        # Persistence hooks (set by the server when it has a database).
        self.on_stored: Callable[[Record], None] | None = None
        self.on_removed: Callable[[list[Record]], None] | None = None
        self._verified: OrderedDict[str, None] = OrderedDict()  # see _remember_verified
        self.events_received = 0
        self.events_stored = 0
        # Refusals (OK false, CLOSED, NOTICE) by the reason's prefix: "invalid", "rate-limited"...
        self.refused: Counter[str] = Counter()

    # --- connections ----------------------------------------------------------------------

    def connect(
        self,
        send: Send,
        now: float,
        challenge: str | None = None,
        buffered: Buffered = _nothing_buffered,
    ) -> Peer:
        """Register a connection. With ``auth_required`` the challenge is sent at once."""
        lim = self.limits
        bucket = None
        if lim.event_rate is not None:
            bucket = TokenBucket(lim.event_rate, lim.event_burst)
        peer = Peer(send, challenge if self.auth_required else None, bucket, buffered)
        self.peers.add(peer)
        if peer.challenge is not None:
            send(auth_challenge_message(peer.challenge))
        return peer

    def disconnect(self, peer: Peer) -> None:
        for sub in peer.subs.values():
            self.live.remove(sub)
        peer.subs.clear()
        peer.backlog.clear()
        self.peers.discard(peer)

    # --- refusals: counted by reason and logged, so an operator sees abuse ------------------

    def _count(self, reason: str) -> None:
        self.refused[reason.partition(":")[0] or "other"] += 1
        log.debug("refused: %s", reason)

    def _no(self, peer: Peer, event_id: str, reason: str) -> None:
        self._count(reason)
        peer.send(ok_message(event_id, False, reason))

    def _closed(self, peer: Peer, sub_id: str, reason: str) -> None:
        self._count(reason)
        peer.send(closed_message(sub_id, reason))

    def _notice(self, peer: Peer, reason: str) -> None:
        self._count(reason)
        peer.send(notice_message(reason))

    # --- dispatch -------------------------------------------------------------------------

    def handle(self, peer: Peer, data: str | bytes, now: float) -> None:
        """Answer one websocket message."""
        peer.received += 1
        if type(data) is not str:
            self._notice(peer, "invalid: binary frames are not supported; send JSON as text")
            return
        limit = self.limits.max_message_length
        n = len(data)
        too_big = n > limit or (n * 4 > limit and len(data.encode("utf-8", "replace")) > limit)
        try:
            msg = _loads(data)
        except (ValueError, RecursionError):
            self._notice(peer, "invalid: message is not valid JSON")
            return
        if type(msg) is not list or not msg or type(msg[0]) is not str:
            self._notice(peer, "invalid: a message is a JSON array starting with a verb")
            return
        verb = msg[0]
        if too_big:
            self._refuse_too_big(peer, msg, n)
        elif verb == "EVENT":
            self._on_event(peer, msg, data, now)
        elif verb == "REQ":
            self._on_req(peer, msg, now, count=False)
        elif verb == "CLOSE":
            self._on_close(peer, msg)
        elif verb == "AUTH":
            self._on_auth(peer, msg, data, now)
        elif verb == "COUNT":
            self._on_req(peer, msg, now, count=True)
        elif verb in ("NEG-OPEN", "NEG-MSG"):
            self._on_negentropy(peer, msg)
        elif verb == "NEG-CLOSE":
            pass  # nothing was opened, so nothing to close or answer
        else:
            self._notice(peer, f"invalid: unknown message type {verb[:32]!r}")

    def _refuse_too_big(self, peer: Peer, msg: list[Any], n: int) -> None:
        text = f"invalid: message too large (max {self.limits.max_message_length} bytes)"
        if msg[0] == "EVENT" and len(msg) > 1 and (eid := event_id_of(msg[1])):
            self._no(peer, eid, text)
        elif msg[0] in ("REQ", "COUNT") and len(msg) > 1 and _is_sub_id(msg[1], 64):
            self._closed(peer, msg[1], text)
        else:
            self._notice(peer, text)

    # --- EVENT ----------------------------------------------------------------------------

    def _on_event(self, peer: Peer, msg: list[Any], text: str, now: float) -> None:
        self.events_received += 1
        obj = msg[1] if len(msg) > 1 else None
        eid = event_id_of(obj)
        if eid is None:
            self._notice(peer, "invalid: EVENT needs an event object with a 64-hex id")
            return
        if len(msg) != 2:
            self._no(peer, eid, "invalid: EVENT takes exactly one event")
            return
        if self.auth_required and not peer.authed:
            self._no(peer, eid, "auth-required: authenticate (NIP-42) to publish")
            return
        if peer.bucket is not None and not peer.bucket.try_acquire(now):
            self._no(peer, eid, f"rate-limited: at most {self.limits.event_rate:g} events/s")
            return
        if eid in self.store:  # stored means verified already: skip the costly checks
            peer.send(ok_message(eid, True, "duplicate: already have this event"))
            return
        # The event object's text as received: the only braces outside it are inside it.
        raw = text[text.index("{") : text.rindex("}") + 1]
        try:
            rec = parse_record(obj, raw, verified=self._verified)
        except InvalidEvent as exc:
            self._no(peer, eid, f"invalid: {exc}")
            return
        event = cast("dict[str, Any]", obj)  # parse_record takes nothing but a dict
        refusal = self._refusal(rec, event, now)
        if refusal:
            self._remember_verified(event)
            self._no(peer, eid, refusal)
            return
        outcome = self.store_event(rec, now)
        if outcome.stored is None:  # stored ones are recognised by id, before any check
            self._remember_verified(event)
        if not outcome.accepted:
            self._count(outcome.message)
        # OK first: the publisher's wait should not grow with the number of subscribers.
        peer.send(ok_message(eid, outcome.accepted, outcome.message))
        if outcome.broadcast:
            self.deliver(rec)

    def _remember_verified(self, obj: dict[str, Any]) -> None:
        """An event that passed the signature check but is not stored (ephemeral, refused,
        superseded, deleted) may come again, e.g. from a client retrying: skip the check then."""
        cache = self._verified
        cache[signature_key(obj)] = None
        if len(cache) > VERIFIED_CACHE:
            cache.popitem(last=False)

    def _refusal(self, rec: Record, obj: dict[str, Any], now: float) -> str:
        lim = self.limits
        if len(rec.tags) > lim.max_event_tags:
            return f"invalid: too many tags (max {lim.max_event_tags})"
        if len(obj["content"]) > lim.max_content_length:
            return f"invalid: content too long (max {lim.max_content_length} characters)"
        lower, upper = lim.created_at_lower_limit, lim.created_at_upper_limit
        if lower is not None and rec.created_at < now - lower:
            return f"invalid: created_at is more than {lower} s in the past"
        if upper is not None and rec.created_at > now + upper:
            return f"invalid: created_at is more than {upper} s in the future"
        if rec.kind == AUTH:
            return "invalid: kind 22242 belongs in an AUTH message and is never relayed"
        if rec.kind in self.faults.refuse_kinds:
            return f"blocked: kind {rec.kind} is refused by this relay"
        if self.allowed_pubkeys is not None and rec.pubkey not in self.allowed_pubkeys:
            return "restricted: this pubkey may not publish here"
        return ""

    def publish(self, rec: Record, now: float) -> Outcome:
        """Store (by the kind rules) and forward a verified event to matching subscriptions."""
        outcome = self.store_event(rec, now)
        if outcome.broadcast:
            self.deliver(rec)
        return outcome

    def store_event(self, rec: Record, now: float) -> Outcome:
        outcome = self.store.add(rec, now)
        if outcome.stored is not None:
            self.events_stored += 1
            if self.on_stored is not None:
                self.on_stored(outcome.stored)
        if outcome.removed and self.on_removed is not None:
            self.on_removed(outcome.removed)
        return outcome

    def deliver(self, rec: Record) -> int:
        """Forward to every live subscription that matches; returns how many.

        A subscriber whose unread output would pass ``max_write_buffer`` has fallen too far
        behind: its subscription ends with CLOSED (it can REQ again with ``since``) instead of
        the relay buffering without bound. One still receiving stored events gets the live ones
        after its EOSE (held back within the same bound)."""
        raw = rec.raw
        subs = self.live.matching(rec)
        cap = self.limits.max_write_buffer
        for sub in subs:
            pending = sub.pending
            if pending is not None:
                sub.pending_bytes += len(raw)
                if sub.pending_bytes > cap:
                    self._slow_consumer(sub)
                else:
                    pending.append(rec)
                continue
            peer = sub.peer
            msg = sub.prefix + raw + "]"
            if peer.buffered() + len(msg) > cap:
                self._slow_consumer(sub)
            else:
                peer.send(msg)
        return len(subs)

    def _slow_consumer(self, sub: Subscription) -> None:
        cap = self.limits.max_write_buffer
        self._count("error: slow consumer")
        self.close_subscription(
            sub.peer,
            sub.sub_id,
            f"error: slow consumer: more than {cap} bytes unread; REQ again to resume",
        )

    def pump(self, peer: Peer, now: float) -> bool:
        """Send more of the peer's pending stored results while its unread output stays below
        half of ``max_write_buffer``; each finished subscription gets its EOSE, then the live
        events held back meanwhile. Returns True while some remain (call again once the peer
        has read)."""
        backlog = peer.backlog
        if not backlog:
            return False
        room = self.limits.max_write_buffer // 2 - peer.buffered()
        send = peer.send
        by_id = self.store.get
        while backlog and room > 0:
            sub, results = backlog[0]
            prefix = sub.prefix
            while results and room > 0:
                rec = results.pop()
                # Deleted, replaced or expired since the REQ: a query now would not return it.
                if by_id(rec.id) is not rec or (
                    rec.expires_at is not None and rec.expires_at <= now
                ):
                    continue
                msg = prefix + rec.raw + "]"
                send(msg)
                room -= len(msg)
            if results:
                break
            backlog.popleft()
            send(eose_message(sub.sub_id))
            held, sub.pending = sub.pending or [], None
            sub.pending_bytes = 0
            for rec in held:
                msg = prefix + rec.raw + "]"
                send(msg)
                room -= len(msg)
        return bool(backlog)

    def purge(self, now: float) -> int:
        removed = self.store.purge_expired(now)
        if removed and self.on_removed is not None:
            self.on_removed(removed)
        return len(removed)

    # --- REQ / COUNT / CLOSE ----------------------------------------------------------------

    def _on_req(self, peer: Peer, msg: list[Any], now: float, *, count: bool) -> None:
        verb = msg[0]
        lim = self.limits
        if len(msg) < 2 or type(msg[1]) is not str:
            self._notice(peer, f"invalid: {verb} needs a subscription id string")
            return
        sub_id = msg[1]
        if not _is_sub_id(sub_id, lim.max_subid_length):
            self._closed(
                peer,
                sub_id,  # as sent, so the client can tell which REQ was refused
                f"invalid: subscription id must be 1..{lim.max_subid_length} characters",
            )
            return
        if len(msg) < 3:
            self._closed(peer, sub_id, f"invalid: {verb} needs at least one filter")
            return
        if self.auth_required and not peer.authed:
            self._closed(peer, sub_id, "auth-required: authenticate (NIP-42) to read")
            return
        if len(msg) - 2 > lim.max_filters:
            self._closed(peer, sub_id, f"invalid: too many filters (max {lim.max_filters})")
            return
        for f in msg[2:]:
            if type(f) is dict and filter_values(f) > lim.max_filter_values:
                self._closed(
                    peer,
                    sub_id,
                    f"invalid: a filter lists more than {lim.max_filter_values} values",
                )
                return
        try:
            filters = tuple(Filter.from_dict(f) for f in msg[2:])
        except InvalidFilter as exc:
            self._closed(peer, sub_id, f"invalid: {exc}")
            return
        self.purge(now)
        if count:
            peer.send(count_result_message(sub_id, self.store.count(filters, now)))
            return
        old = peer.subs.get(sub_id)
        if old is None and len(peer.subs) >= lim.max_subscriptions:
            self._closed(
                peer,
                sub_id,
                f"rate-limited: too many open subscriptions (max {lim.max_subscriptions}); "
                "CLOSE one first",
            )
            return
        if old is not None:  # the same id replaces the subscription
            self._end(peer, old)
        sub = Subscription(peer, sub_id, filters)
        results = self.store.query(
            filters, now, max_limit=lim.max_limit, default_limit=lim.default_limit
        )
        results.reverse()  # oldest last: pump() pops the newest first
        sub.pending = []
        peer.subs[sub_id] = sub
        self.live.add(sub)
        peer.backlog.append((sub, results))
        # Usually all of it goes now; what does not fit goes as the reader drains.
        self.pump(peer, now)

    def _on_negentropy(self, peer: Peer, msg: list[Any]) -> None:
        # NIP-77 says to refuse with NEG-ERR: clients (rust-nostr) then fall back to REQ at once,
        # where a NOTICE leaves them waiting for a reply that never comes.
        if len(msg) < 2 or not _is_sub_id(msg[1], 64):
            self._notice(peer, f"invalid: {msg[0]} needs a subscription id string")
            return
        self._count(NEGENTROPY_REFUSAL)
        peer.send(_dumps(["NEG-ERR", msg[1], NEGENTROPY_REFUSAL]))

    def _on_close(self, peer: Peer, msg: list[Any]) -> None:
        if len(msg) != 2 or type(msg[1]) is not str:
            self._notice(peer, "invalid: CLOSE takes exactly one subscription id string")
            return
        sub = peer.subs.pop(msg[1], None)
        if sub is not None:
            self._end(peer, sub)

    def _end(self, peer: Peer, sub: Subscription) -> None:
        self.live.remove(sub)
        if sub.pending is not None:  # its stored results are not all out: drop the rest
            for i, (queued, _) in enumerate(peer.backlog):
                if queued is sub:
                    del peer.backlog[i]
                    break
            sub.pending = None

    def close_subscription(self, peer: Peer, sub_id: str, reason: str) -> bool:
        """End a subscription from the relay's side with CLOSED and a reason."""
        sub = peer.subs.pop(sub_id, None)
        if sub is None:
            return False
        self._end(peer, sub)
        peer.send(closed_message(sub_id, reason))
        return True

    # --- AUTH -----------------------------------------------------------------------------

    def _on_auth(self, peer: Peer, msg: list[Any], text: str, now: float) -> None:
        obj = msg[1] if len(msg) == 2 else None
        eid = event_id_of(obj)
        if eid is None:
            self._notice(peer, "invalid: AUTH takes exactly one signed kind-22242 event")
            return
        if peer.challenge is None:
            self._no(peer, eid, "invalid: this relay did not ask for authentication")
            return
        try:
            rec = parse_record(obj, text[text.index("{") : text.rindex("}") + 1])
        except InvalidEvent as exc:
            self._no(peer, eid, f"invalid: {exc}")
            return
        problem = self._auth_problem(peer, rec, now)
        if problem:
            self._no(peer, eid, problem)
            return
        peer.authed.add(rec.pubkey)
        peer.send(ok_message(eid, True))

    def _auth_problem(self, peer: Peer, rec: Record, now: float) -> str:
        if rec.kind != AUTH:
            return f"invalid: AUTH event must be kind {AUTH}"
        if abs(rec.created_at - now) > AUTH_WINDOW:
            return f"invalid: AUTH created_at must be within {AUTH_WINDOW} s of now"
        if rec.tag_value("challenge") != peer.challenge:
            return "invalid: challenge does not match the one this relay sent"
        relay = rec.tag_value("relay")
        if relay is None or not same_relay(relay, self.relay_url):
            return "invalid: relay tag does not name this relay"
        return ""


_orjson_loads = orjson.loads
_json_loads = json.loads


def _loads(data: str) -> object:
    """EVENT messages through orjson (3x faster). Everything else, and whatever orjson refuses
    (lone surrogates, NaN, deep nesting), through the standard library, so what is accepted and
    why something is refused do not change; orjson turns integers beyond 64 bits into floats,
    which only matters outside events (in an event they are invalid either way)."""
    if data.startswith('["EVENT",'):
        try:
            return _orjson_loads(data)
        except orjson.JSONDecodeError:
            pass
    return _json_loads(data)


def _is_sub_id(value: object, max_len: int) -> bool:
    return type(value) is str and 0 < len(value) <= max_len


def same_relay(claimed: str, ours: str) -> bool:
    """NIP-42: the relay tag must name this relay; host and port are enough (loopback names are
    interchangeable, a trailing slash or path does not matter)."""
    try:
        a, b = urlsplit(claimed.strip()), urlsplit(ours)
        if a.scheme not in ("ws", "wss") or a.port != b.port:
            return False
    except ValueError:
        return False
    ha, hb = (a.hostname or "").lower(), (b.hostname or "").lower()
    return ha == hb or (ha in _LOOPBACK and hb in _LOOPBACK)
