"""The full chat API through the gateway to real OpenAI-compatible upstreams on 127.0.0.1 (the
fake of tests/support/upstreams.py), driven by the official openai client where it can express the
call: tools and tool-call histories, streamed tool calls, logprobs and unknown parameters passed
on unchanged, ``drop_params``, native ``/v1/completions`` with the chat fallback, and
``/v1/embeddings``."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from tests.support.gateway import client, gateway, user
from tests.support.upstreams import FakeOpenAI

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
CALLS = [
    {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "C"}'},
    }
]


@pytest.fixture
async def up() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(models=["gpt-fake"], reply="sunny and warm", tool_calls=CALLS) as s:
        yield s


def one(up: FakeOpenAI, **backend: Any) -> dict[str, Any]:
    return {"backends": [{"name": "up", "url": up.base_url, **backend}]}


def sent(up: FakeOpenAI, path: str = "/v1/chat/completions") -> dict[str, Any]:
    bodies = [r.json for r in up.requests if r.path == path]
    assert bodies, f"nothing reached {path}"
    return bodies[-1]


async def test_tools_and_the_answers_tool_calls_pass_unchanged(up: FakeOpenAI) -> None:
    async with gateway(one(up)) as gw:
        resp = await client(gw).chat.completions.create(
            model="gpt-fake",
            messages=user("weather in Paris?"),
            tools=TOOLS,  # type: ignore[arg-type]
            tool_choice="auto",
            parallel_tool_calls=False,
        )
    body = sent(up)
    assert body["tools"] == TOOLS
    assert body["tool_choice"] == "auto" and body["parallel_tool_calls"] is False
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert (call.id, call.type) == ("call_1", "function")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "C"}


async def test_a_tool_call_history_reaches_the_upstream_unchanged(up: FakeOpenAI) -> None:
    history: list[Any] = [
        {"role": "system", "content": "You answer about weather."},
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]},
        {"role": "assistant", "content": None, "tool_calls": CALLS},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    ]
    async with gateway(one(up)) as gw:
        resp = await client(gw).chat.completions.create(model="gpt-fake", messages=history)
    assert sent(up)["messages"] == history
    assert resp.choices[0].message.content == "sunny and warm"
    assert resp.choices[0].finish_reason == "stop"


async def test_content_parts_of_every_type_are_passed_on(up: FakeOpenAI) -> None:
    parts = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    async with gateway(one(up)) as gw:
        await client(gw).chat.completions.create(
            model="gpt-fake",
            messages=[{"role": "user", "content": parts}],  # type: ignore[list-item]
        )
    assert sent(up)["messages"] == [{"role": "user", "content": parts}]


async def test_streamed_tool_calls_are_relayed_as_deltas(up: FakeOpenAI) -> None:
    async with gateway(one(up)) as gw:
        stream = await client(gw).chat.completions.create(
            model="gpt-fake",
            messages=user("weather in Paris?"),
            tools=TOOLS,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        names: list[str] = []
        ids: list[str] = []
        args = ""
        finish = None
        deltas = 0
        usage = None
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                deltas += 1
                assert tc.index == 0
                if tc.id:
                    ids.append(tc.id)
                if tc.function and tc.function.name:
                    names.append(tc.function.name)
                if tc.function and tc.function.arguments:
                    args += tc.function.arguments
    assert ids == ["call_1"] and names == ["get_weather"]
    assert json.loads(args) == {"city": "Paris", "unit": "C"}
    assert deltas > 2  # the arguments arrived in pieces, as the upstream sent them
    assert finish == "tool_calls"
    assert usage is not None and usage.completion_tokens == 1


async def test_logprobs_and_unknown_parameters_are_forwarded_and_returned(up: FakeOpenAI) -> None:
    async with gateway(one(up)) as gw:
        resp = await client(gw).chat.completions.create(
            model="gpt-fake",
            messages=user("hi"),
            logprobs=True,
            top_logprobs=2,
            reasoning_effort="low",
            metadata={"team": "a"},
            response_format={"type": "json_object"},
            extra_body={"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1, "x_custom": [1]},
        )
    body = sent(up)
    expected = {
        "logprobs": True,
        "top_logprobs": 2,
        "reasoning_effort": "low",
        "metadata": {"team": "a"},
        "response_format": {"type": "json_object"},
        "top_k": 40,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "x_custom": [1],
    }
    assert {k: body.get(k) for k in expected} == expected
    lp = resp.choices[0].logprobs
    assert lp is not None and lp.content is not None
    assert [t.token for t in lp.content] == ["sunny", " and", " warm"]
    assert lp.content[0].logprob == -0.25


async def test_streamed_logprobs_are_relayed(up: FakeOpenAI) -> None:
    async with gateway(one(up)) as gw:
        stream = await client(gw).chat.completions.create(
            model="gpt-fake", messages=user("hi"), logprobs=True, stream=True
        )
        text = ""
        tokens: list[str] = []
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                lp = chunk.choices[0].logprobs
                if lp is not None and lp.content:
                    tokens += [t.token for t in lp.content]
    assert text == "sunny and warm"
    assert tokens == ["sunny", " and", " warm"]


async def test_drop_params_keeps_refused_parameters_from_the_upstream() -> None:
    async with FakeOpenAI(models=["m"], reject_params=frozenset({"top_k", "metadata"})) as up:
        async with gateway(one(up)) as gw:
            # without drop_params the upstream's refusal reaches the caller as a 400
            with pytest.raises(openai.BadRequestError) as e:
                await client(gw).chat.completions.create(
                    model="m", messages=user("hi"), extra_body={"top_k": 3}
                )
            assert "top_k" in e.value.message
        async with gateway(one(up, drop_params=["top_k", "metadata"])) as gw:
            resp = await client(gw).chat.completions.create(
                model="m",
                messages=user("hi"),
                metadata={"a": "b"},
                extra_body={"top_k": 3, "min_p": 0.1},
            )
            assert resp.choices[0].message.content == "Echo: hi"
            stream = await client(gw).completions.create(
                model="m", prompt="p", stream=True, extra_body={"top_k": 3}
            )
            assert "".join([c.choices[0].text async for c in stream if c.choices]) == "Echo: p"
        bodies = [r.json for r in up.requests if r.method == "POST"]
        assert "top_k" not in bodies[-1] and "top_k" not in bodies[-2]
        assert "metadata" not in bodies[-2] and bodies[-2]["min_p"] == 0.1


async def test_text_completions_go_to_the_upstreams_completions_endpoint(
    up: FakeOpenAI,
) -> None:
    async with gateway(one(up)) as gw:
        c = client(gw)
        resp = await c.completions.create(model="gpt-fake", prompt="Once", logprobs=1)
        stream = await c.completions.create(model="gpt-fake", prompt="Twice", stream=True)
        streamed = "".join([x.choices[0].text async for x in stream if x.choices])
    assert resp.choices[0].text == "sunny and warm"
    assert resp.choices[0].logprobs is not None
    assert streamed == "sunny and warm"
    posts = [(r.path, r.json.get("prompt")) for r in up.requests if r.method == "POST"]
    assert posts == [("/v1/completions", "Once"), ("/v1/completions", "Twice")]
    assert "logprobs" not in sent(up, "/v1/completions")  # only the first asked for them
    assert up.requests[-2].json["logprobs"] == 1


async def test_a_completions_only_upstream_serves_text_completions() -> None:
    async with FakeOpenAI(models=["base"], reply="a b c", serve_chat=False) as up:
        async with gateway(one(up)) as gw:
            resp = await client(gw).completions.create(model="base", prompt="x", max_tokens=2)
            assert (resp.choices[0].text, resp.choices[0].finish_reason) == ("a b", "length")
            assert resp.usage is not None and resp.usage.completion_tokens == 2


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_only_upstreams_get_text_as_chat_and_it_is_remembered(stream: bool) -> None:
    async with FakeOpenAI(models=["chat"], reply="ok then", serve_completions=False) as up:
        async with gateway(one(up)) as gw:
            c = client(gw)
            for prompt in ("one", "two"):
                if stream:
                    s = await c.completions.create(model="chat", prompt=prompt, stream=True)
                    text = "".join([x.choices[0].text async for x in s if x.choices])
                else:
                    text = (await c.completions.create(model="chat", prompt=prompt)).choices[0].text
                assert text == "ok then"
        paths = [r.path for r in up.requests if r.method == "POST"]
        # the first request found out; the second went to chat at once
        assert paths == ["/v1/completions", "/v1/chat/completions", "/v1/chat/completions"]
        assert up.requests[-1].json["messages"] == [{"role": "user", "content": "two"}]


async def test_an_unknown_model_on_text_completions_is_404_and_not_remembered() -> None:
    async with FakeOpenAI(models=["known"], strict_models=True) as up:
        data = {"backends": [{"name": "up", "url": up.base_url}], "default_backend": "up"}
        async with gateway(data) as gw:
            with pytest.raises(openai.NotFoundError):
                await client(gw).completions.create(model="nope", prompt="x")
            resp = await client(gw).completions.create(model="known", prompt="x")
            assert resp.choices[0].text == "Echo: x"
        paths = [r.path for r in up.requests if r.method == "POST"]
        assert paths[-1] == "/v1/completions"  # still asked natively


async def test_embeddings_route_like_chat_with_usage_and_cost(up: FakeOpenAI) -> None:
    data = one(up, cost_per_1k_input_usd=1.0)
    async with gateway(data) as gw:
        c = client(gw)
        floats = await c.embeddings.create(
            model="gpt-fake", input=["hello world", "hi"], encoding_format="float"
        )
        # the openai client asks for base64 by default and decodes it itself
        default = await c.embeddings.create(model="gpt-fake", input="abc", dimensions=3)
        raw = await c.embeddings.with_raw_response.create(model="gpt-fake", input="x y z")
        async with aiohttp.ClientSession() as s:
            async with s.get(gw.url + "/v1/usage") as r:
                report = await r.json()
    assert [d.embedding for d in floats.data] == [[11.0, 0.0, 0.5], [2.0, 1.0, 0.5]]
    assert floats.usage.prompt_tokens == 3 and floats.usage.total_tokens == 3
    assert default.data[0].embedding == pytest.approx([3.0, 0.0, 0.5])
    embeds = [r.json for r in up.requests if r.path == "/v1/embeddings"]
    assert embeds[0]["input"] == ["hello world", "hi"]
    assert embeds[1]["encoding_format"] == "base64" and embeds[1]["dimensions"] == 3
    assert raw.headers["x-swarm-backend"] == "up"
    assert float(raw.headers["x-swarm-cost-usd"]) == pytest.approx(0.003)
    assert report["by_backend"]["up"]["call_count"] == 3
    assert report["by_backend"]["up"]["prompt_tokens"] == 3 + 1 + 3


async def test_embeddings_keep_base64_and_token_inputs_unchanged(up: FakeOpenAI) -> None:
    async with gateway(one(up)) as gw, aiohttp.ClientSession() as s:
        body = {"model": "gpt-fake", "input": [[1, 2, 3]], "encoding_format": "base64"}
        async with s.post(gw.url + "/v1/embeddings", json=body) as r:
            assert r.status == 200
            answer = await r.json()
    vector = struct.unpack("<3f", base64.b64decode(answer["data"][0]["embedding"]))
    assert vector == (5.0, 0.0, 0.5)
    assert answer["object"] == "list" and answer["model"] == "gpt-fake"
    assert sent(up, "/v1/embeddings")["input"] == [[1, 2, 3]]


@pytest.mark.parametrize(
    "body",
    [{"model": "m1"}, {"model": "m1", "input": 5}, {"model": "m1", "input": [1, "a"]}, {}],
)
async def test_bad_embedding_requests_get_400_naming_the_field(body: dict[str, Any]) -> None:
    data = {"backends": [{"name": "mock", "type": "mock", "models": ["m1"]}]}
    async with gateway(data) as gw, aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/v1/embeddings", json=body) as r:
            assert r.status == 400
            err = (await r.json())["error"]
    assert err["param"] in ("input", "model")


async def test_backends_that_cannot_embed_answer_400() -> None:
    data = {"backends": [{"name": "mock", "type": "mock", "models": ["m1"]}]}
    async with gateway(data) as gw:
        with pytest.raises(openai.BadRequestError) as e:
            await client(gw).embeddings.create(model="m1", input="x")
    assert "cannot compute embeddings" in e.value.message


async def test_tool_definitions_count_in_a_keys_reservation() -> None:
    data = {
        "backends": [
            {"name": "mock", "type": "mock", "models": ["m1"], "cost_per_1k_input_usd": 1.0}
        ],
        "keys": [{"name": "alice", "key": "sk-alice", "budget_usd": 0.5}],
    }
    big = [{**TOOLS[0], "function": {**TOOLS[0]["function"], "description": "x" * 600}}]
    async with gateway(data) as gw:
        c = client(gw, "sk-alice")
        ok = await c.chat.completions.create(model="m1", messages=user("hi"), max_tokens=1)
        assert ok.choices[0].message.content
        # the same request with 600 bytes of tool definitions may cost more than is left
        with pytest.raises(openai.RateLimitError) as e:
            await c.chat.completions.create(
                model="m1",
                messages=user("hi"),
                max_tokens=1,
                tools=big,  # type: ignore[arg-type]
            )
    assert e.value.code == "insufficient_quota"


async def test_max_completion_tokens_reaches_the_upstream_under_its_own_name(
    up: FakeOpenAI,
) -> None:
    async with gateway(one(up)) as gw:
        c = client(gw)
        await c.chat.completions.create(
            model="gpt-fake", messages=user("a"), max_completion_tokens=2
        )
        newer = sent(up)
        await c.chat.completions.create(model="gpt-fake", messages=user("b"), max_tokens=3)
        older = sent(up)
        await c.completions.create(
            model="gpt-fake", prompt="c", extra_body={"max_completion_tokens": 4}
        )
        text = sent(up, "/v1/completions")
    # newer OpenAI models refuse max_tokens; the caller's choice of name is kept
    assert newer["max_completion_tokens"] == 2 and "max_tokens" not in newer
    assert older["max_tokens"] == 3 and "max_completion_tokens" not in older
    assert text["max_tokens"] == 4 and "max_completion_tokens" not in text
