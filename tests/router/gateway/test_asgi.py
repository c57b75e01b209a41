"""The ASGI adapter (router/gateway/asgi.py) on uvicorn and granian: the whole gateway
(completions, a stream, errors, lifespan, `swarm serve --server`), and the HTTP rules it shares
with the built-in server (limits, refused answer headers, a client leaving mid-stream, a failure
after the stream started)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from router.gateway.asgi import AsgiApp, GatewayAsgi, app_from_env
from router.gateway.config import parse_config
from router.gateway.http_server import HttpRequest, HttpResponse
from tests.support.asgi_server import SERVERS, uvicorn_serving
from tests.support.gateway import config

from .test_http_server import closed, read_answer

T = 10

SETUP: dict[str, Any] = {
    "backends": [
        {"name": "alpha", "type": "mock", "models": ["m1"], "response": "one two three"},
    ],
}
CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


@pytest.mark.parametrize("server", list(SERVERS))
async def test_the_gateway_on_an_asgi_server_answers_and_streams(server: str) -> None:
    app = GatewayAsgi(parse_config(config(SETUP), env={}))
    async with SERVERS[server](app) as port, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{port}"
        async with http.get(base + "/healthz") as r:
            assert r.status == 200
        async with http.post(base + "/v1/chat/completions", json=CHAT) as r:
            got = await r.json()
            assert r.status == 200 and r.headers["x-swarm-backend"] == "alpha"
            assert got["choices"][0]["message"]["content"] == "one two three"
        async with http.post(base + "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers.get("transfer-encoding") == "chunked"
            events = [line async for line in r.content if line.startswith(b"data: ")]
        assert events[-1] == b"data: [DONE]\n"
        text = "".join(
            json.loads(e[6:])["choices"][0]["delta"].get("content", "")
            for e in events[:-1]
            if json.loads(e[6:])["choices"]
        )
        assert text == "one two three"
        async with http.get(base + "/nope") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "unknown_url"
        async with http.head(base + "/v1/models") as r:
            assert r.status == 200 and int(r.headers["content-length"]) > 0
        assert app.gateway is not None
    assert app.gateway is None  # stopped at lifespan shutdown


def test_app_from_env_needs_the_config_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWARM_GATEWAY_CONFIG", raising=False)
    with pytest.raises(RuntimeError, match="SWARM_GATEWAY_CONFIG"):
        app_from_env()


class Probe:
    """Echoes; ``/stream-forever`` streams until the client leaves; ``/stream-fails`` fails
    after its first piece; ``/bad-header`` answers with a framing header."""

    def __init__(self) -> None:
        self.left: asyncio.Future[BaseException] = asyncio.Future()

    async def __call__(self, req: HttpRequest) -> HttpResponse | None:
        if req.path == "/stream-forever":
            out = await req.stream(200, {"Content-Type": "text/plain"})
            try:
                while True:
                    await out.write(b"x" * 4096)
            except ConnectionResetError as exc:
                self.left.set_result(exc)
            return None
        if req.path == "/stream-fails":
            out = await req.stream(200, {"Content-Type": "text/plain"})
            await out.write(b"partial")
            raise RuntimeError("failed mid-answer")
        if req.path == "/bad-header":
            return HttpResponse(b"x", 200, {"Content-Length": "99"})
        if req.path == "/close":
            return HttpResponse(b"bye", 200, {"Connection": "close"})
        body = json.dumps({"path": req.path, "body": req.body.decode()}).encode()
        return HttpResponse(body, 200, {"Content-Type": "application/json"})


@pytest.mark.parametrize("server", list(SERVERS))
async def test_a_client_leaving_mid_stream_is_seen_by_the_app(server: str) -> None:
    probe = Probe()
    async with SERVERS[server](AsgiApp(probe)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream-forever HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
        writer.transport.abort()
        assert isinstance(await asyncio.wait_for(probe.left, T), ConnectionResetError)


@pytest.mark.parametrize("server", list(SERVERS))
async def test_a_failure_after_the_stream_started_truncates_the_body(server: str) -> None:
    async with SERVERS[server](AsgiApp(Probe())) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream-fails HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
        assert b"transfer-encoding: chunked" in head.lower()
        try:
            rest = await asyncio.wait_for(reader.read(), T)
        except ConnectionResetError:
            rest = b""
        assert b"partial" in rest or rest == b""
        assert not rest.endswith(b"0\r\n\r\n")


async def test_limits_and_refused_headers_hold_on_uvicorn() -> None:
    app = AsgiApp(Probe(), max_body_bytes=1024, max_head_bytes=2048)
    async with uvicorn_serving(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        status, headers, body = await read_answer(reader)
        assert status == 413 and headers["connection"] == "close"
        assert json.loads(body)["error"]["code"] == "request_too_large"

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write((b"200\r\n" + b"z" * 512 + b"\r\n") * 3 + b"0\r\n\r\n")
        assert (await read_answer(reader))[0] == 413

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096 + b"\r\n\r\n")
        status, _, body = await read_answer(reader)
        assert status == 431 and json.loads(body)["error"]["code"] == "headers_too_large"

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /bad-header HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = await read_answer(reader)
        assert status == 500 and headers.get("content-length") != "99"
        writer.write(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = await read_answer(reader)
        assert (status, body, headers["connection"]) == (200, b"bye", "close")
        assert await closed(reader)


async def test_a_failing_startup_is_reported_to_the_server() -> None:
    class Failing(AsgiApp):
        async def startup(self) -> None:
            raise RuntimeError("no backends")

    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "lifespan.startup"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: Any) -> None:
        sent.append(message)

    await Failing(None)({"type": "lifespan"}, receive, send)
    assert sent == [{"type": "lifespan.startup.failed", "message": "no backends"}]


@pytest.mark.parametrize("server", list(SERVERS))
async def test_swarm_serve_on_an_asgi_server_answers_and_stops_cleanly(
    server: str, tmp_path: Any
) -> None:
    import signal
    import sys

    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(
        "refresh_interval: 0\nbackends:\n  - name: alpha\n    type: mock\n    models: [m1]\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "client.cli", "serve", "--config", str(cfg), "--port", "0"),
        *("--server", server),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert "listening on" in line, line
        url = line.split("listening on ")[1].split()[0]
        async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
