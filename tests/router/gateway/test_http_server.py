"""The gateway's HTTP/1.1 server over raw sockets on 127.0.0.1: keep-alive, pipelining, limits,
malformed input, streaming, HTTP/1.0, timeouts and a graceful close."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from router.gateway.http_server import HttpRequest, HttpResponse, HttpServer

T = 10  # bound on every wait; none is expected to come near it


class App:
    """Echoes method, path, query and body; ``/stream`` streams three pieces; ``/boom`` raises;
    ``/hold`` waits for ``gate``."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.held = asyncio.Event()
        self.stream_error: asyncio.Future[BaseException] = asyncio.Future()

    async def __call__(self, req: HttpRequest) -> HttpResponse | None:
        if req.path == "/boom":
            raise RuntimeError("a bug")
        if req.path == "/hold":
            self.held.set()
            await self.gate.wait()
        if req.path == "/stream":
            out = await req.stream(200, {"Content-Type": "text/plain"})
            for piece in (b"one ", b"two ", b"three"):
                await out.write(piece)
            await out.write_eof()
            return None
        if req.path == "/stream-forever":
            out = await req.stream(200, {"Content-Type": "text/plain"})
            try:
                while True:
                    await out.write(b"x" * 65536)
            except ConnectionResetError as exc:
                self.stream_error.set_result(exc)
            return None
        body = json.dumps(
            {
                "method": req.method,
                "path": req.path,
                "query": req.query,
                "body": req.body.decode(),
                "auth": req.headers.get("authorization"),
            }
        ).encode()
        return HttpResponse(body, 200, {"Content-Type": "application/json", "X-Path": req.path})


@asynccontextmanager
async def serve(app: App, **limits: float) -> AsyncIterator[tuple[HttpServer, int]]:
    server = HttpServer(app, **limits)  # type: ignore[arg-type]
    _, port = await server.start("127.0.0.1", 0)
    try:
        yield server, port
    finally:
        await server.close()
        server.abort_all()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One answer: status, headers (lower-case names), body (Content-Length or chunked)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), T)
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await asyncio.wait_for(reader.readline(), T)).strip(), 16)
            data = await asyncio.wait_for(reader.readexactly(size + 2), T)
            if size == 0:
                break
            body += data[:-2]
    else:
        body = await asyncio.wait_for(reader.read(), T)
    return status, headers, body


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


async def closed(reader: asyncio.StreamReader) -> bool:
    """True once the server closed the connection (EOF)."""
    return await asyncio.wait_for(reader.read(), T) == b""


