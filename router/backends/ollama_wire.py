"""Ollama's native API (pure): request bodies for /api/generate and /api/chat, parsing of their
answers and NDJSON stream lines, and /api/tags.

OpenAI's request shapes are mapped where Ollama has the same thing (sampling parameters, tools
and tool-call histories, ``response_format``, text and base64 image parts); a parameter Ollama
cannot honour raises ``InvalidRequest`` naming it, rather than being dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import BackendError, InvalidRequest
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
_RESERVED = frozenset({"model", "prompt", "messages", "stream", "options", "max_tokens"})
#: Ollama's model options (``options`` in a request).
OPTIONS = frozenset(
    {
        "num_keep", "seed", "num_predict", "top_k", "top_p", "min_p", "typical_p",
        "repeat_last_n", "temperature", "repeat_penalty", "presence_penalty",
        "frequency_penalty", "penalize_newline", "stop", "numa", "num_ctx", "num_batch",
        "num_gpu", "main_gpu", "low_vram", "use_mmap", "use_mlock", "num_thread", "mirostat",
        "mirostat_tau", "mirostat_eta", "tfs_z", "vocab_only", "f16_kv", "logits_all",
    }
)  # fmt: skip
# OpenAI's (and other servers') names for Ollama's options.
_RENAMED = {"repetition_penalty": "repeat_penalty", "stop_sequences": "stop"}
# Accepted and not sent: they identify the caller to OpenAI and change nothing in the answer.
_IGNORED = frozenset({"user", "max_completion_tokens"})


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
        if key in _RESERVED or key in _IGNORED:
            continue
        if key in TOP_LEVEL:
            body[key] = value
        elif key in OPTIONS:
            options[key] = value
        elif key in _RENAMED:
            options[_RENAMED[key]] = value
        elif key == "response_format":
            fmt = _format(value)
            if fmt is not None:
                body["format"] = fmt
        elif key == "tool_choice":
            # Ollama decides by itself whether to call a tool: "auto" is what it does anyway,
            # "none" is the same request without tools; it cannot be made to call one.
            if value not in ("auto", "none"):
                raise InvalidRequest(
                    f"tool_choice {value!r} is not supported by Ollama (only 'auto' or 'none')"
                )
        else:
            raise InvalidRequest(f"parameter {key!r} is not supported by Ollama's API")
    if params.get("tool_choice") == "none":
        body.pop("tools", None)
    if isinstance(options.get("stop"), str):
        options["stop"] = [options["stop"]]
    options["num_predict"] = max_tokens
    body["options"] = options
    if messages is not None:
        body["messages"] = chat_messages(messages)
    else:
        body["prompt"] = prompt or ""
    return body


def _format(value: Any) -> Any:
    """OpenAI's ``response_format`` as Ollama's ``format``: "json", a JSON schema, or None."""
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = value.get("json_schema")
        if isinstance(schema, dict) and isinstance(schema.get("schema"), dict):
            return schema["schema"]
    raise InvalidRequest(
        "response_format must be {'type': 'text' | 'json_object'} or a json_schema with a "
        "'schema' object"
    )


def chat_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """OpenAI chat messages in Ollama's shape: content parts become the text plus ``images``
    (base64 data URLs only: Ollama fetches nothing), an assistant's ``tool_calls`` carry their
    arguments as objects, and a tool result names its tool (``tool_name``)."""
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, for the tool results
    for i, m in enumerate(messages):
        content = m.get("content")
        if type(content) is str and len(m) == 2:
            out.append(m)  # type: ignore[arg-type]  # the usual case: as it is
            continue
        msg: dict[str, Any] = {"role": m["role"], "content": ""}
        if isinstance(content, str):
            msg["content"] = content
        elif isinstance(content, list):
            msg["content"], images = _parts(content, i)
            if images:
                msg["images"] = images
        calls = m.get("tool_calls")
        if calls:
            msg["tool_calls"] = [_tool_call_out(c, i, names) for c in calls]
        if m["role"] == "tool":
            name = names.get(str(m.get("tool_call_id")))
            if name is not None:
                msg["tool_name"] = name
        out.append(msg)
    return out


def _parts(content: list[Any], i: int) -> tuple[str, list[str]]:
    text: list[str] = []
    images: list[str] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text.append(str(part.get("text", "")))
            continue
        if kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
                images.append(url.split(";base64,", 1)[1])
                continue
            raise InvalidRequest(
                f"messages[{i}].content: Ollama takes images as base64 data URLs only"
            )
        raise InvalidRequest(f"messages[{i}].content: Ollama cannot take {kind!r} parts")
    return "".join(text), images


def _tool_call_out(call: Any, i: int, names: dict[str, str]) -> dict[str, Any]:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise InvalidRequest(f"messages[{i}].tool_calls: each needs a function with a name")
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except (ValueError, RecursionError):
            raise InvalidRequest(
                f"messages[{i}].tool_calls: arguments are not JSON: {args[:80]!r}"
            ) from None
    if isinstance(call.get("id"), str):
        names[call["id"]] = fn["name"]
    return {"function": {"name": fn["name"], "arguments": args if args is not None else {}}}


def tool_calls(obj: Mapping[str, Any], id_prefix: str, start: int = 0) -> list[dict[str, Any]]:
    """The tool calls in an answer (or stream line), in OpenAI's shape: an id
    (``<id_prefix>_<n>``; Ollama gives none), ``type``, arguments as a JSON string, and the
    ``index`` streamed deltas carry. Empty when there are none."""
    message = obj.get("message")
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    if not isinstance(calls, list):
        return []
    out = []
    for n, call in enumerate(calls, start):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            continue
        args = fn.get("arguments")
        out.append(
            {
                "index": n,
                "id": f"{id_prefix}_{n}",
                "type": "function",
                "function": {
                    "name": str(fn.get("name", "")),
                    "arguments": args if isinstance(args, str) else json.dumps(args or {}),
                },
            }
        )
    return out


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
