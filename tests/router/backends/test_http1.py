"""Http1Pool against real servers on 127.0.0.1: aiohttp for ordinary behaviour, raw asyncio
servers for the edge cases aiohttp will not produce (stale keep-alive, odd framing, bad bytes)."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import json
import ssl
from pathlib import Path
from typing import Self

import pytest
from aiohttp import web

from router.backends.http1 import (
    DEFAULT_MAX_LINE_BYTES,
    LINGER_MAX_BYTES,
    STREAM_HIGH_WATER,
    BadResponse,
    Http1Pool,
    LineTooLong,
    NotResent,
    RequestTimeout,
    ResponseTooLarge,
    UpstreamClosed,
)
from tests.support.raw_server import RawServer, Script, read_request

# --- servers ---------------------------------------------------------------------------------


def ok(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def client_gone(reader: asyncio.StreamReader) -> bool:
    """True when the client closed its end (EOF or reset) instead of sending more."""
    try:
        return await reader.read(1) == b""
    except ConnectionError:
        return True


def answering(*answers: bytes) -> Script:
    """A script that answers each request on a connection with the next of ``answers``."""

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        for answer in answers:
            if await read_request(r) is None:
                return
            w.write(answer)
            await w.drain()
        await client_gone(r)

    return script


class EchoApp:
    """An aiohttp server answering every request with what it received."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def _echo(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path.endswith("/stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for piece in (b"data: one\n", b"\ndata: tw", b"o\n\n", b"data: [DONE]\n\n"):
                await resp.write(piece)
            await resp.write_eof()
            return resp
        if request.path.endswith("/big"):
            return web.Response(body=bytes(range(256)) * 12_000)
        return web.json_response(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "length": len(body),
                "sha": hashlib.sha256(body).hexdigest(),
            },
            headers={"X-Echo": "yes", "Retry-After": "7"},
        )

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._echo)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


# --- ordinary requests (aiohttp upstream) -------------------------------------------------------


async def test_post_get_and_request_shape() -> None:
    async with EchoApp() as app:
        pool = Http1Pool(app.url + "/api/", headers={"Authorization": "Bearer sk-1"})
        try:
            a = await pool.request("POST", "/v1/chat", b'{"x":1}', {"X-Extra": "e"})
            got = json.loads(a.body)
            assert a.status == 200 and got["method"] == "POST" and got["path"] == "/api/v1/chat"
            h = got["headers"]
            assert h["Host"] == app.url.removeprefix("http://")
            assert h["Authorization"] == "Bearer sk-1" and h["X-Extra"] == "e"
            assert h["Content-Type"] == "application/json" and h["Content-Length"] == "7"
            assert "Accept-Encoding" not in h
            # header lookups are case-insensitive (http_error reads "Retry-After")
            assert a.headers.get("x-echo") == "yes" and a.headers.get("Retry-After") == "7"
            assert "X-ECHO" in a.headers and a.headers["content-type"].startswith(
                "application/json"
            )
            g = await pool.request("GET", "/models", headers={"Content-Type": "text/plain"})
            got = json.loads(g.text())
            assert (
                got["method"] == "GET"
                and got["length"] == 0
                and "Content-Length" not in (got["headers"])
            )
            empty = await pool.request("POST", "/nobody")
            assert json.loads(empty.body)["headers"]["Content-Length"] == "0"
        finally:
            await pool.close()


async def test_large_request_and_response_bodies() -> None:
    async with EchoApp() as app:
        pool = Http1Pool(app.url)
        try:
            body = bytes(range(256)) * 40_000  # 10 MB: more than the socket buffers take at once
            a = await pool.request("PUT", "/upload", body)
            got = json.loads(a.body)
            assert got["length"] == len(body) and got["sha"] == hashlib.sha256(body).hexdigest()
            big = await pool.request("GET", "/big")
            assert big.body == bytes(range(256)) * 12_000
        finally:
            await pool.close()


