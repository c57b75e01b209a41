"""The fake upstreams themselves speak the wire formats other tests rely on."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.support.upstreams import FakeOllama, FakeOpenAI


async def test_openai_fake_chat_models_and_usage() -> None:
    async with (
        FakeOpenAI(models=["a", "b"], reply="one two three") as up,
        aiohttp.ClientSession() as s,
    ):
        async with s.get(f"{up.base_url}/v1/models") as r:
            assert [m["id"] for m in (await r.json())["data"]] == ["a", "b"]
        body = {"model": "a", "messages": [{"role": "user", "content": "hi there"}]}
        async with s.post(f"{up.base_url}/v1/chat/completions", json=body) as r:
            data = await r.json()
        assert data["choices"][0]["message"]["content"] == "one two three"
        assert data["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
        assert up.completion_calls == 1
        assert up.requests[-1].json == body


async def test_openai_fake_streams_sse_with_usage_and_done() -> None:
    async with FakeOpenAI(reply="a b c") as up, aiohttp.ClientSession() as s:
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        async with s.post(f"{up.base_url}/v1/chat/completions", json=body) as r:
            raw = (await r.read()).decode()
    events = [line[6:] for line in raw.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "a b c"
    assert chunks[-1]["usage"]["completion_tokens"] == 3


async def test_openai_fake_auth_failures_and_hold() -> None:
    async with FakeOpenAI(bearer_token="sekret") as up, aiohttp.ClientSession() as s:
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        async with s.post(f"{up.base_url}/v1/chat/completions", json=body) as r:
            assert r.status == 401
        headers = {"Authorization": "Bearer sekret"}
        up.fail_next(1, status=429, retry_after=2)
        async with s.post(f"{up.base_url}/v1/chat/completions", json=body, headers=headers) as r:
            assert r.status == 429 and r.headers["Retry-After"] == "2"
        up.hold()
        task = asyncio.create_task(
            s.post(f"{up.base_url}/v1/chat/completions", json=body, headers=headers)
        )
        await asyncio.wait_for(up.wait_for_requests(2), 5)
        assert not task.done()
        up.release()
        resp = await asyncio.wait_for(task, 5)
        assert resp.status == 200
        resp.release()


async def test_ollama_fake_streams_ndjson_by_default() -> None:
    async with (
        FakeOllama(models=["llama3:latest"], reply="x y") as up,
        aiohttp.ClientSession() as s,
    ):
        async with s.get(f"{up.base_url}/api/tags") as r:
            assert (await r.json())["models"][0]["name"] == "llama3:latest"
        async with s.post(
            f"{up.base_url}/api/generate", json={"model": "llama3", "prompt": "p"}
        ) as r:
            lines = [json.loads(x) for x in (await r.read()).decode().splitlines()]
        assert "".join(x["response"] for x in lines) == "x y"
        assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 2
        async with s.post(f"{up.base_url}/api/chat", json={"model": "nope", "messages": []}) as r:
            assert r.status == 404 and "not found" in (await r.json())["error"]
