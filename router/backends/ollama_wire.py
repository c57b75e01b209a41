"""Ollama's native API (pure): request bodies for /api/generate and /api/chat, parsing of their
answers and NDJSON stream lines, and /api/tags."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import BackendError
from ..types import LmUsage, Message, StreamChunk

# Request fields that sit at the top level of an Ollama request; every other parameter is a
# model option (temperature, top_p, seed, stop, num_ctx, ...).
TOP_LEVEL = frozenset(
    {
        "format",
        "keep_alive",
        "system",
        "template",
        "raw",
        "images",
        "tools",
        "think",
        "suffix",
        "context",
    }
)
_RESERVED = frozenset({"model", "prompt", "messages", "stream", "options"})


def request_body(
    model: str,
    prompt: str | None,
    messages: Sequence[Message] | None,
    max_tokens: int,
    params: Mapping[str, Any],
    *,
    stream: bool,
) -> dict[str, Any]:
    """A body for /api/generate (``prompt``) or /api/chat (``messages``)."""
    options: dict[str, Any] = {}
    extra = params.get("options")
    if isinstance(extra, Mapping):
        options.update(extra)
    body: dict[str, Any] = {"model": model, "stream": stream}
    for key, value in params.items():
        if key in _RESERVED:
            continue
        if key in TOP_LEVEL:
            body[key] = value
        elif key == "max_tokens":
            continue
        else:
            options["stop" if key == "stop_sequences" else key] = value
    if isinstance(options.get("stop"), str):
        options["stop"] = [options["stop"]]
    options["num_predict"] = max_tokens
    body["options"] = options
    if messages is not None:
        body["messages"] = [dict(m) for m in messages]
    else:
        body["prompt"] = prompt or ""
    return body


def _text_of(obj: Mapping[str, Any]) -> str:
    message = obj.get("message")
    if isinstance(message, dict):
        content = message.get("content")
        return content if isinstance(content, str) else ""
    response = obj.get("response")
    return response if isinstance(response, str) else ""


def _usage(obj: Mapping[str, Any]) -> LmUsage:
    p = obj.get("prompt_eval_count")
    c = obj.get("eval_count")
    p = p if isinstance(p, int) else 0
    c = c if isinstance(c, int) else 0
    return LmUsage(p, c, p + c)


def parse_answer(obj: Any, backend: str) -> tuple[str, LmUsage, str]:
    """(text, usage, finish_reason) from a non-streamed /api/generate or /api/chat answer."""
    if not isinstance(obj, dict):
        raise BackendError(f"{backend}: malformed answer", backend=backend)
    if "error" in obj:
        raise BackendError(f"{backend}: {obj['error']}", backend=backend)
    if "message" not in obj and "response" not in obj:
        raise BackendError(f"{backend}: malformed answer: no message or response", backend=backend)
    reason = obj.get("done_reason")
    return _text_of(obj), _usage(obj), reason if isinstance(reason, str) and reason else "stop"


def parse_stream_line(line: str, backend: str) -> StreamChunk | None:
    """One NDJSON line of a streamed answer; the last one (``done``) carries usage."""
    line = line.strip()
    if not line:
        return None
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: absurd nesting
        raise BackendError(f"{backend}: stream line is not JSON", backend=backend) from None
    if not isinstance(obj, dict):
        raise BackendError(f"{backend}: stream line is not an object", backend=backend)
    if "error" in obj:
        raise BackendError(
            f"{backend}: stream error: {obj['error']}", backend=backend, retryable=True
        )
    text = _text_of(obj)
    if obj.get("done"):
        reason = obj.get("done_reason")
        return StreamChunk(
            text, _usage(obj), reason if isinstance(reason, str) and reason else "stop"
        )
    return StreamChunk(text) if text else None


def parse_tags(obj: Any) -> list[str]:
    """Model names from /api/tags (``{"models": [{"name": "llama3:latest", ...}]}``)."""
    models = obj.get("models") if isinstance(obj, dict) else None
    if not isinstance(models, list):
        raise ValueError("no 'models' list in the tags answer")
    out = []
    for m in models:
        if isinstance(m, dict):
            name = m.get("name") or m.get("model")
            if isinstance(name, str):
                out.append(name)
    return out


def model_matches(requested: str, available: str) -> bool:
    """``llama3`` names ``llama3:latest``: a name without a tag means the ``latest`` tag."""
    if requested == available:
        return True
    if ":" not in requested:
        return available == f"{requested}:latest"
    return requested.endswith(":latest") and available == requested[: -len(":latest")]