async def test_sse_lines_across_chunks() -> None:
    async with EchoApp() as app:
        pool = Http1Pool(app.url)
        try:
            async with pool.stream("POST", "/v1/stream", b"{}") as ans:
                assert ans.status == 200 and ans.headers.get("content-type") == "text/event-stream"
                lines = [line async for line in ans.iter_lines()]
            assert lines == [b"data: one", b"", b"data: two", b"", b"data: [DONE]", b""]
            async with pool.stream("POST", "/v1/stream", b"{}") as ans:
                chunks = [c async for c in ans.iter_chunks()]
            assert b"".join(chunks) == b"data: one\n\ndata: two\n\ndata: [DONE]\n\n"
        finally:
            await pool.close()


async def test_each_event_loop_gets_its_own_connections() -> None:
    async with EchoApp() as app:
        pool = Http1Pool(app.url)

        async def elsewhere() -> int:
            try:
                return (await pool.request("GET", "/other")).status
            finally:
                await pool.close()

        try:
            assert (await pool.request("GET", "/here")).status == 200
            assert await asyncio.to_thread(asyncio.run, elsewhere()) == 200
            assert (await pool.request("GET", "/here-again")).status == 200
        finally:
            await pool.close()


async def test_lines_split_between_reads_are_joined() -> None:
    more = asyncio.Event()

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 27\r\n\r\ndata: one\r\n\r\ndata: tw")
        await more.wait()  # the half line is on the client's side before the rest is sent
        w.write(b"o\n\nend")
        await client_gone(r)

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url)
        try:
            lines: list[bytes] = []

            async def consume() -> None:
                async with pool.stream("GET", "/") as ans:
                    async for line in ans.iter_lines():
                        lines.append(line)
                        if len(lines) == 2:
                            more.set()

            await asyncio.wait_for(consume(), 5)
            assert lines == [b"data: one", b"", b"data: two", b"", b"end"]
        finally:
            await pool.close()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        Http1Pool("http://127.0.0.1:1", max_connections=0)
    with pytest.raises(ValueError):
        Http1Pool("ftp://127.0.0.1:1")
    with pytest.raises(ValueError):
        Http1Pool("http://127.0.0.1:1", headers={"X-A": "v\r\nX-Injected: 1"})
    with pytest.raises(ValueError):
        Http1Pool("http://127.0.0.1:1", headers={"Bad Name": "v"})
    with pytest.raises(ValueError):
        Http1Pool("http://127.0.0.1:1", linger_s=-1)


async def test_smuggling_attempts_are_refused_before_sending() -> None:
    async with RawServer(answering(ok())) as srv:
        pool = Http1Pool(srv.url)
        try:
            for method, path, headers in [
                ("GET", "/a\r\nX-Injected: 1", None),
                ("GET", "/a b", None),
                ("GET", "no-slash", None),
                ("GE T", "/a", None),
                ("GET", "/a", {"X-A": "v\nX-Injected: 1"}),
                ("GET", "/a", {"X-A\r\nX-B": "v"}),
            ]:
                with pytest.raises(ValueError):
                    await pool.request(method, path, headers=headers)
            assert srv.accepted == 0
            assert (await pool.request("GET", "/a")).body == b"ok"
        finally:
            await pool.close()


# --- connection reuse and its edge cases (raw upstreams) ---------------------------------------


async def test_keep_alive_reuses_one_connection() -> None:
    async with RawServer(answering(ok(b"1"), ok(b"2"), ok(b"3"))) as srv:
        pool = Http1Pool(srv.url)
        try:
            bodies = [(await pool.request("GET", "/")).body for _ in range(3)]
            assert bodies == [b"1", b"2", b"3"] and srv.accepted == 1
        finally:
            await pool.close()


async def test_stale_keep_alive_connection_is_retried_once_on_a_new_one() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await srv.read(r, i)
        if i == 0:
            w.write(ok(b"first"))
            await w.drain()
            await srv.read(r, i)  # the second request arrives, then the server hangs up
            return
        w.write(ok(b"second"))
        await w.drain()
        await client_gone(r)

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url)
        try:
            assert (await pool.request("GET", "/1")).body == b"first"
            second = await asyncio.wait_for(pool.request("GET", "/2"), 5)
            assert second.body == b"second"
            assert srv.accepted == 2 and [i for i, _ in srv.heads] == [0, 0, 1]
        finally:
            await pool.close()


