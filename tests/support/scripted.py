"""Test helpers for the client tests: a scripted relay (a raw websocket server that sends what a
test tells it to, including what a correct relay would refuse to forward), scripted NIP-90
providers over a real RelayPool, and a silent TCP server (accepts, never answers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from types import TracebackType

from websockets.asyncio.server import Server, ServerConnection, serve

from client.dvm.amounts import AMOUNT_REASON
from client.dvm.nip90 import JobRequest, build_feedback, build_result, parse_request
from client.net.pool import RelayPool
from client.nostr.errors import JobRejected
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys


class ScriptedRelay:
    """``on_req(sub_id, filters) -> [raw messages]`` answers each REQ; EVENTs get OK true."""

    def __init__(
        self,
        on_req: Callable[[str, list[dict[str, object]]], list[str]] | None = None,
        *,
        greeting: list[str] | None = None,
    ) -> None:
        self.on_req = on_req or (lambda sub_id, filters: [json.dumps(["EOSE", sub_id])])
        self.greeting = greeting or []
        self.received: list[list[object]] = []
        self.got_message = asyncio.Event()
        self._server: Server | None = None
        self.connections: list[ServerConnection] = []

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        for text in self.greeting:
            await ws.send(text)
        with contextlib.suppress(Exception):
            async for raw in ws:
                msg = json.loads(raw)
                self.received.append(msg)
                self.got_message.set()
                if msg[0] == "REQ":
                    for text in self.on_req(msg[1], msg[2:]):
                        await ws.send(text)
                elif msg[0] in ("EVENT", "AUTH"):
                    await ws.send(json.dumps(["OK", msg[1]["id"], True, ""]))

    async def wait_for(self, verb: str) -> list[object]:
        while True:
            for msg in self.received:
                if msg[0] == verb:
                    return msg
            self.got_message.clear()
            await self.got_message.wait()

    async def __aenter__(self) -> ScriptedRelay:
        self._server = await serve(self._handle, "127.0.0.1", 0, compression=None)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A TCP server that accepts and never answers: a websocket handshake there hangs."""
    conns: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conns.append(writer)
        await reader.read()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        for w in conns:
            w.close()
        server.close()
        await server.wait_closed()


def dead_url() -> str:
    """A local URL where nothing listens (connection refused at once)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ws://127.0.0.1:{port}"


Answer = Callable[[JobRequest], str | None]


class ScriptedProvider:
    """A provider written for tests: sees 5050 requests on a real pool, sends ``processing``
    feedback, then (once ``gate`` is set, if given) the result ``answer(request)`` (None: stay
    silent; ``error`` feedback when ``fail``). ``saw``/``answered`` are set as it goes. Extra raw
    events can be pushed with :meth:`send`."""

    def __init__(
        self,
        urls: list[str],
        answer: Answer | str,
        *,
        keys: Keys | None = None,
        feedback: bool = True,
        amount_msats: int | None = None,
        bolt11: str | None = None,
        fail: bool = False,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.keys = keys or Keys.generate()
        self.urls = urls
        self.answer: Answer = (lambda _r, a=answer: a) if isinstance(answer, str) else answer
        self.feedback = feedback
        self.amount_msats = amount_msats
        self.bolt11 = bolt11
        self.fail = fail
        self.gate = gate
        self.saw = asyncio.Event()
        self.answered = asyncio.Event()
        self.pool: RelayPool | None = None
        self.seen: list[JobRequest] = []
        self.deletions: list[Event] = []
        self.got_deletion = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def pubkey(self) -> str:
        return self.keys.public_key

    async def __aenter__(self) -> ScriptedProvider:
        self.pool = RelayPool(self.urls, keys=self.keys, backoff_min=0.05, backoff_max=0.2)
        await self.pool.start()
        sub = self.pool.subscribe([Filter(kinds=[5050]), Filter(kinds=[5])])
        self._task = asyncio.create_task(self._serve(sub))
        await sub.wait_eose()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        assert self.pool is not None
        await self.pool.close()

    async def send(self, event: Event) -> None:
        assert self.pool is not None
        await self.pool.publish(event)

    async def _serve(self, sub: AsyncIterator[Event]) -> None:
        async for event in sub:
            if event.kind == 5:
                self.deletions.append(event)
                self.got_deletion.set()
                continue
            try:
                req = parse_request(event, keys=self.keys, verify=False)
            except Exception:
                continue
            if not req.is_for(self.pubkey):
                continue
            self.seen.append(req)
            self.saw.set()
            asyncio.get_running_loop().create_task(self._work(req))

    async def _work(self, req: JobRequest) -> None:
        assert self.pool is not None
        if self.fail:
            await self.pool.publish(build_feedback(self.keys, req, "error", extra="model down"))
            return
        if self.feedback:
            processing = self._priced(
                lambda **amount: build_feedback(self.keys, req, "processing", **amount)
            )
            await self.pool.publish(processing)
        if self.gate is not None:
            await self.gate.wait()
        text = self.answer(req)
        if text is None:
            return
        await self.pool.publish(
            self._priced(lambda **amount: build_result(self.keys, req, text, **amount))
        )
        self.answered.set()

    def _priced(self, reply: Callable[..., Event]) -> Event:
        """``reply`` with this provider's amount and invoice. The builders refuse an amount over
        the bid or an invoice that does not name it; a scripted provider sends those anyway
        (the customer's guard is what the tests check), with the tag added by hand."""
        try:
            return reply(amount_msats=self.amount_msats, bolt11=self.bolt11)
        except JobRejected as exc:
            if exc.reason != AMOUNT_REASON:
                raise
        bare = reply()
        tag = ["amount", str(self.amount_msats), *([self.bolt11] if self.bolt11 else [])]
        return Event.create(self.keys, bare.kind, bare.content, [*bare.tags, tag])
