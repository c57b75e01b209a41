"""OpenAICompatBackend against a real aiohttp server on 127.0.0.1 speaking the OpenAI API."""

from __future__ import annotations

import asyncio

import pytest

from router import LmRouter, RecordingSleeper
from router.backends import BasicAuth, HeaderAuth, OpenAICompatBackend
from router.backends.openai_compat import api_root
from router.errors import BackendError, InvalidRequest, RateLimited, StreamInterrupted
from router.request import Sampling
from tests.support.upstreams import FakeOpenAI


async def test_complete_with_usage_and_request_shape() -> None:
    async with FakeOpenAI(models=["m1"], reply="hello from upstream") as up:
        async with OpenAICompatBackend(up.base_url + "/v1", name="up") as b:
            r = await b.complete("m1", "say hi", 50, sampling=Sampling(temperature=0.3))
            with pytest.raises(InvalidRequest, match="'stream'"):
                # what the backend sets itself cannot come in as a passthrough field
                await b.complete("m1", "say hi", 50, passthrough={"stream": True})
        assert (r.text, r.backend, r.model, r.finish_reason) == (
            "hello from upstream",
            "up",
            "m1",
            "stop",
        )
        assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (2, 3, 5)
        sent = up.requests[-1]
        assert sent.path == "/v1/chat/completions"
        assert sent.json == {
            "model": "m1",
            "messages": [{"role": "user", "content": "say hi"}],
            "max_tokens": 50,
            "temperature": 0.3,
        }
        assert len(up.requests) == 1


async def test_chat_messages_and_length_finish() -> None:
    async with FakeOpenAI(reply="one two three four") as up, OpenAICompatBackend(up.base_url) as b:
        msgs = [{"role": "system", "content": "be short"}, {"role": "user", "content": "go"}]
        r = await b.complete("fake-model", msgs, 2)
        assert (r.text, r.finish_reason) == ("one two", "length")
        assert up.requests[-1].json["messages"] == msgs


async def test_models_are_discovered_from_v1_models() -> None:
    async with FakeOpenAI(models=["a", "b"]) as up, OpenAICompatBackend(up.base_url) as b:
        assert not b.models_known and not b.supports_model("a")
        assert await b.refresh_models() == ["a", "b"]
        assert b.supports_model("b") and not b.supports_model("c")
        assert await b.health_check()


async def test_router_discovers_models_on_first_request() -> None:
    async with FakeOpenAI(models=["served"]) as up:
        b = OpenAICompatBackend(up.base_url, name="srv")
        router = LmRouter.builder().add_backend(b).build()
        try:
            r = await router.complete("served", "x", 5)
            assert r.backend == "srv"
            assert [q.path for q in up.requests].count("/v1/models") == 1
        finally:
            await router.close()


@pytest.mark.parametrize(
    ("server_auth", "client_kwargs"),
    [
        ({"bearer_token": "sk-1"}, {"api_key": "sk-1"}),
        ({"bearer_token": "sk-2"}, {"auth": {"type": "bearer", "token": "sk-2"}}),
        ({"basic_auth": ("ann", "pw")}, {"auth": BasicAuth(username="ann", password="pw")}),
        ({"api_header": ("X-API-Key", "k9")}, {"auth": HeaderAuth(name="X-API-Key", value="k9")}),
    ],
)
async def test_auth_schemes(server_auth: dict, client_kwargs: dict) -> None:
    async with FakeOpenAI(**server_auth) as up:
        async with OpenAICompatBackend(up.base_url, **client_kwargs) as good:
            assert (await good.complete("m", "hi", 5)).text == "Echo: hi"
        async with OpenAICompatBackend(up.base_url) as anonymous:
            with pytest.raises(BackendError) as err:
                await anonymous.complete("m", "hi", 5)
            assert err.value.status == 401 and not err.value.retryable
            assert not await anonymous.health_check()


def test_secrets_stay_out_of_reprs() -> None:
    b = OpenAICompatBackend("http://127.0.0.1:1", api_key="sk-secret")
    assert "sk-secret" not in repr(b) and "sk-secret" not in repr(b.auth)
    with pytest.raises(ValueError):
        OpenAICompatBackend(
            "http://127.0.0.1:1", api_key="a", auth={"type": "bearer", "token": "b"}
        )


def test_api_root_accepts_both_spellings() -> None:
    assert api_root("http://h:8080/v1/") == "http://h:8080"
    assert api_root("https://api.example.com/openai/v1") == "https://api.example.com/openai"
    assert api_root("http://h:8080") == "http://h:8080"
    with pytest.raises(ValueError):
        api_root("h:8080")