async def test_fresh_connection_closed_unanswered_is_not_retried() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await read_request(r)  # and hang up without a word

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url)
        try:
            with pytest.raises(UpstreamClosed) as err:
                await pool.request("POST", "/", b"{}")
            assert err.value.before_answer and isinstance(err.value, ConnectionError)
            assert srv.accepted == 1
        finally:
            await pool.close()


async def test_reused_connection_dropped_mid_answer_is_not_retried() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await read_request(r)
        w.write(ok(b"first"))
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal")
        await w.drain()

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url)
        try:
            assert (await pool.request("GET", "/")).body == b"first"
            with pytest.raises(UpstreamClosed) as err:
                await pool.request("GET", "/")
            assert not err.value.before_answer and srv.accepted == 1
        finally:
            await pool.close()


async def test_chunked_answer_is_dechunked_and_connection_reused() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"5\r\nhello\r\n", b"1\r\n \r\n", b"5\r\nworld\r\n", b"0\r\n\r\n"):
            w.write(piece)
            await w.drain()
        await read_request(r)
        w.write(ok(b"again"))
        await client_gone(r)

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url)
        try:
            assert (await pool.request("GET", "/")).body == b"hello world"
            assert (await pool.request("GET", "/")).body == b"again"
            assert srv.accepted == 1
        finally:
            await pool.close()


async def test_close_delimited_bodies_and_connection_close() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await srv.read(r, i)
        if i == 0:
            w.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello ")
            await w.drain()
            w.write(b"until close")
        elif i == 1:
            w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nno length")
        elif i == 2:
            w.write(ok(b"framed", b"Connection: close\r\n"))
            await srv.read(r, i)  # recorded only if the client wrongly reuses the connection
        else:
            w.write(ok(b"new"))
            await client_gone(r)

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url)
        try:
            assert (await pool.request("GET", "/")).body == b"hello until close"
            assert (await pool.request("GET", "/")).body == b"no length"
            assert (await pool.request("GET", "/")).body == b"framed"
            assert (await pool.request("GET", "/")).body == b"new"
            assert [i for i, _ in srv.heads] == [0, 1, 2, 3]  # one request per connection
        finally:
            await pool.close()


async def test_head_204_304_and_100_continue_keep_the_connection_usable() -> None:
    answers = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",  # HEAD: the length, no body
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after continue", b"X-Final: 1\r\n"),
        ok(b"last"),
    )
    async with RawServer(answering(*answers)) as srv:
        pool = Http1Pool(srv.url)
        try:
            head = await asyncio.wait_for(pool.request("HEAD", "/"), 5)
            assert (head.status, head.body, head.headers.get("content-length")) == (
                200,
                b"",
                "1234",
            )
            assert (await asyncio.wait_for(pool.request("GET", "/"), 5)).status == 204
            nm = await pool.request("GET", "/")
            assert (nm.status, nm.body) == (304, b"")
            cont = await pool.request("POST", "/", b"x")
            assert (cont.status, cont.body, cont.headers.get("x-final")) == (
                200,
                b"after continue",
                "1",
            )
            assert (await pool.request("GET", "/")).body == b"last"
            assert srv.accepted == 1
        finally:
            await pool.close()


async def test_extra_bytes_after_an_answer_retire_the_connection() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await read_request(r)
        w.write(ok(b"one") + b"HTTP/1.1 200 OK\r\n" if i == 0 else ok(b"two"))
        await client_gone(r)

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url)
        try:
            assert (await pool.request("GET", "/")).body == b"one"
            assert (await pool.request("GET", "/")).body == b"two"
            assert srv.accepted == 2
        finally:
            await pool.close()


async def test_malformed_status_line_is_a_bad_response() -> None:
    async with RawServer(answering(b"HTTX/1.1 200 OK\r\n\r\n")) as srv:
        pool = Http1Pool(srv.url)
        try:
            with pytest.raises(BadResponse, match="malformed HTTP response"):
                await pool.request("GET", "/")
        finally:
            await pool.close()


