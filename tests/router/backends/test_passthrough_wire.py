"""The pure parts of the chat API pass-through: OpenAI's wire (bodies with drop_params, answer
extras, streamed tool-call deltas), Ollama's mapping, the gateway's encoders, and the native
/v1/completions fallback of OpenAICompatBackend against the fake upstream."""

from __future__ import annotations

import json
from typing import Any

import pytest

from router.backends.ollama_wire import chat_messages, request_body, tool_calls
from router.backends.openai_compat import OpenAICompatBackend
from router.backends.openai_wire import (
    answer_extras,
    chat_body,
    embeddings_body,
    parse_stream_data,
    text_body,
)
from router.errors import BackendError, InvalidRequest
from router.gateway.protocol import completion_json, embedding_json, parse_embedding_request
from router.gateway.sse import ChunkEncoder
from router.types import EmbeddingInput, LmResponse, LmUsage, StreamChunk, TextPrompt
from tests.support.upstreams import FakeOpenAI


def test_bodies_pass_every_parameter_but_the_dropped_and_reserved() -> None:
    params = {"tools": [{"type": "function"}], "top_k": 3, "metadata": {"a": 1}, "model": "x"}
    drop = frozenset({"metadata"})
    msgs: list[Any] = [{"role": "tool", "tool_call_id": "c1", "content": "1"}]
    body = chat_body("m", msgs, 5, params, drop=drop)
    assert body == {
        "tools": [{"type": "function"}],
        "top_k": 3,
        "model": "m",
        "messages": msgs,
        "max_tokens": 5,
    }
    assert text_body("m", TextPrompt("p"), 5, params, stream=True, include_usage=True) == {
        "tools": [{"type": "function"}],
        "top_k": 3,
        "metadata": {"a": 1},
        "model": "m",
        "prompt": "p",
        "max_tokens": 5,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert embeddings_body("e", [[1, 2]], {"dimensions": 2, "input": "no"}) == {
        "dimensions": 2,
        "model": "e",
        "input": [[1, 2]],
    }


def test_answer_extras_keep_tool_calls_and_logprobs_only_when_there() -> None:
    plain = {"choices": [{"message": {"role": "assistant", "content": "hi", "refusal": None}}]}
    assert answer_extras(plain) == (None, None)
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    rich = {
        "choices": [
            {
                "message": {"role": "assistant", "content": None, "tool_calls": calls},
                "logprobs": {"content": []},
            }
        ]
    }
    assert answer_extras(rich) == ({"content": None, "tool_calls": calls}, {"content": []})


def test_streamed_tool_call_deltas_become_chunks() -> None:
    data = json.dumps(
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}}]}
    )
    chunk = parse_stream_data(data, "b")
    assert isinstance(chunk, StreamChunk) and chunk.text == ""
    assert chunk.delta == {"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}
    role_only = json.dumps({"choices": [{"delta": {"role": "assistant", "content": ""}}]})
    assert parse_stream_data(role_only, "b") is None


def test_the_gateway_encodes_rich_answers_and_chunks() -> None:
    extra = {"content": None, "tool_calls": [{"id": "c"}]}
    resp = LmResponse("", LmUsage.of(1, 2), "m", "tool_calls", extra=extra, logprobs={"x": 1})
    body = json.loads(completion_json(True, resp, "m"))
    choice = body["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [{"id": "c"}],
    }
    assert choice["logprobs"] == {"x": 1} and choice["finish_reason"] == "tool_calls"
    enc = ChunkEncoder(chat=True, model="m", include_usage=False)
    event = enc.rich(StreamChunk("", delta={"tool_calls": [{"index": 0}]}))
    payload = json.loads(event.decode()[len("data: ") :])
    assert payload["choices"][0]["delta"] == {"tool_calls": [{"index": 0}]}
    assert payload["choices"][0]["finish_reason"] is None


def test_embedding_requests_and_answers() -> None:
    req = parse_embedding_request({"model": "e", "input": ["a", "b"], "dimensions": 8})
    assert isinstance(req.prompt, EmbeddingInput) and req.prompt.input == ["a", "b"]
    assert req.passthrough == {"dimensions": 8} and not req.stream
    # what the backend sets itself is not passed on; a sampling option is typed
    other = parse_embedding_request({"model": "e", "input": "a", "stream": True, "seed": 2})
    assert other.passthrough == {} and other.sampling.seed == 2
    resp = LmResponse("", LmUsage.of(4, 0, cost_usd=0.5), "e", extra={"data": [{"index": 0}]})
    assert json.loads(embedding_json(resp, "e")) == {
        "object": "list",
        "data": [{"index": 0}],
        "model": "e",
        "usage": {"prompt_tokens": 4, "total_tokens": 4, "cost_usd": 0.5},
    }


def test_ollama_refuses_what_it_cannot_honour_by_name() -> None:
    with pytest.raises(InvalidRequest, match="'logprobs'"):
        request_body(
            "m", None, [{"role": "user", "content": "x"}], 5, {"logprobs": True}, stream=False
        )
    body = request_body("m", "p", None, 5, {"tools": [1], "tool_choice": "none"}, stream=False)
    assert "tools" not in body  # tool_choice none: the same request without tools
    with pytest.raises(InvalidRequest, match="arguments are not JSON"):
        chat_messages(
            [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"function": {"name": "f", "arguments": "{nope"}}],
                }
            ]
        )


def test_ollama_tool_calls_get_openai_ids_and_json_arguments() -> None:
    obj = {"message": {"tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}}
    assert tool_calls(obj, "call_x", 2) == [
        {
            "index": 2,
            "id": "call_x_2",
            "type": "function",
            "function": {"name": "f", "arguments": '{"a": 1}'},
        }
    ]
    assert tool_calls({"message": {"content": "hi"}}, "p") == []


async def test_the_completions_fallback_is_per_backend_and_learned_once() -> None:
    async with FakeOpenAI(models=["m"], serve_completions=False, reply="r") as up:
        b = OpenAICompatBackend(up.base_url)
        try:
            assert b.serves_completions is None
            assert (await b.complete("m", TextPrompt("a"), 5)).text == "r"
            assert b.serves_completions is False
            # a plain string is a chat turn, as it always was
            assert (await b.complete("m", "b", 5)).text == "r"
        finally:
            await b.close()
        paths = [r.path for r in up.requests]
        assert paths == ["/v1/completions", "/v1/chat/completions", "/v1/chat/completions"]
    async with FakeOpenAI(models=["m"], serve_chat=False, serve_completions=False) as up:
        b = OpenAICompatBackend(up.base_url)
        try:
            with pytest.raises(BackendError) as e:
                await b.complete("m", TextPrompt("a"), 5)
            assert e.value.status == 404
            assert b.serves_completions is None  # chat failed too: nothing learned
        finally:
            await b.close()
