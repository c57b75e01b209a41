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

from ..request import (
    NO_SAMPLING,
    RESERVED_FIELDS,
    SAMPLING_FIELDS,
    SWARM_BODY_FIELDS,
    LimitName,
    LmRequest,
    Sampling,
)
from ..types import EmbeddingInput, LmResponse, LmUsage, Message, SwarmOutcome, TextPrompt
from .errors import ApiError, bad_request

#: OpenAI request fields the gateway does not read itself and that are not sampling options
#: (chat, text completions, embeddings). Every backend but the swarm gets them in
#: ``LmRequest.passthrough`` (with any other field: local servers have extensions of their own);
#: the swarm refuses them by name (a NIP-90 job carries text only), and refuses a field outside
#: this set as unknown: on a swarm model an unknown field is a misspelled term, never a
#: parameter to pass on.
OPENAI_FIELDS = frozenset(
    {
        "audio", "best_of", "dimensions", "echo", "encoding_format", "function_call",
        "functions", "logit_bias", "logprobs", "metadata", "modalities", "parallel_tool_calls",
        "prediction", "prompt_cache_key", "reasoning_effort", "response_format",
        "safety_identifier", "service_tier", "store", "suffix", "tool_choice", "tools",
        "top_logprobs", "user", "verbosity", "web_search_options",
    }
)  # fmt: skip
#: The swarm's own request fields (also as headers ``x-swarm-quorum``, ``x-swarm-bid-sats``,
#: ``x-swarm-comparator``).
SWARM_FIELDS = SWARM_BODY_FIELDS
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
    """One parsed ``/v1/chat/completions``, ``/v1/completions`` or ``/v1/embeddings`` request."""

    chat: bool
    model: str
    prompt: str | list[Message]
    max_tokens: int
    stream: bool = False
    include_usage: bool = False
    sampling: Sampling = NO_SAMPLING
    #: The body's other fields, for the backend (``LmRequest.passthrough``).
    passthrough: dict[str, Any] = field(default_factory=dict)
    #: The name the caller gave the token limit (sent to chat upstreams under it).
    max_tokens_field: LimitName = "max_tokens"
    quorum: int | None = None
    bid_sats: int | None = None
    #: The swarm's comparator by name (``auto``, ``semantic``, ``claims``, ``exact``, ...).
    comparator: str | None = None

    def lm_request(self, model: str) -> LmRequest:
        """What the router is asked for ``model`` (the request's, or one of its fallbacks),
        without swarm terms (the gateway adds them once it has reserved their budget)."""
        return LmRequest(
            model,
            self.prompt,
            self.max_tokens,
            sampling=self.sampling,
            passthrough=self.passthrough,
            max_tokens_field=self.max_tokens_field,
        )