async def test_answers_over_the_size_cap_fail() -> None:
    big = b"x" * 2000
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" + big + b"\r\n0\r\n\r\n"
    )
    async with RawServer(answering(ok(big))) as srv1, RawServer(answering(chunked)) as srv2:
        for srv in (srv1, srv2):
            pool = Http1Pool(srv.url, max_response_bytes=1000)
            try:
                with pytest.raises(ResponseTooLarge):
                    await pool.request("GET", "/")
            finally:
                await pool.close()
        pool = Http1Pool(srv1.url, max_response_bytes=2000)
        try:
            assert (await pool.request("GET", "/")).body == big  # exactly at the cap is fine
        finally:
            await pool.close()


async def test_silent_upstream_times_out_and_connection_is_dropped() -> None:
    dropped = asyncio.Event()

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await read_request(r)
        if await client_gone(r):
            dropped.set()

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url, timeout_s=0.2)
        try:
            with pytest.raises(RequestTimeout) as err:
                # (the outer limit only ends a pool that never times out: its plain TimeoutError
                # is not a RequestTimeout, so the test fails)
                await asyncio.wait_for(pool.request("POST", "/", b"{}"), 10)
            assert isinstance(err.value, TimeoutError)
            await asyncio.wait_for(dropped.wait(), 5)
        finally:
            await pool.close()


async def test_stream_times_out_between_chunks_and_waiting_for_a_slot_times_out() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await client_gone(r)  # and nothing more

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url, timeout_s=0.2, max_connections=1)
        try:
            async with pool.stream("GET", "/") as ans:
                chunks = ans.iter_chunks()
                assert await asyncio.wait_for(anext(chunks), 5) == b"first"
                # the only connection is busy: a second request gives up waiting for it
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(pool.request("GET", "/"), 10)
                with pytest.raises(RequestTimeout):
                    await asyncio.wait_for(anext(chunks), 10)
            assert srv.accepted == 1
        finally:
            await pool.close()


async def test_one_connection_serves_concurrent_requests_in_turn() -> None:
    first_arrived = asyncio.Event()
    go_on = asyncio.Event()

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        n = 0
        while await srv.read(r, i) is not None:
            n += 1
            if n == 1:
                first_arrived.set()
                await go_on.wait()
            w.write(ok(b"answer %d" % n))

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url, max_connections=1)
        try:
            t1 = asyncio.create_task(pool.request("GET", "/a"))
            t2 = asyncio.create_task(pool.request("GET", "/b"))
            await asyncio.wait_for(first_arrived.wait(), 5)
            go_on.set()
            a, b = await asyncio.wait_for(asyncio.gather(t1, t2), 5)
            assert (a.body, b.body) == (b"answer 1", b"answer 2")
            assert srv.accepted == 1 and len(srv.heads) == 2
        finally:
            await pool.close()


async def test_abandoned_stream_closes_its_connection_when_lingering_is_off() -> None:
    gone = asyncio.Event()

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata: \r\n")
        if i == 0:
            if await client_gone(r):  # the client left after the first chunk
                gone.set()
            return
        w.write(b"2\r\nok\r\n0\r\n\r\n")
        await read_request(r)
        w.write(ok(b"reused"))
        await client_gone(r)

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url, linger_s=0)  # 0: a stream left early is closed at once
        try:
            async with pool.stream("POST", "/", b"{}") as ans:
                async for chunk in ans.iter_chunks():
                    assert chunk == b"data: "
                    break
            await asyncio.wait_for(gone.wait(), 5)
            async with pool.stream("POST", "/", b"{}") as ans:
                assert await ans.read() == b"data: ok"
            assert srv.accepted == 2
            # a fully read stream hands its connection back
            assert (await pool.request("GET", "/")).body == b"reused"
            assert srv.accepted == 2
        finally:
            await pool.close()


# --- a stream left before its end lingers (reads the rest in the background) ------------------

SSE_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
DONE_CHUNK = b"e\r\ndata: [DONE]\n\n\r\n"
TERMINATOR = b"0\r\n\r\n"


async def read_to_done(pool: Http1Pool) -> None:
    """Stream an answer and leave at ``data: [DONE]``, as an SSE reader does."""
    async with pool.stream("POST", "/v1/chat/completions", b"{}") as ans:
        async for line in ans.iter_lines():
            if line == b"data: [DONE]":
                break
        else:
            raise AssertionError("no [DONE] line")


