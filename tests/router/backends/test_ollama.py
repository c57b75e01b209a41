"""OllamaBackend against a real aiohttp server on 127.0.0.1 speaking Ollama's native API."""

from __future__ import annotations

import pytest

from router import LmRouter
from router.backends import MockBackend, OllamaBackend
from router.backends.ollama_wire import model_matches, parse_stream_line, request_body
from router.errors import BackendError, RateLimited, StreamInterrupted
from router.request import Sampling
from tests.support.upstreams import FakeOllama


async def test_plain_prompt_uses_generate_with_options() -> None:
    async with FakeOllama(models=["llama3:latest"], reply="hi there") as up:
        async with OllamaBackend(up.base_url) as b:
            r = await b.complete(
                "llama3",
                "hello",
                64,
                sampling=Sampling(temperature=0.1, stop="END"),
                passthrough={"keep_alive": "5m"},
            )
        assert (r.text, r.backend, r.finish_reason) == ("hi there", "ollama", "stop")
        assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (1, 2)
        sent = up.requests[-1]
        assert sent.path == "/api/generate"
        assert sent.json == {
            "model": "llama3",
            "stream": False,
            "prompt": "hello",
            "keep_alive": "5m",
            "options": {"temperature": 0.1, "stop": ["END"], "num_predict": 64},
        }


async def test_messages_use_chat_and_num_predict_limits() -> None:
    async with (
        FakeOllama(models=["qwen:7b"], reply="a b c d e") as up,
        OllamaBackend(up.base_url) as b,
    ):
        msgs = [{"role": "user", "content": "count"}]
        r = await b.complete("qwen:7b", msgs, 3)
        assert (r.text, r.finish_reason) == ("a b c", "length")
        assert up.requests[-1].path == "/api/chat"
        assert up.requests[-1].json["messages"] == msgs


async def test_tags_discovery_and_latest_matching() -> None:
    async with (
        FakeOllama(models=["llama3:latest", "phi3:mini"]) as up,
        OllamaBackend(up.base_url) as b,
    ):
        assert not b.models_known
        assert await b.refresh_models() == ["llama3:latest", "phi3:mini"]
        assert b.supports_model("llama3") and b.supports_model("llama3:latest")
        assert b.supports_model("phi3:mini") and not b.supports_model("phi3")
        assert await b.health_check()


async def test_router_discovers_ollama_models() -> None:
    async with FakeOllama(models=["mistral:latest"]) as up:
        router = LmRouter.builder().add_backend(OllamaBackend(up.base_url)).build()
        try:
            assert (await router.complete("mistral", "hey", 5)).text == "Echo: hey"
        finally:
            await router.close()


async def test_discovery_happens_before_the_default_backend_takes_a_model() -> None:
    async with FakeOllama(models=["llama3:latest"]) as up:
        fallback = MockBackend("fallback")
        router = (
            LmRouter.builder()
            .add_backend(OllamaBackend(up.base_url))
            .add_backend(fallback)
            .default_backend("fallback")
            .build()
        )
        try:
            assert (await router.complete("llama3", "x", 5)).backend == "ollama"
            assert (await router.complete("unknown-model", "x", 5)).backend == "fallback"
            assert [r.path for r in up.requests].count("/api/tags") == 1
        finally:
            await router.close()


async def test_streaming_ndjson_generate_and_chat() -> None:
    async with FakeOllama(reply="one two three") as up, OllamaBackend(up.base_url) as b:
        chunks = [c async for c in b.stream_chunks("llama3", "p", 10)]
        assert "".join(c.text for c in chunks) == "one two three"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
        assert chunks[-1].finish_reason == "stop"
        assert up.requests[-1].json["stream"] is True
        deltas = [d async for d in b.stream("llama3", [{"role": "user", "content": "x"}], 10)]
        assert deltas == ["one", " two", " three"] and up.requests[-1].path == "/api/chat"


async def test_errors_unknown_model_overload_and_broken_streams() -> None:
    async with FakeOllama(reply="a b c") as up, OllamaBackend(up.base_url) as b:
        with pytest.raises(BackendError) as nf:
            await b.complete("missing", "x", 5)
        assert nf.value.status == 404 and "not found" in str(nf.value) and not nf.value.retryable
        up.fail_next(1, status=429, retry_after=2)
        with pytest.raises(RateLimited) as rl:
            await b.complete("llama3", "x", 5)
        assert rl.value.retry_after == 2
        up.stream_fail_after = 1
        up.stream_fail_mode = "error"
        with pytest.raises(BackendError, match="stream failed upstream"):
            async for _ in b.stream("llama3", "x", 5):
                pass
        up.stream_fail_mode = "disconnect"
        with pytest.raises(BackendError) as broken:
            async for _ in b.stream("llama3", "x", 5):
                pass
        assert broken.value.retryable


async def test_router_streams_from_ollama_and_reports_interruption() -> None:
    async with FakeOllama(reply="alpha beta gamma") as up:
        router = (
            LmRouter.builder().add_backend(OllamaBackend(up.base_url, models=["llama3"])).build()
        )
        try:
            assert (
                "".join([d async for d in router.stream("llama3", "x", 10)]) == "alpha beta gamma"
            )
            assert router.usage_report().total_tokens == 4
            up.stream_fail_after = 1
            with pytest.raises(StreamInterrupted):
                async for _ in router.stream("llama3", "x", 10):
                    pass
        finally:
            await router.close()


async def test_unreachable_ollama_is_unhealthy() -> None:
    async with FakeOllama() as up:
        url = up.base_url
    async with OllamaBackend(url) as b:
        assert not await b.health_check()
        with pytest.raises(BackendError) as err:
            await b.refresh_models()
        assert err.value.retryable


def test_wire_helpers() -> None:
    assert model_matches("llama3", "llama3:latest") and model_matches("llama3:latest", "llama3")
    assert not model_matches("llama3", "llama3:8b")
    body = request_body(
        "m",
        None,
        [{"role": "user", "content": "x"}],
        7,
        {"options": {"seed": 1}, "format": "json"},
        stream=True,
    )
    assert body["options"] == {"seed": 1, "num_predict": 7} and body["format"] == "json"
    assert parse_stream_line("", "o") is None
    assert parse_stream_line('{"response": "", "done": false}', "o") is None
    with pytest.raises(BackendError):
        parse_stream_line("not json", "o")
