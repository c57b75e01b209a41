"""Ollama through its native API: :class:`OllamaBackend`."""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from ..errors import BackendError
from ..request import LmRequest
from ..types import LmResponse, StreamChunk
from .base import LmBackend
from .http_errors import http_error, transport_error
from .http_session import SessionPool
from .ollama_wire import (
    model_matches,
    parse_answer,
    parse_stream_line,
    parse_tags,
    request_body,
    tool_calls,
)
from .openai_compat import api_root

_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, ConnectionError)


class OllamaBackend(LmBackend):
    """Ollama's own API: a plain prompt goes to ``/api/generate``, chat messages to
    ``/api/chat``; streaming reads Ollama's NDJSON; models come from ``/api/tags`` (discovered
    by the router on first need, or by ``refresh_models()``). ``max_tokens`` becomes the
    ``num_predict`` option; sampling parameters (temperature, top_p, seed, stop, num_ctx, ...)
    go into ``options`` and ``format``/``keep_alive``/``system``/... stay at the top level.
    OpenAI's ``tools``, tool-call histories, ``response_format`` and image parts are mapped to
    Ollama's; the tool calls Ollama answers come back in OpenAI's shape (``extra`` of the
    response, ``delta`` of stream chunks, finish reason ``tool_calls``). A parameter Ollama
    cannot honour raises ``InvalidRequest``. ``llama3`` matches ``llama3:latest``."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:11434",
        *,
        name: str = "ollama",
        models: list[str] | None = None,
        timeout_s: float | None = 600.0,
        connect_timeout_s: float | None = 10.0,
        max_connections: int = 16,
        headers: dict[str, str] | None = None,
        expected_latency_ms: float = 1000.0,
    ) -> None:
        self.root = api_root(base_url)
        self.name = name
        self._pool = SessionPool(
            timeout_s=timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_connections=max_connections,
            headers=dict(headers or {}),
        )
        self._configured = list(models or [])
        self._discovered: list[str] = []
        self.models_known = models is not None
        self.expected_latency_ms = expected_latency_ms

    # --- models ------------------------------------------------------------------------------

    def supported_models(self) -> list[str]:
        return list(dict.fromkeys(self._configured + self._discovered))

    def supports_model(self, model: str) -> bool:
        return any(model_matches(model, m) for m in self._configured + self._discovered)

    async def refresh_models(self) -> list[str]:
        obj = await self._request_json("GET", "/api/tags", None)
        try:
            self._discovered = parse_tags(obj)
        except ValueError as exc:
            raise BackendError(f"{self.name}: {exc}", backend=self.name) from None
        self.models_known = True
        return self.supported_models()

    def missing_models(self) -> list[str]:
        """Configured models the server did not list at the last :meth:`refresh_models` (not
        pulled): a provider must not offer them."""
        if not self._discovered:
            return []
        return [
            m for m in self._configured if not any(model_matches(m, d) for d in self._discovered)
        ]

    async def health_check(self) -> bool:
        try:
            await self._request_json("GET", "/api/tags", None)
        except BackendError:
            return False
        return True

    # --- completions -------------------------------------------------------------------------

    def _body(self, request: LmRequest, stream: bool) -> tuple[str, dict[str, Any]]:
        prompt = request.prompt
        params = request.upstream_params()
        if isinstance(prompt, str):
            return "/api/generate", request_body(
                request.model, prompt, None, request.max_tokens, params, stream=stream
            )
        return "/api/chat", request_body(
            request.model, None, prompt, request.max_tokens, params, stream=stream
        )

    async def send(self, request: LmRequest) -> LmResponse:
        path, body = self._body(request, stream=False)
        model = request.model
        t0 = time.perf_counter()
        obj = await self._request_json("POST", path, body)
        text, usage, finish = parse_answer(obj, self.name)
        latency = (time.perf_counter() - t0) * 1000.0
        calls = tool_calls(obj, _call_prefix())
        if not calls:
            return LmResponse(text, usage, model, finish, latency, self.name)
        for c in calls:
            del c["index"]  # only stream deltas carry one
        extra = {"content": text or None, "tool_calls": calls}
        return LmResponse(text, usage, model, "tool_calls", latency, self.name, extra)

    async def send_stream(self, request: LmRequest) -> AsyncIterator[StreamChunk]:
        path, body = self._body(request, stream=True)
        try:
            async with self._pool.get().post(self.root + path, json=body) as resp:
                if resp.status >= 400:
                    text = await resp.text(errors="replace")
                    raise http_error(self.name, resp.status, text, resp.headers)
                done = False
                prefix = ""
                calls = 0
                async for raw in resp.content:
                    line = raw.decode("utf-8", "replace")
                    chunk = parse_stream_line(line, self.name)
                    if '"tool_calls"' in line:  # rare: parse the line once more for them
                        prefix = prefix or _call_prefix()
                        found = tool_calls(json.loads(line), prefix, calls)
                        if found:
                            calls += len(found)
                            chunk = chunk or StreamChunk()
                            chunk.delta = {"tool_calls": found}
                    if chunk is None:
                        continue
                    if calls and chunk.finish_reason == "stop":
                        chunk.finish_reason = "tool_calls"
                    yield chunk
                    if chunk.usage is not None:
                        done = True
                        break
                if not done:
                    raise BackendError(
                        f"{self.name}: stream ended before its final line",
                        backend=self.name,
                        retryable=True,
                    )
        except _TRANSPORT_ERRORS as exc:
            raise transport_error(self.name, exc) from exc

    # --- HTTP --------------------------------------------------------------------------------

    async def _request_json(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        try:
            async with self._pool.get().request(method, self.root + path, json=body) as resp:
                text = await resp.text(errors="replace")
                if resp.status >= 400:
                    raise http_error(self.name, resp.status, text, resp.headers)
        except _TRANSPORT_ERRORS as exc:
            raise transport_error(self.name, exc) from exc
        try:
            return json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: absurd nesting
            raise BackendError(f"{self.name}: answer is not JSON", backend=self.name) from None

    async def close(self) -> None:
        await self._pool.close()

    def __repr__(self) -> str:
        return f"OllamaBackend(name={self.name!r}, root={self.root!r})"


def _call_prefix() -> str:
    """Ollama gives tool calls no ids; OpenAI's clients match tool results to calls by id."""
    return "call_" + os.urandom(6).hex()