def done_then(left: asyncio.Event | None, gone: asyncio.Event) -> Script:
    """Connection 0 answers up to ``[DONE]``; its terminator follows once ``left`` is set (never
    when None), then it answers one more request. ``gone`` is set when connection 0 sees EOF.
    Later connections answer ``ok(b"new")``."""

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        if i > 0:
            await read_request(r)
            w.write(ok(b"new"))
            await client_gone(r)
            return
        await read_request(r)
        w.write(SSE_HEAD + DONE_CHUNK)
        if left is not None:
            await left.wait()
            w.write(TERMINATOR)
            if await read_request(r) is not None:
                w.write(ok(b"reused"))
        if await client_gone(r):
            gone.set()

    return script


async def test_stream_left_before_its_terminator_gives_the_connection_back() -> None:
    left, gone = asyncio.Event(), asyncio.Event()
    async with RawServer(done_then(left, gone)) as srv:
        # one slot: the next request takes the connection once its linger ends, rather than
        # opening a second one while the terminator is still on its way
        pool = Http1Pool(srv.url, max_connections=1)
        try:
            await asyncio.wait_for(read_to_done(pool), 5)
            left.set()  # only now does the terminator go out
            answer = await asyncio.wait_for(pool.request("GET", "/"), 5)
            assert answer.body == b"reused" and srv.accepted == 1
        finally:
            await pool.close()
        await asyncio.wait_for(gone.wait(), 5)


async def test_lingering_connection_without_terminator_is_closed_after_the_bound() -> None:
    gone = asyncio.Event()
    async with RawServer(done_then(None, gone)) as srv:
        pool = Http1Pool(srv.url, linger_s=0.05)
        try:
            await asyncio.wait_for(read_to_done(pool), 5)
            await asyncio.wait_for(gone.wait(), 5)  # closed by the sweep, not by the server
            assert (await asyncio.wait_for(pool.request("GET", "/"), 5)).body == b"new"
            assert srv.accepted == 2
        finally:
            await pool.close()


@pytest.mark.parametrize("terminator_comes", [True, False])
async def test_request_waiting_for_the_only_slot_gets_it_when_the_linger_ends(
    terminator_comes: bool,
) -> None:
    left, gone = asyncio.Event(), asyncio.Event()
    async with RawServer(done_then(left if terminator_comes else None, gone)) as srv:
        pool = Http1Pool(srv.url, max_connections=1, linger_s=0.05)
        try:
            await asyncio.wait_for(read_to_done(pool), 5)
            request = asyncio.create_task(pool.request("GET", "/"))
            # callbacks run in order: the request starts waiting for the slot before the
            # terminator is released
            asyncio.get_running_loop().call_soon(left.set)
            answer = await asyncio.wait_for(request, 5)
            if terminator_comes:
                assert answer.body == b"reused" and srv.accepted == 1
            else:
                assert answer.body == b"new" and srv.accepted == 2
                await asyncio.wait_for(gone.wait(), 5)
        finally:
            await pool.close()


async def test_exception_inside_a_stream_closes_its_connection_at_once() -> None:
    gone = asyncio.Event()
    async with RawServer(done_then(None, gone)) as srv:
        pool = Http1Pool(srv.url, linger_s=60)  # a linger would outlast the wait below
        try:
            with pytest.raises(RuntimeError):
                async with pool.stream("POST", "/", b"{}") as ans:
                    async for _ in ans.iter_chunks():
                        raise RuntimeError("consumer failed")
            await asyncio.wait_for(gone.wait(), 5)
            assert (await asyncio.wait_for(pool.request("GET", "/"), 5)).body == b"new"
        finally:
            await pool.close()


@pytest.mark.parametrize(
    "head",
    [
        # more left than LINGER_MAX_BYTES
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (LINGER_MAX_BYTES * 2),
        # the end is the connection's end: nothing to wait for
        b"HTTP/1.0 200 OK\r\n\r\n",
        # framed, but the connection cannot be reused anyway
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    ],
)
async def test_stream_left_early_that_cannot_linger_is_closed_at_once(head: bytes) -> None:
    gone = asyncio.Event()
    chunked = b"chunked" in head

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await read_request(r)
        w.write(head + (b"5\r\nfirst\r\n" if chunked else b"first"))
        if await client_gone(r):
            gone.set()

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url, linger_s=60)
        try:
            async with pool.stream("GET", "/") as ans:
                assert await anext(ans.iter_chunks()) == b"first"
            await asyncio.wait_for(gone.wait(), 5)
        finally:
            await pool.close()


