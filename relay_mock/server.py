"""The relay on a socket: websockets server, NIP-11 over HTTP on the same port, fault switches.

All protocol decisions are in core.py; this layer reads frames, passes them in with the time, and
writes what comes out, applying the fault switches (latency, drops, disconnects) on the way.
Each message is handled inline in the connection's reader task (no queue or task per message) and
replies are written without awaiting; the reader waits only when the socket's buffer is full.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import struct
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import OPEN
from websockets.speedups import apply_mask

from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.messages import notice_message

from .config import Faults, Limits, RelayInfo
from .core import Peer, RelayCore
from .errors import RelayNotRunning
from .nip11 import info_document
from .persistence import SqliteEvents
from .record import Record, parse_record

log = logging.getLogger("relay_mock")

PURGE_INTERVAL = 1.0  # seconds between sweeps for expired events (NIP-40)
COMMIT_DELAY = 0.02  # seconds a database write may wait to share a commit


@dataclass(frozen=True, slots=True)
class RelayStats:
    connections: int
    subscriptions: int
    stored_events: int
    events_received: int
    messages_dropped: int
    messages_delayed: int
    disconnects_forced: int
    # Refused messages (OK false, CLOSED, NOTICE) by reason prefix: "invalid", "rate-limited"...
    refused: dict[str, int] = field(default_factory=dict)
    live_filters: int = 0  # filters of open subscriptions
    filters_checked: int = 0  # live filters matched against published events, in all


_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_HEADER_16 = struct.Struct("!BBH").pack
_HEADER_64 = struct.Struct("!BBQ").pack


class _Connection(ServerConnection):
    """websockets' server connection with two shortcuts past the parts that cost most per
    message (its frame parser, message queue and a wake-up of the reader task):

    - ``data_received`` takes complete, final, masked text (and binary) frames straight from the
      bytes and hands them to the relay; anything else (control frames, fragments, frames over
      the size limit, text that is not UTF-8, a frame cut by the end of the read) goes to
      websockets' parser from that frame on. Frame boundaries are followed through what the
      parser is given, so the shortcut takes over again at the next frame start;
    - ``process_event``: complete frames that did go through the parser are handed over as they
      come out of it.

    Fragmented messages and anything that arrived before the relay attached take the ordinary
    path (the reader task), and frames behind them wait for it, so messages stay in order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.link: _Link | None = None
        self.queued_messages = 0  # complete messages on the ordinary path, not handled yet
        self.fragmented = False
        self.reading_paused = False  # by us, because the client does not read our replies
        # The handshake's bytes until the request's end is seen (None after). Only if nothing
        # followed the request in them do frames start at a known boundary.
        self._pre: bytes | None = b""
        self._track = False
        self._skip = 0  # bytes of the frame websockets' parser is in, still to come
        self._partial = b""  # the start of a frame header it has, when incomplete

    def data_received(self, data: bytes) -> None:
        if not self._track:
            pre = self._pre
            if pre is not None:
                pre += data
                end = pre.find(b"\r\n\r\n")
                if end >= 0:
                    self._track = len(pre) == end + 4
                    self._pre = None
                elif len(pre) > 65536:  # websockets refuses such a request anyway
                    self._pre = None
                else:
                    self._pre = pre
            super().data_received(data)
            return
        link = self.link
        skip = self._skip
        if skip and not self._partial and link is not None and skip < len(data):
            # The rest of a frame websockets' parser is in, then (usually) frames we can take.
            self._skip = 0
            super().data_received(data[:skip])
            data = data[skip:]
        if (
            link is None
            or self._skip
            or self._partial
            or self.queued_messages
            or self.fragmented
            or self.protocol.state is not OPEN
        ):
            self._walk(data)
            super().data_received(data)
            return
        pos = self._take_frames(data, link)
        if pos < len(data):
            rest = data[pos:] if pos else data
            self._walk(rest)
            super().data_received(rest)

    def _take_frames(self, data: bytes, link: _Link) -> int:
        """Handle the complete data frames at the start of ``data``; returns where the first
        frame left to websockets begins."""
        n = len(data)
        pos = 0
        max_size = self.protocol.max_message_size
        protocol = self.protocol
        while n - pos >= 6:
            b0 = data[pos]
            b1 = data[pos + 1]
            if (b0 != 0x81 and b0 != 0x82) or b1 < 0x80:  # FIN, no RSV, text/binary; masked
                break
            length = b1 & 0x7F
            if length < 126:
                head = pos + 2
            elif length == 126:
                if n - pos < 8:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
                head = pos + 4
            else:
                if n - pos < 14:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                head = pos + 10
            start = head + 4
            end = start + length
            if end > n or (max_size is not None and length > max_size):
                break
            payload = apply_mask(data[start:end], data[head:start])
            if b0 == 0x81:
                try:
                    message: str | bytes = payload.decode()
                except UnicodeDecodeError:
                    break  # websockets fails the connection with 1007
            else:
                message = payload
            pos = end
            link.on_message(message)
            if protocol.state is not OPEN:
                return n  # closed while handling: the rest is not read
        return pos

    def _walk(self, data: bytes) -> None:
        """Follow frame boundaries through bytes handed to websockets' parser."""
        skip = self._skip
        if skip >= len(data):
            self._skip = skip - len(data)
            return
        if self._partial:
            buf, pos = self._partial + data, 0
        else:
            buf, pos = data, skip
        n = len(buf)
        while pos < n:
            if n - pos < 2:
                break
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            if length < 126:
                head = 2
            elif length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            else:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            pos += head + (4 if b1 & 0x80 else 0) + length
        else:
            self._skip, self._partial = pos - n, b""
            return
        self._skip, self._partial = 0, bytes(buf[pos:])  # a header cut short: at most 13 bytes

    def process_event(self, event: Any) -> None:
        if type(event) is not Frame:  # the handshake's request
            super().process_event(event)
            return
        opcode = event.opcode
        if opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
            link = self.link
            if (
                link is not None
                and event.fin
                and opcode is not _CONT
                and not self.queued_messages
                and not self.fragmented
            ):
                if opcode is _BINARY:
                    link.on_message(bytes(event.data))
                    return
                try:
                    text = str(event.data, "utf-8")
                except UnicodeDecodeError:
                    pass  # the ordinary path fails the connection with 1007
                else:
                    link.on_message(text)
                    return
            if event.fin:
                self.queued_messages += 1
                self.fragmented = False
            else:
                self.fragmented = True
        super().process_event(event)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()


