"""The OpenAI-compatible wire format (pure: builds and parses bodies, decodes SSE lines).

Servers that speak it: OpenAI, llama.cpp's server, vLLM, LM Studio, Ollama's /v1, Apple
Foundation Models bridges. Parsers are lenient about extra fields and strict about the ones they
need; a body that lacks them raises a non-retryable ``BackendError``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from client.dvm.tokens import estimate_tokens, tokens_for_chars

from ..errors import BackendError
from ..types import LmUsage, Message, StreamChunk

# Parameters the caller cannot override: the backend sets them itself.
_RESERVED = frozenset(
    {
        "model",
        "messages",
        "prompt",
        "input",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
    }
)

DONE = object()  # what parse_stream_data returns for ``data: [DONE]``


def chat_body(
    model: str,
    messages: Sequence[Message],
    max_tokens: int,
    params: Mapping[str, Any],
    *,
    stream: bool = False,
    include_usage: bool = False,
    drop: frozenset[str] = frozenset(),
    limit: str = "max_tokens",
) -> dict[str, Any]:
    """A /v1/chat/completions body: every parameter passed on unchanged except ``drop`` (the
    backend's ``drop_params``) and the ones the backend sets itself. Messages go as they are
    (tool calls, tool results and content parts included). ``limit`` is the caller's name for
    ``max_tokens`` (newer OpenAI models take only ``max_completion_tokens``)."""
    body = _params(params, drop)
    body["model"] = model
    body["messages"] = list(messages)
    body[limit] = max_tokens
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    return body


def text_body(
    model: str,
    prompt: str,
    max_tokens: int,
    params: Mapping[str, Any],
    *,
    stream: bool = False,
    include_usage: bool = False,
    drop: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """A /v1/completions body (parameters as in :func:`chat_body`)."""
    body = _params(params, drop)
    body["model"] = model
    body["prompt"] = str(prompt)
    body["max_tokens"] = max_tokens
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    return body


def embeddings_body(
    model: str, value: Any, params: Mapping[str, Any], drop: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """A /v1/embeddings body: the input as the caller sent it, other parameters unchanged."""
    body = _params(params, drop)
    body["model"] = model
    body["input"] = value
    return body


def _params(params: Mapping[str, Any], drop: frozenset[str]) -> dict[str, Any]:
    if drop:
        return {k: v for k, v in params.items() if k not in _RESERVED and k not in drop}
    return {k: v for k, v in params.items() if k not in _RESERVED}


def _usage(obj: Any) -> LmUsage | None:
    if not isinstance(obj, dict):
        return None
    p = obj.get("prompt_tokens")
    c = obj.get("completion_tokens")
    if not isinstance(p, int) or not isinstance(c, int):
        return None
    t = obj.get("total_tokens")
    return LmUsage(p, c, t if isinstance(t, int) else p + c)


def parse_chat_completion(
    obj: Any, backend: str, prompt_chars: int
) -> tuple[str, LmUsage, str, str | None]:
    """(text, usage, finish_reason, model) from a /v1/chat/completions (or /v1/completions)
    answer. Usage is estimated when the server reports none."""
    try:
        choice = obj["choices"][0]
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else choice.get("text")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise BackendError(
            f"{backend}: malformed completion: no choices", backend=backend
        ) from None
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise BackendError(f"{backend}: malformed completion: content is not text", backend=backend)
    finish = choice.get("finish_reason") or "stop"
    usage = _usage(obj.get("usage"))
    if usage is None:
        p = tokens_for_chars(prompt_chars)
        c = estimate_tokens(text)
        usage = LmUsage(p, c, p + c)
    model = obj.get("model")
    return text, usage, str(finish), model if isinstance(model, str) else None


def answer_extras(obj: Any) -> tuple[dict[str, Any] | None, Any]:
    """What a completion answer holds beyond the text, to return unchanged: the message's other
    fields (``tool_calls``, ``refusal``, ``content: null`` beside tool calls, ...) and the
    choice's ``logprobs``. (None, None) for a plain text answer. Call after
    :func:`parse_chat_completion` accepted ``obj``."""
    choice = obj["choices"][0]
    message = choice.get("message")
    extra = None
    if isinstance(message, dict) and (len(message) > 2 or message.get("content") is None):
        extra = {
            k: v
            for k, v in message.items()
            if k != "role" and not (k == "content" and isinstance(v, str))
        }
        if not extra or all(v is None for v in extra.values()):
            extra = None  # only "refusal": null and the like: nothing to add
    return extra, choice.get("logprobs")


def parse_embeddings(obj: Any, backend: str, prompt_chars: int) -> tuple[list[Any], LmUsage]:
    """(data, usage) from a /v1/embeddings answer; usage is estimated when none is reported."""
    data = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(data, list):
        raise BackendError(f"{backend}: malformed embeddings answer: no data", backend=backend)
    u = obj.get("usage")
    p = u.get("prompt_tokens") if isinstance(u, dict) else None
    if not isinstance(p, int):
        p = tokens_for_chars(prompt_chars)
    return data, LmUsage(p, 0, p)


def parse_models(obj: Any) -> list[str]:
    """Model ids from a /v1/models answer (``{"data": [{"id": ...}, ...]}``)."""
    data = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(data, list):
        raise ValueError("no 'data' list in the models answer")
    return [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]


class SseDecoder:
    """Server-sent events, one line at a time: returns each complete event's ``data`` (several
    ``data:`` lines joined by newlines) when the blank line that ends it arrives."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data:
                return None
            data = "\n".join(self._data)
            self._data = []
            return data
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        return None  # event:, id:, retry: do not matter here

    def flush(self) -> str | None:
        """The last event if the stream ended without its blank line."""
        return self.feed("")


def parse_stream_data(data: str, backend: str) -> StreamChunk | object | None:
    """One SSE event's data: a chunk, ``DONE``, or None for events with nothing in them.
    Raises ``BackendError`` for an error event or a body that is not JSON."""
    if data.strip() == "[DONE]":
        return DONE
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: absurd nesting
        raise BackendError(f"{backend}: stream event is not JSON", backend=backend) from None
    if not isinstance(obj, dict):
        raise BackendError(f"{backend}: stream event is not an object", backend=backend)
    if "error" in obj:
        err = obj["error"]
        msg = err.get("message") if isinstance(err, dict) else err
        raise BackendError(f"{backend}: stream error: {msg}", backend=backend, retryable=True)
    usage = _usage(obj.get("usage"))
    choices = obj.get("choices")
    text = ""
    finish = None
    extra = logprobs = None
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            if len(delta) > ("content" in delta) + ("role" in delta):
                extra = _delta_extra(delta)
        else:
            content = choice.get("text")
        if isinstance(content, str):
            text = content
        if isinstance(choice.get("finish_reason"), str):
            finish = choice["finish_reason"]
        logprobs = choice.get("logprobs")
    if not text and usage is None and finish is None and extra is None and logprobs is None:
        return None
    return StreamChunk(text, usage, finish, extra, logprobs)


def _delta_extra(delta: dict[str, Any]) -> dict[str, Any] | None:
    """A delta's fields beyond its text (tool call pieces, reasoning, ...), relayed unchanged;
    the role and empty values are the gateway's own to send."""
    extra = {k: v for k, v in delta.items() if k not in ("role", "content") and v is not None}
    return extra or None
