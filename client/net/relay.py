"""One relay connection: connect with a timeout, reconnect with backoff and jitter, re-subscribe
with ``since``, publish with OK tracking, NIP-42 AUTH on demand, CLOSED and NOTICE handling.

This is the I/O edge; the decisions it needs (backoff delay, re-subscription filters, OK and
CLOSED prefixes) are small pure functions below. Events are handed on *unverified*: the pool
deduplicates first and verifies once (see :mod:`client.net.pool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from client.nostr.errors import InvalidEvent, InvalidFilter, InvalidMessage
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from client.nostr.messages import (
    RelayAuth,
    RelayClosed,
    RelayEose,
    RelayEvent,
    RelayNotice,
    RelayOk,
    auth_message,
    close_message,
    event_message,
    parse_relay_message,
    req_message,
)

log = logging.getLogger("client.net.relay")

KIND_AUTH = 22242
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
NOTICES_KEPT = 20
# Re-send an event whose OK has not come after this long (at least; a third of the timeout).
RESEND_MIN_S = 0.5

State = Literal["connecting", "connected", "backoff", "closed"]


# --- pure helpers ----------------------------------------------------------------------------


def backoff_delay(
    attempt: int, *, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with "equal jitter": half the step fixed, half random, capped."""
    step = min(cap, base * (2 ** min(attempt, 30)))
    return step / 2 + step / 2 * rand()


def resubscribe_filters(
    filters: tuple[Filter, ...], last_seen: int | None, subscribed_at: int, slack: int
) -> tuple[Filter, ...]:
    """Filters to send again after a reconnect: ``since`` a little before the newest event this
    relay gave us (or before we subscribed), so nothing is missed; the pool drops repeats."""
    base = last_seen if last_seen is not None else subscribed_at
    since = max(0, base - slack)
    return tuple(f.with_since(since) for f in filters)


def auth_event(keys: Keys, relay_url: str, challenge: str, created_at: int | None = None) -> Event:
    """NIP-42 kind-22242 event answering ``challenge`` for ``relay_url``."""
    tags = [["relay", relay_url], ["challenge", challenge]]
    return Event.create(keys, KIND_AUTH, "", tags, created_at=created_at)


# --- the connection --------------------------------------------------------------------------


@dataclass(slots=True)
class RelaySub:
    """A subscription as one relay sees it. Callbacks run in the reader task: keep them short."""

    filters: tuple[Filter, ...]
    on_event: Callable[[RelayConnection, Event], None]
    on_eose: Callable[[RelayConnection], None]
    on_closed: Callable[[RelayConnection, str], None]
    subscribed_at: int = field(default_factory=lambda: int(time.time()))
    last_seen: int | None = None
    closed: str | None = None  # the relay's CLOSED message, if it ended this subscription
    auth_retried: bool = False


@dataclass(slots=True)
class RelayStatus:
    url: str
    state: State
    connects: int
    failures: int
    last_error: str
    authenticated: bool
    notices: tuple[str, ...]