async def test_lingering_connection_closes_when_too_much_arrives() -> None:
    left, gone = asyncio.Event(), asyncio.Event()
    rest = b"x" * (LINGER_MAX_BYTES + 1)

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await read_request(r)
        w.write(SSE_HEAD + DONE_CHUNK)
        await left.wait()
        w.write(b"%x\r\n%s\r\n" % (len(rest), rest) + TERMINATOR)
        if await client_gone(r):
            gone.set()

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url, linger_s=60)
        try:
            await asyncio.wait_for(read_to_done(pool), 5)
            left.set()
            await asyncio.wait_for(gone.wait(), 5)
        finally:
            await pool.close()


async def test_closing_the_pool_ends_a_linger() -> None:
    gone = asyncio.Event()
    async with RawServer(done_then(None, gone)) as srv:
        pool = Http1Pool(srv.url, linger_s=60)
        try:
            await asyncio.wait_for(read_to_done(pool), 5)
        finally:
            await pool.close()
        await asyncio.wait_for(gone.wait(), 5)


async def test_large_stream_arrives_intact_through_backpressure() -> None:
    payload = bytes(range(256)) * (STREAM_HIGH_WATER // 64)  # 4x the high-water mark

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await read_request(r)
        w.write(ok(payload))
        await w.drain()
        await client_gone(r)

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url)
        try:
            async with pool.stream("GET", "/") as ans:
                got = [chunk async for chunk in ans.iter_chunks()]
            assert b"".join(got) == payload
        finally:
            await pool.close()


async def test_cancelled_request_closes_its_connection_and_pool_goes_on() -> None:
    arrived = asyncio.Event()
    dropped = asyncio.Event()

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await read_request(r)
        if i == 0:
            arrived.set()
            if await client_gone(r):
                dropped.set()
            return
        w.write(ok(b"fine"))
        await client_gone(r)

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url, max_connections=1)
        try:
            task = asyncio.create_task(pool.request("POST", "/", b"{}"))
            await asyncio.wait_for(arrived.wait(), 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(dropped.wait(), 5)
            # the only slot was given back
            assert (await asyncio.wait_for(pool.request("GET", "/"), 5)).body == b"fine"
            assert srv.accepted == 2
        finally:
            await pool.close()


async def test_connection_refused_is_a_connection_error() -> None:
    async with RawServer(answering()) as srv:
        url = srv.url
    pool = Http1Pool(url)
    try:
        with pytest.raises(ConnectionError):
            await pool.request("GET", "/")
    finally:
        await pool.close()


# --- TLS ---------------------------------------------------------------------------------------


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_https_with_a_verified_certificate(tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await read_request(r) is not None:
            w.write(ok(b"secure"))
        w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context(cafile=str(cert_file))
    pool = Http1Pool(f"https://127.0.0.1:{port}", ssl_context=trusting)
    default = Http1Pool(f"https://127.0.0.1:{port}")  # system CAs: must refuse the certificate
    try:
        assert (await pool.request("GET", "/")).body == b"secure"
        assert (await pool.request("GET", "/")).body == b"secure"
        with pytest.raises(ConnectionError, match="cannot connect"):
            await default.request("GET", "/")
    finally:
        await pool.close()
        await default.close()
        server.close()


# --- defects found by probing (#18): each test failed on the earlier client --------------------


async def test_configured_host_replaces_ours_and_content_type_the_default() -> None:
    async with EchoApp() as app:
        pool = Http1Pool(app.url, headers={"host": "api.example", "Content-Type": "text/x-a"})
        try:
            got = json.loads((await pool.request("POST", "/", b"{}")).body)
            assert got["headers"]["Host"] == "api.example"
            assert got["headers"]["Content-Type"] == "text/x-a"
        finally:
            await pool.close()


async def test_configured_headers_go_out_once() -> None:
    seen: list[bytes] = []

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        got = await read_request(r)
        assert got is not None
        seen.append(got[0].lower())
        w.write(ok())
        await client_gone(r)

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url, headers={"HOST": "api.example", "content-type": "text/x-a"})
        try:
            await pool.request("POST", "/", b"{}")
        finally:
            await pool.close()
    assert seen[0].count(b"\r\nhost:") == 1 and b"host: api.example" in seen[0]
    assert seen[0].count(b"\r\ncontent-type:") == 1 and b"content-type: text/x-a" in seen[0]


@pytest.mark.parametrize(
    "name",
    ["Content-Length", "transfer-encoding", "Connection", "Keep-Alive", "Upgrade", "TE", "Expect"],
)
def test_configured_framing_headers_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="sets it itself"):
        Http1Pool("http://127.0.0.1:1", headers={name: "5"})


