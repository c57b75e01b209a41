"""Fake LLM upstreams for tests: real aiohttp servers on 127.0.0.1 that speak the OpenAI-compatible
API and Ollama's native API.

Both are async context managers yielding themselves; ``base_url`` is the root to give a backend.

    async with FakeOpenAI(models=["m1"], reply="hello") as up:
        backend = OpenAICompatBackend(up.base_url)
        ...
        assert up.completion_calls == 1

What can be configured (constructor keywords, or attributes changed later):
- ``models``: model ids listed by the server; ``strict_models`` makes unknown models a 404.
- ``reply``: the text to answer, or ``reply(prompt_text, model) -> str``.
  Default: ``"Echo: <prompt>"``.
- ``latency_ms``: delay before each completion answer (simulated upstream work).
- auth: ``bearer_token``, ``basic_auth=(user, password)``, ``api_header=(name, value)``; when one
  is set, requests without it get a 401 (Ollama: same, though real Ollama has no auth).
- ``fail_next(n, status=500, retry_after=None, message=...)``: the next n completion requests fail.
- ``stream_fail_after``: a streamed answer breaks after that many content chunks;
  ``stream_fail_mode`` is ``"disconnect"`` (connection dropped) or ``"error"`` (an error event).
- ``hold()``: completion requests wait (after being recorded) until ``release()``; with
  ``await up.wait_for_requests(n)`` a test sees requests arrive without sleeping.

OpenAI-compatible only:
- ``serve_chat`` / ``serve_completions`` / ``serve_embeddings``: which of /v1/chat/completions,
  /v1/completions and /v1/embeddings exist (a missing one is a 404, as on servers without it).
- ``tool_calls``: when set and the request has ``tools``, the answer calls them (``content:
  null``, finish reason ``tool_calls``); streamed as OpenAI does (the name, then the arguments
  in pieces).
- a request with ``logprobs: true`` gets one logprob entry per word, streamed or not.
- ``reject_params``: requests carrying any of these fields get OpenAI's 400 for them.
- embeddings: one vector ``[characters, index, 0.5]`` per input (base64 float32 when
  ``encoding_format`` is ``base64``).

What is recorded: ``requests`` (every request: method, path, headers, JSON body), and the counters
``completion_calls`` and ``stream_calls``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

Reply = str | Callable[[str, str], str]
_BODY = web.RequestKey("body", object)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: Any


@dataclass
class _Failure:
    status: int
    message: str
    retry_after: float | None


def _words(text: str) -> list[str]:
    """Split text into chunks that concatenate back to it exactly (word plus its leading space)."""
    out: list[str] = []
    for i, w in enumerate(text.split(" ")):
        out.append(w if i == 0 else " " + w)
    return [c for c in out if c]


def _count_tokens(text: str) -> int:
    return len(text.split())


def _logprob(token: str) -> dict[str, Any]:
    return {"token": token, "logprob": -0.25, "bytes": list(token.encode()), "top_logprobs": []}


@dataclass
class _Base:
    models: list[str] = field(default_factory=lambda: ["fake-model"])
    reply: Reply | None = None
    latency_ms: float = 0.0
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    api_header: tuple[str, str] | None = None
    strict_models: bool = False
    stream_fail_after: int | None = None
    stream_fail_mode: str = "disconnect"

    def __post_init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.completion_calls = 0
        self.stream_calls = 0
        self.base_url = ""
        self._failures: list[_Failure] = []
        self._gate: asyncio.Event | None = None
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    # --- control -------------------------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        retry_after: float | None = None,
        message: str = "upstream failure",
    ) -> None:
        self._failures.extend(_Failure(status, message, retry_after) for _ in range(n))

    def hold(self) -> None:
        self._gate = asyncio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    async def wait_for_requests(self, n: int) -> None:
        """Wait until n completion requests have arrived (bound it with asyncio.wait_for)."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: self.completion_calls + self.stream_calls >= n)

    def answer(self, prompt: str, model: str) -> str:
        if self.reply is None:
            return f"Echo: {prompt}"
        if isinstance(self.reply, str):
            return self.reply
        return self.reply(prompt, model)

    # --- server --------------------------------------------------------------------------------

    def _routes(self, app: web.Application) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        app = web.Application(middlewares=[self._record_and_auth])
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[union-attr]
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _authorized(self, request: web.Request) -> bool:
        h = request.headers
        if (
            self.bearer_token is not None
            and h.get("Authorization") != f"Bearer {self.bearer_token}"
        ):
            return False
        if self.basic_auth is not None:
            cred = base64.b64encode(f"{self.basic_auth[0]}:{self.basic_auth[1]}".encode()).decode()
            if h.get("Authorization") != f"Basic {cred}":
                return False
        return not (self.api_header is not None and h.get(self.api_header[0]) != self.api_header[1])

    @web.middleware
    async def _record_and_auth(
        self, request: web.Request, handler: Callable[..., Any]
    ) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
        request[_BODY] = body
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.headers), body)
        )
        if not self._authorized(request):
            return self._error(401, "invalid credentials")
        return await handler(request)

    async def _arrive(self, streaming: bool) -> _Failure | None:
        """Count a completion request, then apply hold, latency and injected failures."""
        async with self._arrived:
            if streaming:
                self.stream_calls += 1
            else:
                self.completion_calls += 1
            self._arrived.notify_all()
        if self._gate is not None:
            await self._gate.wait()
        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms / 1000)
        return self._failures.pop(0) if self._failures else None

    # Both APIs take chat messages on one route and a bare prompt on another.
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = request[_BODY]
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self._error(400, "messages is required")
        prompt = "\n".join(
            str(m.get("content", "")) for m in body["messages"] if isinstance(m, dict)
        )
        return await self._complete(request, body, prompt, chat=True)

    async def _prompt(self, request: web.Request) -> web.StreamResponse:
        body = request[_BODY]
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            return self._error(400, "prompt is required")
        return await self._complete(request, body, body["prompt"], chat=False)

    async def _complete(
        self, request: web.Request, body: dict[str, Any], prompt: str, chat: bool
    ) -> web.StreamResponse:  # pragma: no cover - overridden
        raise NotImplementedError

    def _error(self, status: int, message: str, retry_after: float | None = None) -> web.Response:
        raise NotImplementedError