def _address(ws: ServerConnection) -> str:
    peername = ws.remote_address
    return str(peername[0]) if peername else ""


class _Link:
    """One websocket connection's outgoing side: faults, delay queue, flow control."""

    __slots__ = (
        "cut_task",
        "flushed",
        "last_due",
        "loop",
        "out_pending",
        "peer",
        "pump_task",
        "queue",
        "queued",
        "relay",
        "timer",
        "unflushed",
        "ws",
    )

    def __init__(self, relay: Relay, ws: _Connection) -> None:
        self.relay = relay
        self.ws = ws
        self.cut_task: asyncio.Task[None] | None = None
        self.loop = asyncio.get_running_loop()
        self.peer: Peer | None = None
        self.queue: deque[tuple[float, str]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.last_due = 0.0
        self.out_pending = False
        self.unflushed = 0  # bytes framed this loop iteration, not yet handed to the socket
        self.queued = 0  # bytes held back by the latency fault
        self.flushed: asyncio.Event | None = None  # set when some of them have gone out
        self.pump_task: asyncio.Task[None] | None = None

    def buffered(self) -> int:
        """Bytes sent to this client that it has not read yet (as far as this process holds
        them: the kernel's socket buffers come on top)."""
        return self.ws.transport.get_write_buffer_size() + self.unflushed + self.queued

    def send(self, text: str) -> None:
        relay = self.relay
        faults = relay.faults
        if faults.drop_rate and relay._should_drop(text, faults):
            return
        if faults.latency or self.queue:
            loop = self.loop
            # Never earlier than the message before it: order holds when latency changes.
            due = max(loop.time() + faults.latency, self.last_due)
            self.last_due = due
            self.queue.append((due, text))
            self.queued += len(text)
            relay._delayed += 1
            if self.timer is None:
                self.timer = loop.call_at(due, self._flush)
            return
        self.write(text)

    def _flush(self) -> None:
        self.timer = None
        loop = self.loop
        now = loop.time()
        queue = self.queue
        while queue and queue[0][0] <= now:
            text = queue.popleft()[1]
            self.queued -= len(text)
            self.write(text)
        if queue:
            self.timer = loop.call_at(queue[0][0], self._flush)
        if self.flushed is not None:
            self.flushed.set()
            self.flushed = None

    def write(self, text: str) -> None:
        """Frame the message now; hand the frames to the socket once this loop iteration is done,
        so that replies to a burst of messages (and events fanned out to a subscriber) leave in
        one system call instead of one each."""
        protocol = self.ws.protocol
        if protocol.state is not OPEN:
            return
        data = text.encode()
        n = len(data)
        self.unflushed += n
        if protocol.extensions or protocol.expect_continuation_frame:
            protocol.send_text(data)  # not so here (compression off, nothing fragmented)
        else:
            # An unmasked final text frame, header by hand (websockets' Frame objects cost more
            # than the rest of sending); queued in the protocol's own output, so the order with
            # its pongs and close frames holds.
            writes = protocol.writes
            if n < 126:
                writes.append(bytes((0x81, n)))
            elif n < 65536:
                writes.append(_HEADER_16(0x81, 126, n))
            else:
                writes.append(_HEADER_64(0x81, 127, n))
            writes.append(data)
        if not self.out_pending:
            self.out_pending = True
            self.loop.call_soon(self._send_out)

    def _send_out(self) -> None:
        self.out_pending = False
        self.unflushed = 0
        ws = self.ws
        transport = ws.transport
        chunks = ws.protocol.data_to_send()
        if not chunks or transport.is_closing():
            return
        try:
            transport.write(b"".join(chunks))
            if not all(chunks):  # b"" asks for a half-close after a close frame
                if transport.can_write_eof():
                    transport.write_eof()
                else:
                    transport.close()
        except Exception:  # a socket that fails mid-write is closing anyway
            log.debug("write failed", exc_info=True)
            transport.abort()
            return
        if ws.paused and not ws.reading_paused:
            # Our replies are not being read: read no more requests until they are.
            ws.reading_paused = True
            transport.pause_reading()
        unread = transport.get_write_buffer_size()
        lim = self.relay.limits
        if unread > 2 * lim.max_write_buffer + lim.hard_frame_limit:
            # The core keeps within max_write_buffer (pacing, CLOSED); this is the last resort
            # against a client that sends requests and never reads the answers.
            log.warning("dropping a client that does not read: %d bytes unread", unread)
            transport.abort()

    def on_message(self, data: str | bytes) -> bool:
        """Handle one message; False once the connection is being cut (disconnect fault)."""
        if self.cut_task is not None:
            return False
        relay = self.relay
        peer = self.peer
        assert peer is not None
        try:
            relay.core.handle(peer, data, relay.clock())
        except Exception:  # never let one message take the relay down
            log.exception("internal error handling a message")
            self.send(notice_message("error: internal error while handling the message"))
        if peer.backlog:
            self.start_pump()
        limit = relay.faults.disconnect_after
        if limit is not None and peer.received >= limit:
            self.cut_task = self.loop.create_task(relay._cut(self.ws))
            return False
        return True

    def start_pump(self) -> None:
        if self.pump_task is None:
            self.pump_task = self.loop.create_task(self._pump())

    async def _pump(self) -> None:
        """Send pending stored results as the client reads them."""
        ws, peer, core, clock = self.ws, self.peer, self.relay.core, self.relay.clock
        assert peer is not None
        try:
            while ws.protocol.state is OPEN:
                if self.out_pending:
                    self._send_out()  # to the socket now, so that its flow control sees it
                if ws.paused:
                    await ws.drain()  # until the client has read most of it
                half = self.relay.limits.max_write_buffer // 2
                while self.queue and self.queued >= half:  # the latency fault holds it back
                    self.flushed = asyncio.Event()
                    await self.flushed.wait()
                if not core.pump(peer, clock()):
                    return
                # Let other connections run between rounds.
                await asyncio.sleep(0)
        except (ConnectionError, ConnectionClosed):
            pass
        finally:
            self.pump_task = None

    def cancel(self) -> None:
        if self.pump_task is not None:
            self.pump_task.cancel()
            self.pump_task = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()
        self.queued = 0


class Relay:
    """A NIP-01 relay on ``ws://host:port`` (port 0 picks a free one). Use as an async context
    manager; ``url`` is known once it listens.

    ``faults`` (a :class:`Faults`) can be changed while it runs; ``seed`` makes the random drops
    repeatable; ``clock`` (unix seconds) is what expiration, time limits and rates are judged by.
    ``db`` names a SQLite file that keeps events across restarts.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        db: str | Path | None = None,
        limits: Limits | None = None,
        faults: Faults | None = None,
        info: RelayInfo | None = None,
        auth_required: bool = False,
        allowed_pubkeys: Iterable[str] | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self._port = port
        self.limits = limits or Limits()
        self.faults = faults or Faults()
        self.info = info or RelayInfo()
        self.clock = clock
        self.seed = seed
        self._rng = random.Random(seed)
        self.core = RelayCore(
            limits=self.limits,
            faults=self.faults,
            auth_required=auth_required,
            allowed_pubkeys=set(allowed_pubkeys) if allowed_pubkeys is not None else None,
        )
        self._db_path = Path(db) if db is not None else None
        self._db: SqliteEvents | None = None
        self._commit_timer: asyncio.TimerHandle | None = None
        self._purge_timer: asyncio.TimerHandle | None = None
        self._server: Server | None = None
        self._links: dict[ServerConnection, _Link] = {}
        self._per_ip: Counter[str] = Counter()
        self._dropped = 0
        self._delayed = 0
        self._forced = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._gone = asyncio.Event()  # set whenever a connection has been cleaned up

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        if self._server is None:
            raise RelayNotRunning("the relay is not listening; start it first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self._port}"

    @property
    def http_url(self) -> str:
        return "http" + self.url[2:]

    async def start(self) -> None:
        """Listen (again, on the same port after :meth:`stop`)."""
        if self._server is not None:
            return
        if self._db_path is not None and self._db is None:
            self._db = SqliteEvents(self._db_path)
            loaded = self._db.load_into(self.core.store, self.clock())
            log.info("loaded %d events from %s", loaded, self._db_path)
            self.core.on_stored = self._db_save
            self.core.on_removed = self._db_delete
        self._server = await serve(
            self._serve_connection,
            self.host,
            self._port,
            compression=None,  # per-message deflate costs more than it saves on localhost
            process_request=self._http,
            create_connection=_Connection,
            max_size=self.limits.hard_frame_limit,
            max_queue=64,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=2,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self.core.relay_url = self.url
        loop = asyncio.get_running_loop()
        self._purge_timer = loop.call_later(PURGE_INTERVAL, self._purge)
        log.info("relay listening on %s", self.url)

    async def stop(self, *, abort: bool = False) -> None:
        """Stop listening and drop every connection (``abort``: TCP reset, no close frame).
        Stored events stay; :meth:`start` listens again on the same port."""
        server, self._server = self._server, None
        if server is None:
            return
        if self._purge_timer is not None:
            self._purge_timer.cancel()
            self._purge_timer = None
        if abort:
            for ws in list(self._links):
                ws.transport.abort()
        server.close()
        await server.wait_closed()
        self._commit()

    async def restart(self, downtime: float = 0.0) -> None:
        """Stop, stay down ``downtime`` seconds, listen again on the same port."""
        await self.stop()
        if downtime > 0:
            await asyncio.sleep(downtime)
        await self.start()

    async def close(self) -> None:
        await self.stop()
        if self._commit_timer is not None:
            self._commit_timer.cancel()
            self._commit_timer = None
        if self._db is not None:
            self._db.close()
            self._db = None
            self.core.on_stored = self.core.on_removed = None

    async def __aenter__(self) -> Relay:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- inspection and direct use ----------------------------------------------------------

    def stats(self) -> RelayStats:
        return RelayStats(
            connections=len(self._links),
            subscriptions=len(self.core.live),
            stored_events=len(self.core.store),
            events_received=self.core.events_received,
            messages_dropped=self._dropped,
            messages_delayed=self._delayed,
            disconnects_forced=self._forced,
            refused=dict(self.core.refused),
            live_filters=self.core.live.filters,
            filters_checked=self.core.live.checks,
        )

    async def wait_idle(self) -> None:
        """Return once no client connection is open and every handler has cleaned up."""
        while self._links:
            await self._idle.wait()

    async def wait_connections(self, at_most: int) -> None:
        """Return once at most ``at_most`` client connections are open (and the others cleaned
        up)."""
        while len(self._links) > at_most:
            self._gone.clear()
            await self._gone.wait()

    def stored_events(self, *filters: Filter) -> list[Event]:
        """Stored events (newest first), all of them or those matching any of ``filters``."""
        store = self.core.store
        now = self.clock()
        if filters:
            recs = store.query(filters, now, max_limit=len(store) or 1, default_limit=None)
        else:
            recs = [r for r in reversed(store.all()) if r.expires_at is None or r.expires_at > now]
        return [Event.from_json(r.raw, verify=False) for r in recs]

    def inject(self, event: Event) -> tuple[bool, str]:
        """Store and forward an event as if a client had published it (checks included)."""
        raw = event.to_json()
        rec = parse_record(json.loads(raw), raw)
        outcome = self.core.publish(rec, self.clock())
        return outcome.accepted, outcome.message

    def close_subscriptions(self, reason: str = "error: closed by the relay") -> int:
        """End every open subscription with CLOSED and ``reason``; returns how many."""
        n = 0
        for peer in list(self.core.peers):
            for sub_id in list(peer.subs):
                n += self.core.close_subscription(peer, sub_id, reason)
        return n

    async def disconnect_all(self, *, abort: bool = False) -> int:
        """Cut every client connection while still listening."""
        links = list(self._links.items())
        for ws, _ in links:
            if abort:
                ws.transport.abort()
            else:
                await ws.close(1001, "relay_mock: disconnected on request")
        self._forced += len(links)
        return len(links)

    # --- connections ----------------------------------------------------------------------

    def _connection_refusal(self, ip: str) -> str:
        lim = self.limits
        if len(self._links) >= lim.max_connections:
            return f"rate-limited: too many connections (max {lim.max_connections})"
        if self._per_ip[ip] >= lim.max_connections_per_ip:
            return (
                "rate-limited: too many connections from your address "
                f"(max {lim.max_connections_per_ip})"
            )
        return ""

    async def _serve_connection(self, connection: ServerConnection) -> None:
        ws = cast(_Connection, connection)  # serve() makes each one with create_connection
        ip = _address(ws)
        # Checked again here (the HTTP check refuses most): handshakes can overlap.
        refusal = self._connection_refusal(ip)
        if refusal:
            self.core.refused["rate-limited"] += 1
            await ws.close(1013, refusal[:120])  # 1013: try again later
            return
        link = _Link(self, ws)
        self._links[ws] = link
        self._per_ip[ip] += 1
        self._idle.clear()
        core = self.core
        clock = self.clock
        peer = core.connect(
            link.send, clock(), challenge=secrets.token_hex(16), buffered=link.buffered
        )
        link.peer = peer
        ws.link = link  # from now on complete frames are handled as they arrive
        try:
            # The ordinary path: what the shortcut in _Connection leaves to it.
            while True:
                data = await ws.recv()
                ws.queued_messages -= 1
                if not link.on_message(data):
                    break
                if ws.paused:  # our replies are not being read: stop reading until they are
                    await ws.drain()
            if link.cut_task is not None:
                await link.cut_task
        except ConnectionClosed:
            pass
        finally:
            core.disconnect(peer)
            link.cancel()
            self._links.pop(ws, None)
            self._per_ip[ip] -= 1
            if not self._per_ip[ip]:
                del self._per_ip[ip]
            self._gone.set()
            if not self._links:
                self._idle.set()

    async def _cut(self, ws: ServerConnection) -> None:
        self._forced += 1
        if self.faults.disconnect_mode == "abort":
            ws.transport.abort()
        else:
            await ws.close(1011, "relay_mock: disconnect fault")

    def _should_drop(self, text: str, faults: Faults) -> bool:
        verbs = faults.drop_verbs
        if verbs is not None and text[2 : text.find('"', 2)] not in verbs:
            return False
        if self._rng.random() < faults.drop_rate:
            self._dropped += 1
            return True
        return False

    # --- HTTP (NIP-11) on the same port -------------------------------------------------------

    def info_document(self) -> dict[str, Any]:
        return info_document(
            self.info,
            self.limits,
            self.faults,
            auth_required=self.core.auth_required,
            restricted_writes=self.core.allowed_pubkeys is not None,
        )

    def _http(self, conn: ServerConnection, request: Request) -> Response | None:
        headers = request.headers
        if "application/nostr+json" in headers.get("Accept", ""):
            response = conn.respond(200, json.dumps(self.info_document()))
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/nostr+json"
            response.headers["Access-Control-Allow-Origin"] = "*"
            response.headers["Access-Control-Allow-Headers"] = "*"
            response.headers["Access-Control-Allow-Methods"] = "GET, OPTIONS"
            return response
        if "upgrade" not in headers.get("Connection", "").lower():
            return conn.respond(
                200,
                "relay_mock: a Nostr relay. Connect with a websocket, or send "
                "Accept: application/nostr+json for its NIP-11 document.\n",
            )
        refusal = self._connection_refusal(_address(conn))
        if refusal:  # before the upgrade: a refused client costs no websocket state
            self.core.refused["rate-limited"] += 1
            return conn.respond(503, refusal + "\n")
        return None

    # --- timers -------------------------------------------------------------------------------

    def _purge(self) -> None:
        try:
            self.core.purge(self.clock())
        finally:
            if self._server is not None:
                loop = asyncio.get_running_loop()
                self._purge_timer = loop.call_later(PURGE_INTERVAL, self._purge)

    def _db_save(self, rec: Record) -> None:
        assert self._db is not None
        self._db.save(rec)
        self._schedule_commit()

    def _db_delete(self, records: list[Record]) -> None:
        assert self._db is not None
        self._db.delete(records)
        self._schedule_commit()

    def _schedule_commit(self) -> None:
        if self._commit_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # called outside the loop (e.g. inject from a sync test helper)
                self._commit()
                return
            self._commit_timer = loop.call_later(COMMIT_DELAY, self._commit)

    def _commit(self) -> None:
        self._commit_timer = None
        if self._db is not None:
            self._db.commit()