async def test_http_errors_are_typed() -> None:
    async with FakeOpenAI() as up, OpenAICompatBackend(up.base_url) as b:
        up.fail_next(1, status=429, retry_after=7, message="slow down")
        with pytest.raises(RateLimited) as rl:
            await b.complete("m", "x", 5)
        assert rl.value.retry_after == 7 and rl.value.retryable and "slow down" in str(rl.value)
        up.fail_next(1, status=503)
        with pytest.raises(BackendError) as e5:
            await b.complete("m", "x", 5)
        assert e5.value.status == 503 and e5.value.retryable
        up.strict_models = True
        with pytest.raises(BackendError) as e4:
            await b.complete("nope", "x", 5)
        assert e4.value.status == 404 and not e4.value.retryable and "not found" in str(e4.value)


async def test_connection_refused_is_retryable() -> None:
    async with FakeOpenAI() as up:
        url = up.base_url
    async with OpenAICompatBackend(url, timeout_s=5) as b:  # the server is gone
        with pytest.raises(BackendError) as err:
            await b.complete("m", "x", 5)
        assert err.value.retryable and "connection failed" in str(err.value)
        assert not await b.health_check()


async def test_streaming_sse_with_usage() -> None:
    async with FakeOpenAI(reply="streamed words here") as up, OpenAICompatBackend(up.base_url) as b:
        chunks = [c async for c in b.stream_chunks("m", "p q", 10)]
        assert "".join(c.text for c in chunks) == "streamed words here"
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5
        assert any(c.finish_reason == "stop" for c in chunks)
        assert up.requests[-1].json["stream_options"] == {"include_usage": True}
        assert [d async for d in b.stream("m", "x", 10)] == ["streamed", " words", " here"]


async def test_stream_error_event_and_disconnect() -> None:
    async with FakeOpenAI(reply="a b c d", stream_fail_after=2, stream_fail_mode="error") as up:
        async with OpenAICompatBackend(up.base_url) as b:
            got: list[str] = []
            with pytest.raises(BackendError, match="stream failed upstream"):
                async for d in b.stream("m", "x", 10):
                    got.append(d)
            assert got == ["a", " b"]
            up.stream_fail_mode = "disconnect"
            with pytest.raises(BackendError) as err:
                async for _ in b.stream("m", "x", 10):
                    pass
            assert err.value.retryable


async def test_router_stream_fails_over_before_first_token_between_servers() -> None:
    async with FakeOpenAI(reply="x") as bad, FakeOpenAI(reply="good answer") as good:
        bad.fail_next(5, status=500)
        router = (
            LmRouter.builder()
            .add_backend(OpenAICompatBackend(bad.base_url, name="bad", models=["m"]), priority=0)
            .add_backend(OpenAICompatBackend(good.base_url, name="good", models=["m"]), priority=1)
            .strategy("priority")
            .retry(max_attempts=2, jitter=0)
            .sleeper(RecordingSleeper())
            .build()
        )
        try:
            assert "".join([d async for d in router.stream("m", "x", 10)]) == "good answer"
            assert bad.stream_calls == 2 and good.stream_calls == 1
            good.stream_fail_after = 1
            good.stream_fail_mode = "disconnect"
            with pytest.raises(StreamInterrupted) as err:
                async for _ in router.stream("m", "x", 10):
                    pass
            assert err.value.text_so_far == "good"
        finally:
            await router.close()


async def test_older_server_without_stream_options() -> None:
    async with FakeOpenAI(reply="ok then") as up, OpenAICompatBackend(up.base_url) as b:
        up.fail_next(1, status=400, message="unknown field: stream_options")
        assert [d async for d in b.stream("m", "x", 10)] == ["ok", " then"]
        assert not b.stream_usage and "stream_options" not in up.requests[-1].json


async def test_connections_are_pooled_and_concurrent() -> None:
    async with FakeOpenAI() as up, OpenAICompatBackend(up.base_url, max_connections=4) as b:
        up.hold()
        tasks = [asyncio.create_task(b.complete("m", f"q{i}", 5)) for i in range(8)]
        await asyncio.wait_for(up.wait_for_requests(4), 5)
        assert up.completion_calls == 4  # the pool caps connections at 4
        up.release()
        texts = sorted(r.text for r in await asyncio.wait_for(asyncio.gather(*tasks), 10))
        assert texts == sorted(f"Echo: q{i}" for i in range(8))