async def test_per_request_framing_or_host_headers_are_refused_before_sending() -> None:
    async with RawServer(answering(ok())) as srv:
        pool = Http1Pool(srv.url)
        try:
            for name in ("Content-Length", "Host", "Transfer-Encoding"):
                with pytest.raises(ValueError):
                    await pool.request("POST", "/", b"{}", headers={name: "1"})
            assert srv.accepted == 0
        finally:
            await pool.close()


async def test_a_post_on_a_reused_connection_is_never_sent_twice() -> None:
    """The upstream took the POST on a kept-alive connection and hung up before answering: it
    may have run (and billed) it, so it fails instead of going out again."""

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await srv.read(r, i)
        w.write(ok(b"first"))
        await w.drain()
        await srv.read(r, i)  # the POST arrives; the server hangs up without a word

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url)
        try:
            assert (await pool.request("GET", "/1")).body == b"first"
            with pytest.raises(NotResent, match="not sent again") as err:
                await asyncio.wait_for(pool.request("POST", "/pay", b"{}"), 5)
            assert isinstance(err.value, UpstreamClosed) and err.value.before_answer
            posts = [h for _, h in srv.heads if h.startswith(b"POST")]
            assert len(posts) == 1 and srv.accepted == 1
        finally:
            await pool.close()


async def test_a_streamed_post_on_a_reused_connection_is_never_sent_twice() -> None:
    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await srv.read(r, i)
        w.write(ok(b"first"))
        await w.drain()
        await srv.read(r, i)

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url)
        try:
            assert (await pool.request("GET", "/1")).body == b"first"
            with pytest.raises(NotResent):
                async with pool.stream("POST", "/v1/chat/completions", b"{}"):
                    pass
            assert [h[:4] for _, h in srv.heads] == [b"GET ", b"POST"]
        finally:
            await pool.close()


async def test_streamed_lines_have_a_size_cap() -> None:
    line = b"data: " + b"x" * 5000

    async def script(r: asyncio.StreamReader, w: asyncio.StreamWriter, i: int) -> None:
        await read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for k in range(0, len(line), 1000):  # no newline ever comes
            piece = line[k : k + 1000]
            w.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await w.drain()
        await client_gone(r)

    async with RawServer(script) as srv:
        pool = Http1Pool(srv.url, max_line_bytes=4096)
        try:
            with pytest.raises(LineTooLong, match="4096"):
                async with pool.stream("GET", "/") as ans:
                    async for _ in ans.iter_lines():
                        pass
        finally:
            await pool.close()


async def test_default_line_cap_refuses_a_line_without_end() -> None:
    big = b"y" * (DEFAULT_MAX_LINE_BYTES + 10)
    async with RawServer(answering(ok(big))) as srv:
        pool = Http1Pool(srv.url)
        try:
            with pytest.raises(LineTooLong):
                async with pool.stream("GET", "/") as ans:
                    async for _ in ans.iter_lines():
                        pass
        finally:
            await pool.close()


async def test_reading_a_stream_whole_has_the_response_cap() -> None:
    async with RawServer(answering(ok(b"z" * 3000))) as srv:
        pool = Http1Pool(srv.url, max_response_bytes=1000)
        try:
            with pytest.raises(ResponseTooLarge):
                async with pool.stream("GET", "/") as ans:
                    await ans.read()
        finally:
            await pool.close()
