"""OpenAI's HTTP API, as far as the gateway speaks it: request parsing and response bodies.

Pure functions over values (no I/O), so every rule here is tested without a server. Parsing is
hand-written rather than a pydantic model per request: it runs on every request and only needs a
few type checks, each of which fails with OpenAI's ``param`` naming the field.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from ..types import LmResponse, LmUsage, Message
from .errors import ApiError, bad_request

#: Sampling options passed through to the backend when the request has them.
PASSTHROUGH = (
    "temperature",
    "top_p",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "logit_bias",
    "response_format",
    "user",
)
_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function"})

_ids = itertools.count(1)
_ID_PREFIX = os.urandom(6).hex()


def new_id(kind: str) -> str:
    """A unique response id (``chatcmpl-...`` / ``cmpl-...``) without a uuid per request."""
    return f"{kind}-{_ID_PREFIX}{next(_ids):x}"


#: The longest model name accepted (bytes of UTF-8): every per-model table stays small.
MAX_MODEL_NAME = 256


@dataclass(slots=True)
class CompletionRequest:
    """One parsed ``/v1/chat/completions`` or ``/v1/completions`` request."""

    chat: bool
    model: str
    prompt: str | list[Message]
    max_tokens: int
    stream: bool = False
    include_usage: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    quorum: int | None = None
    bid_sats: int | None = None


def _int(value: Any, param: str, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        raise bad_request(f"{param} must be an integer >= {minimum}, not {value!r}", param)
    return value


def _number(value: Any, param: str) -> float:
    if type(value) not in (int, float):
        raise bad_request(f"{param} must be a number, not {value!r}", param)
    return float(value)


def _content_text(content: Any, i: int) -> str:
    """A message's content as text: a string, or the text parts of a content list."""
    if type(content) is str:
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                text = part.get("text")
                if type(text) is str:
                    parts.append(text)
                    continue
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise bad_request(
                f"messages[{i}].content: only text parts are supported, not {kind!r}",
                f"messages[{i}].content",
            )
        return "".join(parts)
    raise bad_request(f"messages[{i}].content must be a string or a list of parts", "messages")


def _messages(value: Any) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise bad_request("messages must be a non-empty array", "messages")
    out: list[Message] = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise bad_request(f"messages[{i}] must be an object", "messages")
        role = m.get("role")
        if type(role) is not str or role not in _ROLES:
            raise bad_request(f"messages[{i}].role must be one of {sorted(_ROLES)}", "messages")
        if role == "developer":
            role = "system"  # OpenAI's newer name for it; local servers know only "system"
        content = m.get("content")
        msg: Message = {
            "role": role,
            "content": content if type(content) is str else _content_text(content, i),
        }
        name = m.get("name")
        if type(name) is str:
            msg["name"] = name
        out.append(msg)
    return out


def _prompt(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, list) and len(value) == 1 and type(value[0]) is str:
        return value[0]
    if isinstance(value, list) and all(type(v) is str for v in value):
        raise bad_request("only one prompt per request is supported", "prompt")
    raise bad_request("prompt must be a string", "prompt")


def _header_int(headers: Any, header: str, minimum: int) -> int | None:
    raw = headers.get(header) if headers is not None else None
    if raw is None:
        return None
    try:
        parsed = int(raw)
    except ValueError:
        raise bad_request(f"header {header} must be an integer, not {raw!r}", header) from None
    return _int(parsed, header, minimum)


_NUMBERS = frozenset({"temperature", "top_p", "presence_penalty", "frequency_penalty"})
_PASS = frozenset(PASSTHROUGH)
_OTHER = frozenset({"n", "stream", "stream_options", "tools", "functions", "quorum", "bid_sats"})