@dataclass
class FakeOpenAI(_Base):
    """OpenAI-compatible: GET /v1/models, POST /v1/chat/completions, POST /v1/completions."""

    include_usage_in_stream: bool = True
    serve_chat: bool = True
    serve_completions: bool = True
    serve_embeddings: bool = True
    tool_calls: list[dict[str, Any]] | None = None
    reject_params: frozenset[str] = frozenset()

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/models", self._models)
        if self.serve_chat:
            app.router.add_post("/v1/chat/completions", self._chat)
        if self.serve_completions:
            app.router.add_post("/v1/completions", self._prompt)
        if self.serve_embeddings:
            app.router.add_post("/v1/embeddings", self._embeddings)

    def _rejected(self, body: dict[str, Any]) -> web.Response | None:
        for name in self.reject_params:
            if name in body:
                return self._error(400, f"Unrecognized request argument supplied: {name}")
        return None

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = request[_BODY]
        if not isinstance(body, dict) or "input" not in body:
            return self._error(400, "input is required")
        rejected = self._rejected(body)
        if rejected is not None:
            return rejected
        model = str(body.get("model", ""))
        if self.strict_models and model not in self.models:
            return self._error(404, f"model '{model}' not found")
        failure = await self._arrive(False)
        if failure is not None:
            return self._error(failure.status, failure.message, failure.retry_after)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if inputs and all(isinstance(t, int) for t in inputs):
            inputs = [inputs]  # one token array
        data = []
        tokens = 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += _count_tokens(text)
            vector: Any = [float(len(text)), float(i), 0.5]
            if body.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack("<3f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    def _error(self, status: int, message: str, retry_after: float | None = None) -> web.Response:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        kind = "invalid_request_error" if status < 500 else "server_error"
        body = {"error": {"message": message, "type": kind, "code": status}}
        return web.json_response(body, status=status, headers=headers)

    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _complete(
        self, request: web.Request, body: dict[str, Any], prompt: str, chat: bool
    ) -> web.StreamResponse:
        model = str(body.get("model", ""))
        if self.strict_models and model not in self.models:
            return self._error(404, f"model '{model}' not found")
        rejected = self._rejected(body)
        if rejected is not None:
            return rejected
        stream = bool(body.get("stream"))
        failure = await self._arrive(stream)
        if failure is not None:
            return self._error(failure.status, failure.message, failure.retry_after)
        if chat and self.tool_calls is not None and body.get("tools"):
            return await self._call_tools(request, body, prompt, model, stream)
        text = self.answer(prompt, model)
        want_logprobs = body.get("logprobs") not in (None, False, 0)
        max_tokens = body.get("max_tokens")
        finish = "stop"
        if isinstance(max_tokens, int) and max_tokens < _count_tokens(text):
            text = " ".join(text.split()[:max_tokens])
            finish = "length"
        usage = {
            "prompt_tokens": _count_tokens(prompt),
            "completion_tokens": _count_tokens(text),
            "total_tokens": _count_tokens(prompt) + _count_tokens(text),
        }
        ident = f"cmpl-{self.completion_calls + self.stream_calls}"
        if not stream:
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            if want_logprobs:
                choice["logprobs"] = {"content": [_logprob(w) for w in _words(text)]}
            obj = "chat.completion" if chat else "text_completion"
            return web.json_response(
                {
                    "id": ident,
                    "object": obj,
                    "created": int(time.time()),
                    "model": model,
                    "choices": [choice],
                    "usage": usage,
                }
            )
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(delta: str | None, finish_reason: str | None) -> dict[str, Any]:
            c: dict[str, Any] = {"index": 0, "finish_reason": finish_reason}
            if chat:
                c["delta"] = {"content": delta} if delta is not None else {}
            else:
                c["text"] = delta or ""
            if want_logprobs and delta is not None:
                c["logprobs"] = {"content": [_logprob(delta)]}
            return {"id": ident, "object": obj, "model": model, "choices": [c]}

        async def send(payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            await resp.write(f"data: {data}\n\n".encode())

        if chat:
            await send(
                {
                    "id": ident,
                    "object": obj,
                    "model": model,
                    "choices": [
                        {"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}
                    ],
                }
            )
        for i, piece in enumerate(_words(text)):
            if self.stream_fail_after is not None and i >= self.stream_fail_after:
                return await self._break_stream(request, resp, send)
            await send(chunk(piece, None))
        await send(chunk(None, finish))
        opts = body.get("stream_options")
        if self.include_usage_in_stream and isinstance(opts, dict) and opts.get("include_usage"):
            await send({"id": ident, "object": obj, "model": model, "choices": [], "usage": usage})
        await send("[DONE]")
        await resp.write_eof()
        return resp

    async def _call_tools(
        self, request: web.Request, body: dict[str, Any], prompt: str, model: str, stream: bool
    ) -> web.StreamResponse:
        """Answer with ``self.tool_calls`` (each ``{"id", "type", "function": {"name",
        "arguments"}}``), as OpenAI does."""
        calls = self.tool_calls or []
        usage = {"prompt_tokens": _count_tokens(prompt), "completion_tokens": len(calls)}
        usage["total_tokens"] = usage["prompt_tokens"] + len(calls)
        ident = f"cmpl-{self.completion_calls + self.stream_calls}"
        if not stream:
            message = {"role": "assistant", "content": None, "tool_calls": calls}
            choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
            return web.json_response(
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [choice],
                    "usage": usage,
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(delta: dict[str, Any], finish: str | None = None, **more: Any) -> None:
            choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta else []
            payload = {
                "id": ident,
                "object": "chat.completion.chunk",
                "model": model,
                "choices": choices,
                **more,
            }
            await resp.write(f"data: {json.dumps(payload)}\n\n".encode())

        await send({"role": "assistant", "content": None})
        for i, call in enumerate(calls):
            fn = call.get("function", {})
            head = {"index": i, "id": call.get("id"), "type": "function"}
            await send(
                {"tool_calls": [{**head, "function": {"name": fn.get("name"), "arguments": ""}}]}
            )
            args = str(fn.get("arguments", ""))
            for j in range(0, len(args), 4):
                piece = {"index": i, "function": {"arguments": args[j : j + 4]}}
                await send({"tool_calls": [piece]})
        await resp.write(
            (
                "data: "
                + json.dumps(
                    {
                        "id": ident,
                        "object": "chat.completion.chunk",
                        "model": model,
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
                    }
                )
                + "\n\n"
            ).encode()
        )
        opts = body.get("stream_options")
        if isinstance(opts, dict) and opts.get("include_usage"):
            await send({}, None, usage=usage)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _break_stream(
        self, request: web.Request, resp: web.StreamResponse, send: Callable[[dict[str, Any]], Any]
    ) -> web.StreamResponse:
        if self.stream_fail_mode == "error":
            await send(
                {
                    "error": {
                        "message": "stream failed upstream",
                        "type": "server_error",
                        "code": 500,
                    }
                }
            )
            await resp.write_eof()
        elif request.transport is not None:
            request.transport.close()
        return resp


@dataclass
class FakeOllama(_Base):
    """An Ollama server: GET /, GET /api/tags, GET /api/version, POST /api/chat, POST /api/generate.

    Like real Ollama, answers stream as NDJSON unless the request says ``"stream": false``.
    ``tool_calls`` (Ollama's shape: ``[{"function": {"name", "arguments": {...}}}]``): when set
    and a chat request has ``tools``, the answer calls them (streamed: one line with them all,
    as Ollama sends them, then the final line).
    """

    models: list[str] = field(default_factory=lambda: ["llama3:latest"])
    tool_calls: list[dict[str, Any]] | None = None

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._root)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/api/version", self._version)
        app.router.add_post("/api/chat", self._chat)
        app.router.add_post("/api/generate", self._prompt)

    def _error(self, status: int, message: str, retry_after: float | None = None) -> web.Response:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return web.json_response({"error": message}, status=status, headers=headers)

    def _known(self, model: str) -> bool:
        return model in self.models or f"{model}:latest" in self.models

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="Ollama is running")

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0.0.0-fake"})

    async def _tags(self, request: web.Request) -> web.Response:
        models = [
            {
                "name": m,
                "model": m,
                "modified_at": "2024-01-01T00:00:00Z",
                "size": 1,
                "digest": "0" * 64,
                "details": {},
            }
            for m in self.models
        ]
        return web.json_response({"models": models})

    async def _complete(
        self, request: web.Request, body: dict[str, Any], prompt: str, chat: bool
    ) -> web.StreamResponse:
        model = str(body.get("model", ""))
        if not self._known(model):
            return self._error(404, f"model '{model}' not found, try pulling it first")
        stream = body.get("stream", True) is not False
        failure = await self._arrive(stream)
        if failure is not None:
            return self._error(failure.status, failure.message, failure.retry_after)
        text = self.answer(prompt, model)
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        limit = options.get("num_predict") if options else None
        done_reason = "stop"
        if isinstance(limit, int) and 0 <= limit < _count_tokens(text):
            text = " ".join(text.split()[:limit])
            done_reason = "length"
        created = "2024-01-01T00:00:00Z"

        calling = chat and self.tool_calls is not None and bool(body.get("tools"))
        if calling:
            text = ""

        def piece(content: str, done: bool) -> dict[str, Any]:
            obj: dict[str, Any] = {"model": model, "created_at": created, "done": done}
            if chat:
                obj["message"] = {"role": "assistant", "content": content}
            else:
                obj["response"] = content
            return obj

        final = piece("" if stream else text, True)
        if calling and not stream:
            final["message"]["tool_calls"] = self.tool_calls
        final.update(
            done_reason=done_reason,
            total_duration=1_000_000,
            load_duration=1000,
            prompt_eval_count=_count_tokens(prompt),
            prompt_eval_duration=1000,
            eval_count=_count_tokens(text),
            eval_duration=1000,
        )
        if not stream:
            return web.json_response(final)
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        if calling:
            line = piece("", False)
            line["message"]["tool_calls"] = self.tool_calls
            await resp.write(json.dumps(line).encode() + b"\n")
        for i, part in enumerate(_words(text)):
            if self.stream_fail_after is not None and i >= self.stream_fail_after:
                if self.stream_fail_mode == "error":
                    await resp.write(
                        json.dumps({"error": "stream failed upstream"}).encode() + b"\n"
                    )
                    await resp.write_eof()
                elif request.transport is not None:
                    request.transport.close()
                return resp
            await resp.write(json.dumps(piece(part, False)).encode() + b"\n")
        await resp.write(json.dumps(final).encode() + b"\n")
        await resp.write_eof()
        return resp