class RelayConnection:
    """A self-healing connection to one relay. :meth:`start` returns at once; the first attempt's
    outcome is awaited with :meth:`wait_first_attempt`."""

    def __init__(
        self,
        url: str,
        *,
        auth_keys: Keys | None = None,
        connect_timeout: float = 5.0,
        backoff_min: float = 0.1,
        backoff_max: float = 30.0,
        resubscribe_slack: int = 30,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.url = url
        self.auth_keys = auth_keys
        self.connect_timeout = connect_timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.resubscribe_slack = resubscribe_slack
        self.max_message_bytes = max_message_bytes
        self._rand = rand
        self.state: State = "connecting"
        self.connects = 0
        self.failures = 0
        self.bad_messages = 0
        self.last_error = ""
        self.notices: deque[str] = deque(maxlen=NOTICES_KEPT)
        self.subs: dict[str, RelaySub] = {}
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()  # the complement of ``connected``
        self.disconnected.set()
        self._connect_signal = asyncio.Event()  # set and replaced on every (re)connect
        self._first_attempt = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._outq: asyncio.Queue[str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Publishes waiting for OK: event id -> (future, EVENT message to resend after reconnect).
        self._pending: dict[str, tuple[asyncio.Future[tuple[bool, str]], str]] = {}
        self._auth_retried: set[str] = set()
        # NIP-42 state for the current connection.
        self._challenge: str | None = None
        self._auth_id: str | None = None
        self.authenticated = False
        # Messages to resend once AUTH is accepted: ("event", event id | "req", sub id, text).
        self._after_auth: list[tuple[str, str, str]] = []

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"relay {self.url}")

    async def wait_first_attempt(self) -> None:
        await self._first_attempt.wait()

    async def wait_connects(self, count: int) -> None:
        """Until this relay has connected ``count`` times in all and is connected now."""
        while not (self.connects >= count and self.connected.is_set()):
            await self._connect_signal.wait()

    async def close(self) -> None:
        self._closing = True
        self.state = "closed"
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for fut, _ in self._pending.values():
            if not fut.done():
                fut.set_result((False, "error: connection closed"))
        self._pending.clear()
        self.connected.clear()
        self.disconnected.set()

    def status(self) -> RelayStatus:
        return RelayStatus(
            self.url,
            self.state,
            self.connects,
            self.failures,
            self.last_error,
            self.authenticated,
            tuple(self.notices),
        )

    async def _run(self) -> None:
        attempt = 0
        writer: asyncio.Task[None] | None = None
        while not self._closing:
            self.state = "connecting"
            try:
                ws = await connect(
                    self.url,
                    open_timeout=self.connect_timeout,
                    compression=None,  # per-message deflate costs more than it saves here
                    proxy=None,
                    max_size=self.max_message_bytes,
                    ping_interval=20,
                    ping_timeout=20,
                    close_timeout=1,
                    user_agent_header="nostr-swarm",
                )
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ValueError) as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.info("relay %s: connect failed (%s)", self.url, self.last_error)
                self._first_attempt.set()
                if isinstance(exc, InvalidURI):
                    self.state = "closed"
                    return
                self.state = "backoff"
                await asyncio.sleep(self._delay(attempt))
                attempt += 1
                continue
            attempt = 0
            self.connects += 1
            self._ws = ws
            self._outq = asyncio.Queue()
            self._challenge, self._auth_id, self.authenticated = None, None, False
            self._after_auth = []
            self._auth_retried.clear()
            writer = asyncio.create_task(self._write_loop(ws, self._outq))
            self._on_connect()
            self.state = "connected"
            self.connected.set()
            self.disconnected.clear()
            self._first_attempt.set()
            signal, self._connect_signal = self._connect_signal, asyncio.Event()
            signal.set()
            try:
                await self._read_loop(ws)
            except ConnectionClosed as exc:
                self.last_error = f"connection closed: {exc}"
            except Exception as exc:  # a bug or a broken socket must not end the relay for good
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("relay %s: reader failed: %s", self.url, self.last_error)
            finally:
                self.connected.clear()
                self.disconnected.set()
                self._ws = None
                self._outq = None
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await writer
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 0.5)
            if self._closing:
                break
            self.failures += 1
            log.info("relay %s: disconnected (%s); reconnecting", self.url, self.last_error)
            self.state = "backoff"
            await asyncio.sleep(self._delay(0))

    def _delay(self, attempt: int) -> float:
        return backoff_delay(attempt, base=self.backoff_min, cap=self.backoff_max, rand=self._rand)

    def _on_connect(self) -> None:
        """Re-send open subscriptions (with ``since``) and publishes still waiting for OK."""
        for sub_id, sub in self.subs.items():
            if sub.closed is not None:
                continue
            first = sub.last_seen is None and self.connects == 1
            filters = (
                sub.filters
                if first
                else resubscribe_filters(
                    sub.filters, sub.last_seen, sub.subscribed_at, self.resubscribe_slack
                )
            )
            self.send(req_message(sub_id, filters))
        for fut, message in self._pending.values():
            if not fut.done():
                self.send(message)

    async def _write_loop(self, ws: ClientConnection, queue: asyncio.Queue[str]) -> None:
        # One writer keeps our messages in order (a REQ before the EVENT it is meant to catch).
        while True:
            text = await queue.get()
            try:
                await ws.send(text)
            except ConnectionClosed:
                return

    def send(self, text: str) -> bool:
        """Queue one message for this connection; False when not connected (it is not kept)."""
        if self._outq is None:
            return False
        self._outq.put_nowait(text)
        return True

    # --- reading -----------------------------------------------------------------------------

    async def _read_loop(self, ws: ClientConnection) -> None:
        async for raw in ws:
            try:
                msg = parse_relay_message(raw, verify=False)
            except (InvalidMessage, InvalidEvent, InvalidFilter) as exc:
                self.bad_messages += 1
                log.debug("relay %s: bad message ignored: %s", self.url, exc)
                continue
            if isinstance(msg, RelayEvent):
                sub = self.subs.get(msg.sub_id)
                if sub is None:
                    continue
                created = msg.event.created_at
                if sub.last_seen is None or created > sub.last_seen:
                    sub.last_seen = created
                sub.on_event(self, msg.event)
            elif isinstance(msg, RelayOk):
                self._on_ok(msg)
            elif isinstance(msg, RelayEose):
                sub = self.subs.get(msg.sub_id)
                if sub is not None:
                    sub.on_eose(self)
            elif isinstance(msg, RelayClosed):
                self._on_closed(msg)
            elif isinstance(msg, RelayNotice):
                self.notices.append(msg.message[:500])
                log.info("relay %s: NOTICE %s", self.url, msg.message[:200])
            elif isinstance(msg, RelayAuth):
                self._challenge = msg.challenge
                self.authenticated = False
                if self._after_auth:  # something already waits for AUTH
                    self._authenticate()

    def _on_ok(self, msg: RelayOk) -> None:
        if msg.event_id == self._auth_id:
            self._auth_id = None
            self.authenticated = msg.accepted
            if msg.accepted:
                pending, self._after_auth = self._after_auth, []
                for _, _, text in pending:
                    self.send(text)
            else:
                log.info("relay %s: AUTH refused: %s", self.url, msg.message)
                self._fail_after_auth(msg.message or "auth-required: refused")
            return
        entry = self._pending.get(msg.event_id)
        if entry is None:
            return
        fut, text = entry
        if (
            not msg.accepted
            and msg.prefix == "auth-required"
            and self.auth_keys is not None
            and msg.event_id not in self._auth_retried
        ):
            self._auth_retried.add(msg.event_id)
            self._after_auth.append(("event", msg.event_id, text))
            self._authenticate()
            return
        if not fut.done():
            fut.set_result((msg.accepted, msg.message))

    def _on_closed(self, msg: RelayClosed) -> None:
        sub = self.subs.get(msg.sub_id)
        if sub is None:
            return
        if msg.prefix == "auth-required" and self.auth_keys is not None and not sub.auth_retried:
            sub.auth_retried = True
            text = req_message(msg.sub_id, self._current_filters(sub))
            self._after_auth.append(("req", msg.sub_id, text))
            self._authenticate()
            return
        sub.closed = msg.message
        log.info("relay %s: subscription %s closed: %s", self.url, msg.sub_id, msg.message)
        sub.on_closed(self, msg.message)

    def _current_filters(self, sub: RelaySub) -> tuple[Filter, ...]:
        if sub.last_seen is None:
            return sub.filters
        return resubscribe_filters(
            sub.filters, sub.last_seen, sub.subscribed_at, self.resubscribe_slack
        )

    def _authenticate(self) -> None:
        if self.auth_keys is None or self._challenge is None or self._auth_id is not None:
            return  # no key, no challenge yet (sent when it comes) or an AUTH already in flight
        ev = auth_event(self.auth_keys, self.url, self._challenge)
        self._auth_id = ev.id
        self.send(auth_message(ev))

    def _fail_after_auth(self, message: str) -> None:
        pending, self._after_auth = self._after_auth, []
        for what, key, _ in pending:
            if what == "event":
                entry = self._pending.get(key)
                if entry is not None and not entry[0].done():
                    entry[0].set_result((False, message))
            else:
                sub = self.subs.get(key)
                if sub is not None and sub.closed is None:
                    sub.closed = message
                    sub.on_closed(self, message)

    # --- subscriptions and publishing ----------------------------------------------------------

    def subscribe(self, sub_id: str, sub: RelaySub) -> None:
        self.subs[sub_id] = sub
        self.send(req_message(sub_id, sub.filters))

    def unsubscribe(self, sub_id: str) -> None:
        sub = self.subs.pop(sub_id, None)
        if sub is not None and sub.closed is None:
            self.send(close_message(sub_id))

    async def publish(self, event: Event, ok_timeout: float) -> tuple[bool, str]:
        """Send ``event`` and wait for this relay's OK (waiting for a connection if needed).
        Never raises for relay trouble: returns ``(False, "<prefix>: reason")``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ok_timeout
        if not self.connected.is_set():
            if self._closing or self.state == "closed":
                return False, f"error: relay unavailable ({self.last_error or 'closed'})"
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
                # that arrives as the awaited thing completes, so a cancelled publisher (a node
                # shutting down) would carry on and hang its shutdown.
                async with asyncio.timeout(ok_timeout):
                    await self.connected.wait()
            except TimeoutError:
                return False, f"error: not connected ({self.last_error or 'connecting'})"
        entry = self._pending.get(event.id)
        if entry is None:
            fut: asyncio.Future[tuple[bool, str]] = loop.create_future()
            text = event_message(event)
            self._pending[event.id] = (fut, text)
            self.send(text)
        else:
            fut, text = entry
        # An OK can be lost while the event itself was stored: send the same event again after
        # a while (a relay that has it answers "duplicate: …" with true) instead of reporting a
        # refusal for an event the relay took.
        resend_after = max(RESEND_MIN_S, ok_timeout / 3)
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False, "error: timed out waiting for OK"
                try:
                    async with asyncio.timeout(min(resend_after, remaining)):
                        return await asyncio.shield(fut)
                except TimeoutError:
                    if deadline - loop.time() > 0 and self.connected.is_set():
                        self.send(text)
        finally:
            self._pending.pop(event.id, None)
