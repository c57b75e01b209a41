"""The gateway over raw TCP under random HTTP: requests built from valid pieces (methods, paths,
headers, chat and text bodies), then mutated as JSON and as bytes (flips, cuts, stray CR/LF,
duplicated spans, lying Content-Length, broken chunking).

The gateway (over mock backends) runs in its own thread and loop for the whole module. Each case
sends 1-3 requests on a fresh connection, half-closes it and reads until the gateway closes.
Whatever comes back must parse as HTTP/1.1 answers, none may be a 500 (an unhandled error in the
gateway), and afterwards the gateway still answers ``GET /healthz`` and a real chat completion.
"""

from __future__ import annotations

import asyncio
import json
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httptools
import pytest
from hypothesis import given

from router.gateway.app import Gateway
from router.gateway.config import parse_config
from tests.support.gateway import config

from .mutate import Mutator
from .profiles import DEEP, QUICK, seeds

WAIT = 10.0
KEY = "sk-fuzz"

SETUP: dict[str, Any] = {
    "backends": [
        {"name": "alpha", "type": "mock", "models": ["m1"], "response": "one two", "usage": [2, 2]},
    ],
    "aliases": {"fast": "m1"},
    "keys": [{"name": "fuzz", "key": KEY, "budget_sats": 10**9}],
    "server": {"max_body_bytes": 8192, "max_header_bytes": 4096, "keepalive_timeout_s": 5},
}

PATHS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/v1/models/m1",
    "/v1/models/nope%2Fx",
    "/healthz",
    "/healthz?deep=1",
    "/v1/usage",
    "/metrics",
    "/v1/embeddings",
    "*",
    "http://x/v1/models",
]
# No HEAD: its answers announce a length but carry no body, which a response parser reading
# pipelined answers cannot know (test_http_server.py covers HEAD).
METHODS = ["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"]
CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
TEXT = {"model": "fast", "prompt": "hi", "max_tokens": 8}


class GatewayThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.gw: Gateway | None = None
        self.port = 0

    def __enter__(self) -> GatewayThread:
        self.thread.start()

        async def start() -> Gateway:
            # A module fixture runs before the per-test home is set: keep state out of $HOME.
            state = {"url": str(Path(tempfile.mkdtemp()) / "gateway.sqlite")}
            gw = Gateway(parse_config(config({**SETUP, "state": state}), env={}))
            await gw.start("127.0.0.1", 0)
            return gw

        self.gw = asyncio.run_coroutine_threadsafe(start(), self.loop).result(WAIT)
        self.port = int(self.gw.url.rsplit(":", 1)[1])
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.gw is not None
        asyncio.run_coroutine_threadsafe(self.gw.stop(grace_s=1), self.loop).result(WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()

    def exchange(self, data: bytes) -> bytes:
        """Send ``data``, half-close, and read until the gateway closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=WAIT) as s:
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused early (431/413/400) and closed while we were still sending
            out = bytearray()
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                out += chunk
            return bytes(out)


@pytest.fixture(scope="module")
def served() -> Iterator[GatewayThread]:
    with GatewayThread() as gt:
        yield gt


class Answers:
    """Parses what came back as a series of HTTP/1.1 answers."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.bodies: list[bytes] = []
        self._parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.bodies.append(b"")

    def on_headers_complete(self) -> None:
        self.statuses.append(self._parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        self.bodies[-1] += body

    def feed(self, data: bytes) -> None:
        self._parser.feed_data(data)


def build(m: Mutator) -> bytes:
    r = m.r
    method = r.choice(METHODS[:2]) if r.random() < 0.7 else r.choice(METHODS)
    path = r.choice(PATHS[:2]) if r.random() < 0.6 else r.choice(PATHS)
    if r.random() < 0.1:
        path = m.text(40).replace(" ", "%20") or "/"
    pick = r.random()
    obj: Any = CHAT if pick < 0.5 else TEXT if pick < 0.8 else m.value()
    if isinstance(obj, dict) and r.random() < 0.3:
        obj = {**obj, "stream": True}
    body = m.dumps(m.mutate(obj)).encode("utf-8", "replace")
    if r.random() < 0.05:
        body = body * r.randrange(50, 400)  # over the body limit, mostly
    headers = [("Host", "gw")]
    if r.random() < 0.8:
        headers.append(("Authorization", f"Bearer {KEY}" if r.random() < 0.8 else m.text(20)))
    if r.random() < 0.5:
        headers.append(("Content-Type", "application/json"))
    if r.random() < 0.2:
        headers.append((r.choice(["x-swarm-quorum", "x-swarm-bid-sats", "Expect"]), m.text(8)))
    if r.random() < 0.05:
        headers.append(("X-Big", "a" * r.randrange(1000, 9000)))
    chunked = r.random() < 0.2
    if chunked:
        headers.append(("Transfer-Encoding", "chunked"))
        pieces = [body[i : i + 37] for i in range(0, len(body), 37)]
        payload = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    else:
        length = len(body) if r.random() < 0.85 else r.randrange(0, len(body) + 20)
        headers.append(("Content-Length", str(length)))
        payload = body
    version = "HTTP/1.1" if r.random() < 0.9 else r.choice(["HTTP/1.0", "HTTP/2.0", "HTTP/1.x"])
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    data = head.encode("utf-8", "replace") + b"\r\n" + payload
    return mangle(m, data) if r.random() < 0.4 else data


def mangle(m: Mutator, data: bytes) -> bytes:
    r = m.r
    buf = bytearray(data)
    for _ in range(r.randrange(1, 4)):
        if not buf:
            break
        i = r.randrange(len(buf))
        op = r.randrange(5)
        if op == 0:
            buf[i] = r.randrange(256)
        elif op == 1:
            del buf[i : i + r.randrange(1, 20)]
        elif op == 2:
            buf[i:i] = r.choice([b"\r\n", b"\n", b"\r", b"\x00", b":", b" "])
        elif op == 3:
            j = min(len(buf), i + r.randrange(1, 40))
            buf[i:i] = buf[i:j]
        else:
            del buf[i:]
    return bytes(buf)


CHAT_PROBE = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "
    + KEY.encode()
    + b"\r\nContent-Length: %d\r\n\r\n%b"
)


def http_case(gt: GatewayThread, seed: int) -> None:
    m = Mutator(seed)
    data = b"".join(build(m) for _ in range(m.r.randrange(1, 4)))
    reply = gt.exchange(data)
    answers = Answers()
    try:
        answers.feed(reply)
    except httptools.HttpParserError as exc:
        raise AssertionError(f"not HTTP: {exc}: {reply[:300]!r}") from None
    assert 500 not in answers.statuses, reply[:2000]
    for status, body in zip(answers.statuses, answers.bodies, strict=False):
        if status >= 400 and body:
            assert set(json.loads(body)["error"]) >= {"message", "type", "code"}
    # the gateway is still fine
    probe = Answers()
    probe.feed(gt.exchange(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"))
    assert probe.statuses == [200]
    chat = json.dumps(CHAT).encode()
    probe = Answers()
    probe.feed(gt.exchange(CHAT_PROBE % (len(chat), chat)))
    assert probe.statuses == [200]
    assert json.loads(probe.bodies[0])["choices"][0]["message"]["content"] == "one two"


@QUICK
@given(seed=seeds)
def test_gateway_answers_any_bytes_over_http(served: GatewayThread, seed: int) -> None:
    http_case(served, seed)


@pytest.mark.fuzz
@DEEP
@given(seed=seeds)
def test_fuzz_gateway_answers_any_bytes_over_http(served: GatewayThread, seed: int) -> None:
    http_case(served, seed)