async def test_keep_alive_and_pipelining_answer_in_order() -> None:
    async with serve(App()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/a?x=1", b"first", "Authorization: Bearer k\r\n"))
        status, headers, body = await read_answer(reader)
        got = json.loads(body)
        assert status == 200 and headers["x-path"] == "/a" and "date" in headers
        assert got == {
            "method": "POST",
            "path": "/a",
            "query": {"x": "1"},
            "body": "first",
            "auth": "Bearer k",
        }
        # three pipelined requests in one write: three answers, in order, same connection
        writer.write(post("/b", b"2") + post("/c", b"3") + post("/d", b"4"))
        answers = [await read_answer(reader) for _ in range(3)]
        assert [json.loads(b)["body"] for _, _, b in answers] == ["2", "3", "4"]
        writer.close()


async def test_pipelined_requests_wait_for_the_one_being_answered() -> None:
    app = App()
    async with serve(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/hold", b"1") + post("/after", b"2"))
        await asyncio.wait_for(app.held.wait(), T)
        app.gate.set()
        first = await read_answer(reader)
        second = await read_answer(reader)
        assert json.loads(first[2])["path"] == "/hold"
        assert json.loads(second[2])["body"] == "2"
        writer.close()


async def test_chunked_request_body_is_read_whole() -> None:
    async with serve(App()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
        )
        _, _, body = await read_answer(reader)
        assert json.loads(body)["body"] == "abcdefg"
        writer.close()


async def test_body_over_the_limit_is_413_by_length_and_while_reading() -> None:
    async with serve(App(), max_body_bytes=1024) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        status, headers, body = await read_answer(reader)
        assert status == 413 and headers["connection"] == "close"
        assert json.loads(body)["error"]["code"] == "request_too_large"
        writer.write(b"y" * 5000)  # the client may still send what it announced
        assert await closed(reader)

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            writer.write(b"200\r\n" + b"z" * 512 + b"\r\n")
        status, _, body = await read_answer(reader)
        assert status == 413 and "limit of 1024" in json.loads(body)["error"]["message"]
        writer.write(b"0\r\n\r\n")
        assert await closed(reader)


async def test_head_over_the_limit_is_431_and_malformed_is_400() -> None:
    async with serve(App(), max_head_bytes=2048) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /x HTTP/1.1\r\nX-Big: " + b"a" * 4096)
        status, _, body = await read_answer(reader)
        assert status == 431 and json.loads(body)["error"]["code"] == "headers_too_large"
        assert await closed(reader)

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01 this is TLS, not HTTP\r\n\r\n")
        status, _, body = await read_answer(reader)
        assert status == 400 and json.loads(body)["error"]["code"] == "bad_http"
        assert await closed(reader)

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /h2 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        status, headers, body = await read_answer(reader)  # answered as plain HTTP, then closed
        assert status == 200 and json.loads(body)["path"] == "/h2"
        assert headers["connection"] == "close"
        assert await closed(reader)

        for refused in (  # protocols we never speak: refused before the app sees them
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n",
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(refused)
            status, headers, body = await read_answer(reader)
            assert status == 501 and json.loads(body)["error"]["code"] == "not_implemented"
            assert headers["connection"] == "close"
            assert await closed(reader)

        # none of that hurt the server
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/ok", b"fine"))
        status, _, body = await read_answer(reader)
        assert status == 200 and json.loads(body)["body"] == "fine"
        writer.close()


async def test_a_failing_app_is_500_and_the_connection_goes_on() -> None:
    async with serve(App()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/boom", b""))
        status, _, body = await read_answer(reader)
        assert status == 500 and json.loads(body)["error"]["type"] == "server_error"
        writer.write(post("/after", b"x"))
        status, _, _ = await read_answer(reader)
        assert status == 200
        writer.close()


async def test_streams_are_chunked_on_1_1_and_close_delimited_on_1_0() -> None:
    async with serve(App()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = await read_answer(reader)
        assert headers["transfer-encoding"] == "chunked" and body == b"one two three"
        writer.write(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")  # still alive
        assert (await read_answer(reader))[0] == 200
        writer.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream HTTP/1.0\r\n\r\n")
        status, headers, body = await read_answer(reader)
        assert "transfer-encoding" not in headers and body == b"one two three"

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /plain HTTP/1.0\r\n\r\n")
        status, headers, _ = await read_answer(reader)
        assert status == 200 and headers["connection"] == "close"
        assert await closed(reader)


async def test_expect_100_continue_and_head() -> None:
    async with serve(App()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(b"ok")
        assert json.loads((await read_answer(reader))[2])["body"] == "ok"
        writer.write(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
        assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: " in head
        writer.write(post("/next", b"n"))  # no body was sent for HEAD: the next answer parses
        assert json.loads((await read_answer(reader))[2])["body"] == "n"
        writer.close()


async def test_idle_and_slow_connections_are_closed() -> None:
    async with serve(App(), keepalive_s=0.2) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/x", b"1"))
        await read_answer(reader)
        assert await closed(reader)  # idle after its answer

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n")  # the head never ends
        assert await closed(reader)


async def test_client_leaving_a_stream_is_seen_by_the_app() -> None:
    app = App()
    async with serve(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream-forever HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
        writer.transport.abort()
        exc = await asyncio.wait_for(app.stream_error, T)
        assert isinstance(exc, ConnectionResetError)


async def test_close_lets_the_answer_being_written_finish() -> None:
    app = App()
    async with serve(app) as (server, port):
        idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
        idle_w.write(post("/x", b"1"))
        await read_answer(idle_r)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/hold", b"h"))
        await asyncio.wait_for(app.held.wait(), T)
        await server.close()
        assert await closed(idle_r)  # idle: closed at once
        assert server.busy() == 1
        app.gate.set()
        status, headers, _ = await read_answer(reader)
        assert status == 200 and headers["connection"] == "close"
        assert await closed(reader)
        try:
            await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            pass
        else:
            raise AssertionError("the server still accepts connections")


async def test_a_client_that_half_closes_gets_its_answer_then_the_close() -> None:
    app = App()
    async with serve(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/hold", b"h"))
        await asyncio.wait_for(app.held.wait(), T)
        writer.write_eof()  # nothing more will come from this client
        app.gate.set()
        status, _, body = await read_answer(reader)
        assert status == 200 and json.loads(body)["path"] == "/hold"
        assert await closed(reader)  # not left open until the keep-alive timeout


async def test_a_bad_request_behind_one_in_progress_waits_for_its_answer() -> None:
    app = App()
    async with serve(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/hold", b"h") + b"NOT HTTP AT ALL\r\n\r\n")
        await asyncio.wait_for(app.held.wait(), T)
        app.gate.set()
        first = await read_answer(reader)
        second = await read_answer(reader)
        assert first[0] == 200 and json.loads(first[2])["path"] == "/hold"
        assert second[0] == 400 and second[1]["connection"] == "close"
        assert await closed(reader)


# --- defects found by probing (#18): each test failed on the earlier server --------------------


class Misbehaving:
    """An app that does what the server must not pass on: framing or hop-by-hop headers, CR/LF
    in header names and values, a failure after its stream started, a stream held open."""

    def __init__(self) -> None:
        self.refused: asyncio.Future[BaseException] = asyncio.Future()
        self.streaming = asyncio.Event()
        self.finish = asyncio.Event()

    async def __call__(self, req: HttpRequest) -> HttpResponse | None:
        kind = req.path.strip("/")
        if kind == "length":
            return HttpResponse(b"abc", 200, {"Content-Length": "999"})
        if kind == "te":
            return HttpResponse(b"abc", 200, {"Transfer-Encoding": "chunked"})
        if kind == "crlf-value":
            return HttpResponse(b"abc", 200, {"X-A": "v\r\nX-Injected: 1"})
        if kind == "crlf-name":
            return HttpResponse(b"abc", 200, {"X-A\r\nX-Injected": "1"})
        if kind == "close":
            return HttpResponse(b"bye", 200, {"Connection": "close"})
        if kind == "stream-framing":
            try:
                await req.stream(200, {"Content-Length": "5"})
            except ValueError as exc:
                self.refused.set_result(exc)
                raise
            return None
        if kind == "stream-fails":
            out = await req.stream(200, {"Content-Type": "text/plain"})
            await out.write(b"partial answer")
            raise RuntimeError("the upstream died mid-answer")
        if kind == "stream-held":
            out = await req.stream(200, {"Content-Type": "text/plain"})
            await out.write(b"first")
            self.streaming.set()
            await self.finish.wait()
            await out.write(b" last")
            await out.write_eof()
            return None
        return HttpResponse(
            json.dumps({"path": req.path, "body": req.body.decode()}).encode(),
            200,
            {"Content-Type": "application/json"},
        )


async def raw_head(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)


async def test_app_framing_headers_are_never_sent() -> None:
    """An app's Content-Length or Transfer-Encoding would give the answer two framings: the
    answer becomes a 500 (logged as the app's bug) and the connection stays usable."""
    async with serve(Misbehaving()) as (_, port):  # type: ignore[arg-type]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for path in ("/length", "/te"):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head = await raw_head(reader)
            assert head.lower().count(b"content-length") == 1, head
            assert b"transfer-encoding" not in head.lower() and b"999" not in head
            assert head.startswith(b"HTTP/1.1 500")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            assert json.loads(await reader.readexactly(length))["error"]["type"] == "server_error"
        writer.write(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_answer(reader))[0] == 200
        writer.close()


async def test_crlf_in_app_header_names_and_values_is_never_sent() -> None:
    async with serve(Misbehaving()) as (_, port):  # type: ignore[arg-type]
        for path in ("/crlf-value", "/crlf-name"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, headers, _ = await read_answer(reader)
            assert status == 500 and "x-injected" not in headers and "x-a" not in headers
            writer.close()


async def test_a_stream_with_framing_headers_is_refused_to_the_app() -> None:
    app = Misbehaving()
    async with serve(app) as (_, port):  # type: ignore[arg-type]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream-framing HTTP/1.1\r\nHost: x\r\n\r\n")
        assert isinstance(await asyncio.wait_for(app.refused, T), ValueError)
        status, headers, _ = await read_answer(reader)
        assert status == 500 and headers.get("content-length") != "5"
        writer.close()


async def test_a_failure_after_the_stream_started_truncates_the_body() -> None:
    """The client must be able to tell a cut answer from a complete one: no terminating
    zero-length chunk, the connection is cut."""
    async with serve(Misbehaving()) as (_, port):  # type: ignore[arg-type]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream-fails HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await raw_head(reader)
        assert b"Transfer-Encoding: chunked" in head
        try:
            rest = await asyncio.wait_for(reader.read(), T)
        except ConnectionResetError:
            rest = b""
        assert not rest.endswith(b"0\r\n\r\n"), rest

        # HTTP/1.0: the body ends with the connection, so only a reset can say "cut"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream-fails HTTP/1.0\r\n\r\n")
        await raw_head(reader)
        got = b""
        reset = False
        try:
            while chunk := await asyncio.wait_for(reader.read(65536), T):
                got += chunk
        except ConnectionResetError:
            reset = True
        assert reset, got


async def test_connection_close_from_the_app_closes_the_socket() -> None:
    async with serve(Misbehaving()) as (_, port):  # type: ignore[arg-type]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = await read_answer(reader)
        assert status == 200 and body == b"bye" and headers["connection"] == "close"
        assert await closed(reader)


async def test_a_client_connection_close_on_a_stream_is_announced_and_kept() -> None:
    async with serve(App()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, headers, body = await read_answer(reader)
        assert status == 200 and body == b"one two three" and headers["connection"] == "close"
        assert await closed(reader)


async def test_pipelined_expect_100_continue_waits_for_the_streamed_answer() -> None:
    """A 100 Continue for a request pipelined behind a streamed answer goes out after that
    answer, never inside its chunked body."""
    app = Misbehaving()
    async with serve(app) as (_, port):  # type: ignore[arg-type]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /stream-held HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /next HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        await asyncio.wait_for(app.streaming.wait(), T)
        await raw_head(reader)
        first = await asyncio.wait_for(reader.readuntil(b"first\r\n"), T)
        assert b"100 Continue" not in first
        app.finish.set()
        rest = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), T)
        assert b"100 Continue" not in rest and rest.endswith(b" last\r\n0\r\n\r\n")
        interim = await raw_head(reader)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"body")
        status, _, body = await read_answer(reader)
        assert status == 200 and json.loads(body) == {"path": "/next", "body": "body"}
        writer.close()


async def test_the_head_limit_counts_each_request_on_its_own() -> None:
    """Many small pipelined requests in one packet are each far below the head limit."""
    async with serve(App(), max_head_bytes=2048) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        one = b"GET /p HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 100 + b"\r\n\r\n"
        writer.write(one * 40)  # about 5 KB, each head about 140 bytes
        for _ in range(40):
            status, _, body = await read_answer(reader)
            assert status == 200 and json.loads(body)["path"] == "/p"
        # a head over the limit is still refused, behind a small request in the same packet
        big = b"GET /big HTTP/1.1\r\nX-Big: " + b"b" * 4096 + b"\r\n\r\n"
        writer.write(post("/small", b"s") + big)
        assert (await read_answer(reader))[0] == 200
        status, _, body = await read_answer(reader)
        assert status == 431 and json.loads(body)["error"]["code"] == "headers_too_large"
        assert await closed(reader)


async def test_a_head_trickling_in_over_the_limit_is_refused() -> None:
    async with serve(App(), max_head_bytes=2048) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/first", b"1") + b"GET /big HTTP/1.1\r\nX-Big: ")
        assert (await read_answer(reader))[0] == 200
        for _ in range(5):
            writer.write(b"b" * 1000)
        status, _, _ = await read_answer(reader)
        assert status == 431
        assert await closed(reader)


async def test_an_app_that_answers_nothing_gets_a_500() -> None:
    async def silent(req: HttpRequest) -> HttpResponse | None:
        return None

    async with serve(silent) as (_, port):  # type: ignore[arg-type]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_answer(reader))[0] == 500
        writer.close()