def parse_request(
    body: Any, *, chat: bool, default_max_tokens: int, headers: Any = None
) -> CompletionRequest:
    """Validate a request body (already JSON-decoded) into a :class:`CompletionRequest`.

    ``headers`` (a mapping) supplies ``x-swarm-quorum`` / ``x-swarm-bid-sats`` when the body has
    no ``quorum`` / ``bid_sats``. Raises ApiError (400) naming the bad parameter.
    """
    if type(body) is not dict:
        raise bad_request("the request body must be a JSON object")
    model = body.get("model")
    if type(model) is not str or not model:
        raise bad_request("model is required (a non-empty string)", "model")
    if len(model) > MAX_MODEL_NAME or len(model.encode()) > MAX_MODEL_NAME:
        raise bad_request(f"model names are at most {MAX_MODEL_NAME} bytes", "model")
    prompt: str | list[Message]
    prompt = _messages(body.get("messages")) if chat else _prompt(body.get("prompt"))
    max_tokens = body.get("max_completion_tokens")
    param = "max_completion_tokens"
    if max_tokens is None:
        max_tokens, param = body.get("max_tokens"), "max_tokens"
    max_tokens = default_max_tokens if max_tokens is None else _int(max_tokens, param, 1)
    stream = include_usage = False
    quorum = bid = None
    params: dict[str, Any] = {}
    # One pass over what the client sent (usually a handful of keys) instead of a lookup per
    # parameter we know.
    for key, value in body.items():
        if value is None:
            continue
        if key in _PASS:
            if key in _NUMBERS:
                _number(value, key)
            elif key == "stop" and not (
                type(value) is str or (type(value) is list and all(type(s) is str for s in value))
            ):
                raise bad_request("stop must be a string or an array of strings", "stop")
            params[key] = value
        elif key not in _OTHER:
            continue
        elif key == "stream":
            if type(value) is not bool:
                raise bad_request("stream must be a boolean", "stream")
            stream = value
        elif key == "stream_options":
            if type(value) is not dict:
                raise bad_request("stream_options must be an object", "stream_options")
            include_usage = value.get("include_usage") is True
        elif key == "n":
            if value != 1:
                raise bad_request("only n=1 is supported", "n")
        elif key == "quorum":
            quorum = _int(value, key, 1)
        elif key == "bid_sats":
            bid = _int(value, key, 0)
        elif chat and value:  # tools / functions
            raise bad_request("tool and function calls are not supported", "tools")
    if headers is not None:
        if quorum is None:
            quorum = _header_int(headers, "x-swarm-quorum", 1)
        if bid is None:
            bid = _header_int(headers, "x-swarm-bid-sats", 0)
    return CompletionRequest(
        chat, model, prompt, max_tokens, stream, include_usage, params, quorum, bid
    )


def usage_dict(u: LmUsage) -> dict[str, Any]:
    """OpenAI's usage object, plus ``cost_usd``/``cost_sats`` when known."""
    out: dict[str, Any] = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }
    if u.cost_usd is not None:
        out["cost_usd"] = u.cost_usd
    if u.cost_sats is not None:
        out["cost_sats"] = u.cost_sats
    return out


def completion_body(req: CompletionRequest, resp: LmResponse, model: str) -> dict[str, Any]:
    """The non-streamed answer: a ``chat.completion`` or a ``text_completion``."""
    finish = resp.finish_reason or "stop"
    if req.chat:
        return {
            "id": new_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": resp.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": usage_dict(resp.usage),
            "system_fingerprint": None,
        }
    return {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": resp.text, "logprobs": None, "finish_reason": finish}],
        "usage": usage_dict(resp.usage),
        "system_fingerprint": None,
    }


def _usage_json(u: LmUsage) -> str:
    out = (
        f'{{"prompt_tokens":{u.prompt_tokens},"completion_tokens":{u.completion_tokens},'
        f'"total_tokens":{u.total_tokens}'
    )
    if u.cost_usd is not None:
        out += f',"cost_usd":{json.dumps(u.cost_usd)}'
    if u.cost_sats is not None:
        out += f',"cost_sats":{int(u.cost_sats)}'
    return out + "}"


def completion_json(chat: bool, resp: LmResponse, model: str) -> bytes:
    """:func:`completion_body` serialized, built from string pieces: only the text, model and
    finish reason go through ``json.dumps`` (this runs once per request)."""
    finish = json.dumps(resp.finish_reason or "stop")
    text = json.dumps(resp.text)
    head = (
        f'{{"id":"{new_id("chatcmpl" if chat else "cmpl")}",'
        f'"object":"{"chat.completion" if chat else "text_completion"}",'
        f'"created":{int(time.time())},"model":{json.dumps(model)},"choices":[{{"index":0,'
    )
    if chat:
        choice = f'"message":{{"role":"assistant","content":{text},"refusal":null}},'
    else:
        choice = f'"text":{text},'
    tail = (
        f'"logprobs":null,"finish_reason":{finish}}}],"usage":{_usage_json(resp.usage)},'
        '"system_fingerprint":null}'
    )
    return (head + choice + tail).encode()


def model_list(models: list[tuple[str, str]], created: int) -> dict[str, Any]:
    """``GET /v1/models``: ``models`` is (id, owner) pairs."""
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": created, "owned_by": owner}
            for m, owner in models
        ],
    }


def not_found_model(model: str) -> ApiError:
    return ApiError(
        404,
        f"The model '{model}' does not exist or no backend serves it",
        param="model",
        code="model_not_found",
    )
