"""What backends that are not OpenAI-compatible do with the full chat API, through the gateway
and the openai client: Ollama (the fake of tests/support/upstreams.py on 127.0.0.1) maps tools,
tool-call histories, response_format and sampling names to its own API and refuses the rest
with a 400 naming the parameter; the swarm refuses whatever a NIP-90 job cannot carry."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from relay_mock import Relay
from tests.support.gateway import client, gateway, user
from tests.support.upstreams import FakeOllama

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
OLLAMA_CALLS = [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]


@pytest.fixture
async def ollama() -> AsyncIterator[FakeOllama]:
    async with FakeOllama(models=["llama3:latest"], reply="fine", tool_calls=OLLAMA_CALLS) as s:
        yield s


def one(up: FakeOllama) -> dict[str, Any]:
    return {"backends": [{"name": "ollama", "type": "ollama", "url": up.base_url}]}


async def test_ollama_tool_calls_come_back_in_openais_shape(ollama: FakeOllama) -> None:
    async with gateway(one(ollama)) as gw:
        resp = await client(gw).chat.completions.create(
            model="llama3", messages=user("weather?"), tools=TOOLS, tool_choice="auto"
        )
    sent = ollama.requests[-1].json
    assert sent["tools"] == TOOLS and "tool_choice" not in sent
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


async def test_ollama_streamed_tool_calls_are_deltas(ollama: FakeOllama) -> None:
    async with gateway(one(ollama)) as gw:
        stream = await client(gw).chat.completions.create(
            model="llama3", messages=user("weather?"), tools=TOOLS, stream=True
        )
        calls: list[Any] = []
        finish = None
        async for chunk in stream:
            if chunk.choices:
                calls += chunk.choices[0].delta.tool_calls or []
                finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [(c.index, c.function.name) for c in calls] == [(0, "get_weather")]
    assert calls[0].function is not None and calls[0].function.arguments is not None
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}


async def test_a_tool_call_history_is_mapped_to_ollamas_messages(ollama: FakeOllama) -> None:
    history: list[Any] = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": "21 C"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "and this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
    ]
    async with gateway(one(ollama)) as gw:
        resp = await client(gw).chat.completions.create(model="llama3", messages=history)
    assert resp.choices[0].message.content == "fine"
    assert ollama.requests[-1].json["messages"] == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "21 C", "tool_name": "get_weather"},
        {"role": "user", "content": "and this?", "images": ["AAAA"]},
    ]


async def test_ollama_gets_openais_names_in_its_own_terms(ollama: FakeOllama) -> None:
    async with gateway(one(ollama)) as gw:
        await client(gw).chat.completions.create(
            model="llama3",
            messages=user("hi"),
            max_tokens=7,
            temperature=0.5,
            seed=3,
            user="alice",
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object"}},
            },
            extra_body={"top_k": 20, "min_p": 0.1, "repetition_penalty": 1.2, "num_ctx": 4096},
        )
        await client(gw).chat.completions.create(
            model="llama3", messages=user("hi"), response_format={"type": "json_object"}
        )
    first, second = (r.json for r in ollama.requests if r.path == "/api/chat")
    assert first["format"] == {"type": "object"} and second["format"] == "json"
    assert first["options"] == {
        "temperature": 0.5,
        "seed": 3,
        "top_k": 20,
        "min_p": 0.1,
        "repeat_penalty": 1.2,
        "num_ctx": 4096,
        "num_predict": 7,
    }
    assert "user" not in first


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"logprobs": True}, "'logprobs'"),
        ({"extra_body": {"reasoning_effort": "low"}}, "'reasoning_effort'"),
        ({"tool_choice": "required", "tools": TOOLS}, "tool_choice"),
        ({"response_format": {"type": "grammar"}}, "response_format"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                    }
                ]
            },
            "base64 data URLs",
        ),
    ],
)
async def test_what_ollama_cannot_honour_is_a_400_naming_it(
    ollama: FakeOllama, kwargs: dict[str, Any], named: str
) -> None:
    args: dict[str, Any] = {"model": "llama3", "messages": user("hi"), **kwargs}
    async with gateway(one(ollama)) as gw:
        with pytest.raises(openai.BadRequestError) as e:
            await client(gw).chat.completions.create(**args)
    assert named in e.value.message
    assert not [r for r in ollama.requests if r.path == "/api/chat"]  # never sent


def swarm_only(relay: Relay) -> dict[str, Any]:
    return {
        "backends": [{"name": "local", "type": "mock", "models": ["m1"]}],
        "swarm": {"relays": [relay.url], "quorum": 1, "bid_sats": 0, "models": ["m1"]},
    }


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"tools": TOOLS}, "'tools'"),
        ({"logprobs": True}, "'logprobs'"),
        ({"response_format": {"type": "json_object"}}, "'response_format'"),
        ({"stop": ["a", "b"]}, "'stop'"),
        ({"extra_body": {"metadata_blob": {"a": 1}}}, "'metadata_blob'"),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "content": None, "tool_calls": []},
                    {"role": "tool", "tool_call_id": "c", "content": "1"},
                ]
            },
            "tool calls",
        ),
    ],
)
async def test_what_the_swarm_cannot_carry_is_a_400_naming_it(
    relay: Relay, kwargs: dict[str, Any], named: str
) -> None:
    args: dict[str, Any] = {"model": "swarm/m1", "messages": user("hi"), **kwargs}
    async with gateway(swarm_only(relay)) as gw:
        with pytest.raises(openai.BadRequestError) as e:
            await client(gw).chat.completions.create(**args)
    assert named in e.value.message
