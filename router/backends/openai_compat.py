"""Any OpenAI-compatible server: :class:`OpenAICompatBackend`."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

from ..errors import BackendError
from ..request import LmRequest
from ..types import (
    EmbeddingInput,
    LmResponse,
    Prompt,
    StreamChunk,
    TextPrompt,
    prompt_text,
    to_messages,
)
from .aiohttp_pool import AiohttpPool, AiohttpStreamAnswer
from .auth import BackendAuth, BasicAuth, BearerAuth, HeaderAuth, parse_auth
from .base import LmBackend
from .http1 import Http1Pool, StreamAnswer
from .http_errors import http_error, transport_error
from .openai_wire import (
    DONE,
    SseDecoder,
    answer_extras,
    chat_body,
    embeddings_body,
    parse_chat_completion,
    parse_embeddings,
    parse_models,
    parse_stream_data,
    text_body,
)

# Http1Pool's failures are ConnectionError subclasses; its timeouts are TimeoutErrors.
_TRANSPORT_ERRORS = (TimeoutError, ConnectionError)
_CHAT = "/v1/chat/completions"
_TEXT = "/v1/completions"
_EMBED = "/v1/embeddings"
# What a server that has no /v1/completions route answers there.
_NO_ROUTE = frozenset({404, 405, 501})


class _StreamOptionsRefused(Exception):
    """The server answered 400 to ``stream_options``."""


class _NoTextEndpoint(Exception):
    """The server answered /v1/completions as a path it does not serve."""


def api_root(base_url: str) -> str:
    """``http://host:8080``, ``http://host:8080/``, ``http://host:8080/v1`` -> the part before
    ``/v1``, so both spellings users copy from server docs work."""
    url = base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {base_url!r}")
    return url[: -len("/v1")] if url.endswith("/v1") else url


class OpenAICompatBackend(LmBackend):
    """Talks to ``/v1/chat/completions`` and ``/v1/models`` of an OpenAI-compatible server
    (OpenAI, llama.cpp server, vLLM, LM Studio, Ollama's /v1, Apple Foundation Models bridges).

    ``api_key`` is a shortcut for bearer auth; ``auth`` takes a ``BearerAuth``, ``BasicAuth``,
    ``HeaderAuth`` or the equivalent dict (``{"type": "header", "name": ..., "value": ...}``).
    Models come from ``models`` and/or are discovered from ``/v1/models`` (the router does this
    before its first request and when a model is not found; ``refresh_models()`` on demand).
    Connections are pooled (``max_connections``) per event loop; ``close()`` releases them.
    ``transport`` picks the HTTP client: ``"http1"`` (:class:`~.http1.Http1Pool`, the default)
    or ``"aiohttp"`` (:class:`~.aiohttp_pool.AiohttpPool`); both keep the same contract (a POST
    is never sent twice, answers and streamed lines are capped).

    Every sampling option and passthrough field of the request is passed on unchanged (tools,
    logprobs, response_format, top_k, ...) except those named in ``drop_params``, for servers
    that refuse some; swarm terms are not read. A
    :class:`~router.types.TextPrompt` goes to ``/v1/completions``; a server that answers there
    with 404/405/501 while its chat endpoint works is remembered as one without it
    (``serves_completions = False``) and asked as chat from then on. An
    :class:`~router.types.EmbeddingInput` goes to ``/v1/embeddings``.
    """

    #: It can compute embeddings (``/v1/embeddings``).
    embeds = True

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        auth: BackendAuth | dict[str, Any] | None = None,
        name: str | None = None,
        models: list[str] | None = None,
        timeout_s: float | None = 120.0,
        connect_timeout_s: float | None = 10.0,
        max_connections: int = 64,
        headers: dict[str, str] | None = None,
        stream_usage: bool = True,
        expected_latency_ms: float = 1000.0,
        cost_per_1k_tokens_usd: float = 0.0,
        drop_params: list[str] | tuple[str, ...] = (),
        transport: Literal["http1", "aiohttp"] = "http1",
    ) -> None:
        self.root = api_root(base_url)
        self.drop_params = frozenset(drop_params)
        #: Whether the server has /v1/completions: None until a text request found out.
        self.serves_completions: bool | None = None
        self.name = name or urlsplit(self.root).netloc
        if api_key is not None and auth is not None:
            raise ValueError("pass api_key or auth, not both")
        self.auth: BearerAuth | BasicAuth | HeaderAuth | None = (
            BearerAuth(token=SecretStr(api_key)) if api_key is not None else parse_auth(auth)
        )
        all_headers = dict(headers or {})
        if self.auth is not None:
            all_headers.update(self.auth.headers())
        if transport not in ("http1", "aiohttp"):
            raise ValueError(f"transport must be 'http1' or 'aiohttp', not {transport!r}")
        pool_type = Http1Pool if transport == "http1" else AiohttpPool
        self._pool: Http1Pool | AiohttpPool = pool_type(
            self.root,
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_connections=max_connections,
            headers=all_headers,
        )
        self.transport = transport
        self._configured = list(models or [])
        self._discovered: list[str] = []
        self._models = set(self._configured)
        self.models_known = models is not None
        self.stream_usage = stream_usage
        self.expected_latency_ms = expected_latency_ms
        self.cost_per_1k_tokens_usd = cost_per_1k_tokens_usd

    # --- models ------------------------------------------------------------------------------

    def supported_models(self) -> list[str]:
        return list(dict.fromkeys(self._configured + self._discovered))

    def supports_model(self, model: str) -> bool:
        return model in self._models

    async def refresh_models(self) -> list[str]:
        """Fetch ``/v1/models``. Raises ``BackendError`` if the server cannot be asked."""
        obj = await self._get_json("/v1/models")
        try:
            found = parse_models(obj)
        except ValueError as exc:
            raise BackendError(f"{self.name}: {exc}", backend=self.name) from None
        self._discovered = found
        self._models = set(self._configured) | set(found)
        self.models_known = True
        return self.supported_models()

    async def health_check(self) -> bool:
        try:
            await self._get_json("/v1/models")
        except BackendError:
            return False
        return True

    # --- completions -------------------------------------------------------------------------

    async def send(self, request: LmRequest) -> LmResponse:
        t0 = time.perf_counter()
        prompt = request.prompt
        params = request.upstream_params()
        if type(prompt) is EmbeddingInput:
            return await self._embed(request.model, prompt, params, t0)
        if type(prompt) is TextPrompt and self.serves_completions is not False:
            body = text_body(
                request.model, prompt, request.max_tokens, params, drop=self.drop_params
            )
            try:
                obj = await self._post_json(_TEXT, body)
            except BackendError as exc:
                if exc.status not in _NO_ROUTE or self.serves_completions:
                    raise
                resp = await self._chat(request, params, t0)
                self.serves_completions = False  # chat works where /v1/completions did not
                return resp
            self.serves_completions = True
            return self._answer(obj, request.model, prompt, t0)
        return await self._chat(request, params, t0)

    async def _chat(self, request: LmRequest, params: dict[str, Any], t0: float) -> LmResponse:
        body = chat_body(
            request.model,
            to_messages(request.prompt),
            request.max_tokens,
            params,
            drop=self.drop_params,
            limit=request.max_tokens_field,
        )
        return self._answer(await self._post_json(_CHAT, body), request.model, request.prompt, t0)

    def _answer(self, obj: Any, model: str, prompt: Prompt, t0: float) -> LmResponse:
        text, usage, finish, served = parse_chat_completion(
            obj, self.name, len(prompt_text(prompt))
        )
        extra, logprobs = answer_extras(obj)
        latency = (time.perf_counter() - t0) * 1000.0
        return LmResponse(text, usage, served or model, finish, latency, self.name, extra, logprobs)

    async def _embed(
        self, model: str, value: EmbeddingInput, params: dict[str, Any], t0: float
    ) -> LmResponse:
        body = embeddings_body(model, value.input, params, self.drop_params)
        obj = await self._post_json(_EMBED, body)
        data, usage = parse_embeddings(obj, self.name, len(value))
        served = obj.get("model")
        latency = (time.perf_counter() - t0) * 1000.0
        return LmResponse(
            "",
            usage,
            served if isinstance(served, str) else model,
            "stop",
            latency,
            self.name,
            {"data": data},
        )

    async def send_stream(self, request: LmRequest) -> AsyncIterator[StreamChunk]:
        text = type(request.prompt) is TextPrompt and self.serves_completions is not False
        params = request.upstream_params()
        fell_back = False
        while True:  # at most three passes: each exception below turns its own cause off
            try:
                async for chunk in self._stream(request, params, text):
                    yield chunk
            except _StreamOptionsRefused:
                # an older server that refuses stream_options: ask without it from now on
                self.stream_usage = False
                continue
            except _NoTextEndpoint:
                # answered before any chunk was yielded: ask the chat endpoint instead
                text, fell_back = False, True
                continue
            if fell_back and self.serves_completions is None:
                self.serves_completions = False  # chat works where /v1/completions did not
            return

    async def _stream(
        self, request: LmRequest, params: dict[str, Any], text: bool
    ) -> AsyncIterator[StreamChunk]:
        include_usage = self.stream_usage
        drop = self.drop_params
        if text:
            path = _TEXT
            body = text_body(
                request.model,
                request.prompt,  # type: ignore[arg-type]  # a TextPrompt
                request.max_tokens,
                params,
                stream=True,
                include_usage=include_usage,
                drop=drop,
            )
        else:
            path = _CHAT
            body = chat_body(
                request.model,
                to_messages(request.prompt),
                request.max_tokens,
                params,
                stream=True,
                include_usage=include_usage,
                drop=drop,
                limit=request.max_tokens_field,
            )
        try:
            async with self._pool.stream("POST", path, _encode(body)) as answer:
                if answer.status >= 400:
                    text_ = (await answer.read()).decode("utf-8", "replace")
                    if answer.status == 400 and include_usage and "stream_options" in text_:
                        raise _StreamOptionsRefused
                    err = http_error(self.name, answer.status, text_, answer.headers)
                    if text and answer.status in _NO_ROUTE and not self.serves_completions:
                        raise _NoTextEndpoint
                    raise err
                if text:
                    self.serves_completions = True
                async for chunk in self._read_sse(answer):
                    yield chunk
        except _TRANSPORT_ERRORS as exc:
            raise transport_error(self.name, exc) from exc

    async def _read_sse(
        self, answer: StreamAnswer | AiohttpStreamAnswer
    ) -> AsyncIterator[StreamChunk]:
        decoder = SseDecoder()
        saw_done = False
        async for line in answer.iter_lines():
            data = decoder.feed(line.decode("utf-8", "replace"))
            if data is None:
                continue
            item = parse_stream_data(data, self.name)
            if item is DONE:
                saw_done = True
                break
            if isinstance(item, StreamChunk):
                yield item
        if not saw_done:
            tail = decoder.flush()
            if tail is not None:
                item = parse_stream_data(tail, self.name)
                if isinstance(item, StreamChunk):
                    yield item

    # --- HTTP --------------------------------------------------------------------------------

    async def _get_json(self, path: str) -> Any:
        try:
            answer = await self._pool.request("GET", path)
        except _TRANSPORT_ERRORS as exc:
            raise transport_error(self.name, exc) from exc
        if answer.status >= 400:
            raise http_error(self.name, answer.status, answer.text(), answer.headers)
        return _json(answer.body, self.name)

    async def _post_json(self, path: str, body: dict[str, Any]) -> Any:
        try:
            answer = await self._pool.request("POST", path, _encode(body))
        except _TRANSPORT_ERRORS as exc:
            raise transport_error(self.name, exc) from exc
        if answer.status >= 400:
            raise http_error(self.name, answer.status, answer.text(), answer.headers)
        return _json(answer.body, self.name)

    async def close(self) -> None:
        await self._pool.close()

    def __repr__(self) -> str:
        return f"OpenAICompatBackend(name={self.name!r}, root={self.root!r})"


def _encode(body: dict[str, Any]) -> bytes:
    # ASCII-escaped: a lone surrogate in a prompt cannot make the encoding fail
    return json.dumps(body, separators=(",", ":")).encode()


def _json(body: bytes, backend: str) -> Any:
    try:
        return json.loads(body.decode())  # JSON on the wire is UTF-8 (RFC 8259); skips sniffing
    except (ValueError, RecursionError):  # RecursionError: absurd nesting
        text = body[:120].decode("utf-8", "replace")
        raise BackendError(f"{backend}: answer is not JSON: {text!r}", backend=backend) from None