def _int(value: Any, param: str, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        raise bad_request(f"{param} must be an integer >= {minimum}, not {value!r}", param)
    return value


def _number(value: Any, param: str) -> float:
    if type(value) not in (int, float):
        raise bad_request(f"{param} must be a number, not {value!r}", param)
    return float(value)


def _check_content(content: Any, i: int) -> None:
    """Content is a string, null, or a list of parts (objects with a string ``type``; ``text``
    parts with a string ``text``). Parts of other types (images, audio, files) are passed on
    as they are: whether the backend can take them is the backend's to say."""
    if isinstance(content, list):
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if type(kind) is not str or (kind == "text" and type(part.get("text")) is not str):
                raise bad_request(
                    f"messages[{i}].content[{j}] must be a content part object with a string "
                    "'type' (and a string 'text' for text parts)",
                    f"messages[{i}].content",
                )
    elif content is not None:
        raise bad_request(
            f"messages[{i}].content must be a string, null or a list of parts", "messages"
        )


def _check_tool_calls(value: Any, i: int) -> None:
    if not isinstance(value, list) or not all(
        isinstance(c, dict) and isinstance(c.get("function", {}), dict) for c in value
    ):
        raise bad_request(
            f"messages[{i}].tool_calls must be an array of tool call objects",
            f"messages[{i}].tool_calls",
        )


def _messages(value: Any) -> list[Message]:
    """The messages, checked and passed on as sent: every field (``tool_calls``,
    ``tool_call_id``, ``name``, content parts, ...) reaches the upstream unchanged. Only
    ``developer`` becomes ``system`` (local servers know no other name for it)."""
    if not isinstance(value, list) or not value:
        raise bad_request("messages must be a non-empty array", "messages")
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise bad_request(f"messages[{i}] must be an object", "messages")
        role = m.get("role")
        if type(role) is not str or role not in _ROLES:
            raise bad_request(f"messages[{i}].role must be one of {sorted(_ROLES)}", "messages")
        if type(m.get("content")) is not str:
            _check_content(m.get("content"), i)
        if len(m) > 2:  # the usual {"role", "content"} needs no more checks
            calls = m.get("tool_calls")
            if calls is not None:
                _check_tool_calls(calls, i)
            if role == "tool" and type(m.get("tool_call_id")) is not str:
                raise bad_request(
                    f"messages[{i}].tool_call_id is required (a string) for tool messages",
                    f"messages[{i}].tool_call_id",
                )
        elif role == "tool":
            raise bad_request(
                f"messages[{i}].tool_call_id is required (a string) for tool messages",
                f"messages[{i}].tool_call_id",
            )
        if role == "developer":
            value[i] = {**m, "role": "system"}
    return value


def _prompt(value: Any) -> str:
    if type(value) is str:
        return TextPrompt(value)
    if isinstance(value, list) and len(value) == 1 and type(value[0]) is str:
        return TextPrompt(value[0])
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


_NUMBERS = frozenset(
    {"temperature", "top_p", "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty"}
)
_SAMPLING = frozenset(SAMPLING_FIELDS)
_OTHER = frozenset({"n", "stream", "stream_options", "tools", "tool_choice", *SWARM_FIELDS})
# Read by the gateway itself or set by the backend, never passed on as parameters (``input``
# is an embedding request's; ``prompt`` and ``messages`` the other endpoint's).
_OWN = frozenset({"model", "messages", "prompt", "input", "max_tokens", "max_completion_tokens"})


def _sampling_value(key: str, value: Any) -> Any:
    """``value`` for the sampling option ``key``, checked (400 naming it otherwise)."""
    if key in _NUMBERS:
        _number(value, key)
    elif key == "stop":
        if not (type(value) is str or (type(value) is list and all(type(s) is str for s in value))):
            raise bad_request("stop must be a string or an array of strings", "stop")
    elif key == "top_k":
        _int(value, key, 0)
    elif type(value) is not int:  # seed
        raise bad_request(f"{key} must be an integer, not {value!r}", key)
    return value


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
    limit: LimitName = "max_completion_tokens"
    if max_tokens is None:
        max_tokens, limit = body.get("max_tokens"), "max_tokens"
    max_tokens = default_max_tokens if max_tokens is None else _int(max_tokens, limit, 1)
    if not chat:
        limit = "max_tokens"  # the only name /v1/completions knows
    stream = include_usage = False
    quorum = bid = None
    comparator: str | None = None
    params: dict[str, Any] = {}
    sampling: dict[str, Any] | None = None
    # One pass over what the client sent (usually a handful of keys) instead of a lookup per
    # parameter we know.
    for key, value in body.items():
        if value is None:
            continue
        if key in _SAMPLING:
            if sampling is None:
                sampling = {}
            sampling[key] = _sampling_value(key, value)
        elif key not in _OTHER:
            if key not in _OWN:
                params[key] = value  # not read by the gateway: the backend decides
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
        elif key == "comparator":
            if type(value) is not str or not value or len(value) > 64:
                raise bad_request("comparator must be a comparator's name", "comparator")
            comparator = value
        elif key == "tools":
            if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
                raise bad_request("tools must be an array of tool objects", "tools")
            params[key] = value
        else:  # tool_choice
            if type(value) is not str and not isinstance(value, dict):
                raise bad_request("tool_choice must be a string or an object", "tool_choice")
            params[key] = value
    if headers is not None:
        if quorum is None:
            quorum = _header_int(headers, "x-swarm-quorum", 1)
        if bid is None:
            bid = _header_int(headers, "x-swarm-bid-sats", 0)
        if comparator is None:
            comparator = headers.get("x-swarm-comparator") or None
    return CompletionRequest(
        chat,
        model,
        prompt,
        max_tokens,
        stream,
        include_usage,
        NO_SAMPLING if sampling is None else Sampling(**sampling),
        params,
        limit,
        quorum,
        bid,
        comparator,
    )


def swarm_verdict(outcome: SwarmOutcome) -> dict[str, Any]:
    """A streamed swarm answer's verdict, sent as ``delta.swarm`` in its last chunk."""
    return {
        "verdict": "agreed",
        "agreeing": list(outcome.agreeing),
        "dissenting": list(outcome.dissenting),
        "job_id": outcome.job_id,
        "comparator": outcome.comparator_note,
    }


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
                    "message": _message(resp),
                    "logprobs": resp.logprobs,
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
        "choices": [
            {"index": 0, "text": resp.text, "logprobs": resp.logprobs, "finish_reason": finish}
        ],
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


def _message(resp: LmResponse) -> dict[str, Any]:
    """The answer's message: the text, and whatever else the upstream's message held
    (``tool_calls``, ``refusal``, ``content: null``, ...) unchanged."""
    msg: dict[str, Any] = {"role": "assistant", "content": resp.text, "refusal": None}
    if resp.extra:
        msg.update(resp.extra)
    return msg


def completion_json(chat: bool, resp: LmResponse, model: str) -> bytes:
    """:func:`completion_body` serialized, built from string pieces: only the text, model and
    finish reason go through ``json.dumps`` (this runs once per request)."""
    finish = json.dumps(resp.finish_reason or "stop")
    if resp.extra is not None or resp.logprobs is not None:
        return _rich_json(chat, resp, model, finish)
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


def _rich_json(chat: bool, resp: LmResponse, model: str, finish: str) -> bytes:
    """An answer with more than text (tool calls, logprobs): the choice as one dumps."""
    choice: dict[str, Any] = {"index": 0}
    if chat:
        choice["message"] = _message(resp)
    else:
        choice["text"] = resp.text
    choice["logprobs"] = resp.logprobs
    head = (
        f'{{"id":"{new_id("chatcmpl" if chat else "cmpl")}",'
        f'"object":"{"chat.completion" if chat else "text_completion"}",'
        f'"created":{int(time.time())},"model":{json.dumps(model)},"choices":['
    )
    tail = f'],"usage":{_usage_json(resp.usage)},"system_fingerprint":null}}'
    return (head + json.dumps(choice)[:-1] + f',"finish_reason":{finish}}}' + tail).encode()


# --- embeddings ------------------------------------------------------------------------------


def _embedding_input(value: Any) -> tuple[str, Any]:
    """(text for token estimates, the input as sent): a string, an array of strings, an array
    of token ids or an array of token-id arrays."""
    if type(value) is str:
        return value, value
    if isinstance(value, list) and value:
        if all(type(v) is str for v in value):
            return "\n".join(value), value
        if all(type(v) is int for v in value):
            return " ".join(map(str, value)), value
        if all(isinstance(v, list) and v and all(type(t) is int for t in v) for v in value):
            return "\n".join(" ".join(map(str, v)) for v in value), value
    raise bad_request(
        "input must be a string, an array of strings, or an array of token arrays", "input"
    )


def parse_embedding_request(body: Any) -> CompletionRequest:
    """A ``/v1/embeddings`` request, as a :class:`CompletionRequest` whose prompt is an
    :class:`~router.types.EmbeddingInput`. Every other field (``encoding_format``,
    ``dimensions``, ``user``, ...) is passed on unchanged."""
    if type(body) is not dict:
        raise bad_request("the request body must be a JSON object")
    model = body.get("model")
    if type(model) is not str or not model:
        raise bad_request("model is required (a non-empty string)", "model")
    if len(model) > MAX_MODEL_NAME or len(model.encode()) > MAX_MODEL_NAME:
        raise bad_request(f"model names are at most {MAX_MODEL_NAME} bytes", "model")
    text, value = _embedding_input(body.get("input"))
    params: dict[str, Any] = {}
    sampling: dict[str, Any] = {}
    for key, v in body.items():
        if v is None:
            continue
        if key in _SAMPLING:
            sampling[key] = _sampling_value(key, v)
        elif key not in RESERVED_FIELDS:  # the backend sets those itself
            params[key] = v
    # max_tokens 1: an embedding generates nothing; the router wants a positive number
    return CompletionRequest(
        False,
        model,
        EmbeddingInput(text, value),
        1,
        sampling=Sampling(**sampling) if sampling else NO_SAMPLING,
        passthrough=params,
    )


def embedding_json(resp: LmResponse, model: str) -> bytes:
    """OpenAI's embeddings answer: the upstream's ``data`` unchanged, the usage with costs."""
    data = (resp.extra or {}).get("data", [])
    u = resp.usage
    usage = usage_dict(u)
    usage.pop("completion_tokens", None)
    body = {"object": "list", "data": data, "model": model, "usage": usage}
    return json.dumps(body).encode()


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
