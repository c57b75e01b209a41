"""Pure wire helpers: SSE decoding, OpenAI bodies and answers, HTTP error mapping, auth."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from router.backends.auth import BasicAuth, BearerAuth, HeaderAuth, parse_auth
from router.backends.http_errors import error_message, http_error, transport_error
from router.backends.openai_wire import (
    DONE,
    SseDecoder,
    chat_body,
    parse_chat_completion,
    parse_models,
    parse_stream_data,
)
from router.errors import BackendError, RateLimited
from router.types import StreamChunk


def test_sse_decoder_events_comments_and_multiline() -> None:
    d = SseDecoder()
    lines = [
        ": keep-alive\n",
        "event: message\n",
        'data: {"a":\n',
        "data: 1}\n",
        "\n",
        "data: [DONE]\r\n",
        "\n",
    ]
    out = [x for x in (d.feed(line) for line in lines) if x is not None]
    assert out == ['{"a":\n1}', "[DONE]"]
    d.feed("data: tail")
    assert d.flush() == "tail" and d.flush() is None


def test_stream_data_parsing() -> None:
    c = parse_stream_data('{"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}', "b")
    assert isinstance(c, StreamChunk) and c.text == "Hi"
    assert parse_stream_data('{"choices":[{"delta":{"role":"assistant"}}]}', "b") is None
    u = parse_stream_data('{"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3}}', "b")
    assert isinstance(u, StreamChunk) and u.usage is not None and u.usage.total_tokens == 5
    assert parse_stream_data("[DONE]", "b") is DONE
    legacy = parse_stream_data('{"choices":[{"text":"x","finish_reason":"length"}]}', "b")
    assert isinstance(legacy, StreamChunk) and legacy.finish_reason == "length"
    with pytest.raises(BackendError):
        parse_stream_data("{oops", "b")
    with pytest.raises(BackendError, match="boom"):
        parse_stream_data('{"error":{"message":"boom"}}', "b")


def test_chat_body_keeps_reserved_fields() -> None:
    body = chat_body(
        "m",
        [{"role": "user", "content": "x"}],
        9,
        {"model": "evil", "top_p": 0.5},
        stream=True,
        include_usage=True,
    )
    assert body == {
        "top_p": 0.5,
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 9,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_completion_parsing_and_estimates() -> None:
    text, usage, finish, model = parse_chat_completion(
        {"choices": [{"message": {"content": "abcdefgh"}}], "model": "real"}, "b", 40
    )
    assert (text, finish, model) == ("abcdefgh", "stop", "real")
    assert (usage.prompt_tokens, usage.completion_tokens) == (10, 2)  # estimated: no usage given
    for bad in ({}, {"choices": []}, {"choices": [{"message": {"content": 5}}]}, None):
        with pytest.raises(BackendError):
            parse_chat_completion(bad, "b", 0)
    assert parse_models({"data": [{"id": "a"}, {"nope": 1}, {"id": "b"}]}) == ["a", "b"]
    with pytest.raises(ValueError):
        parse_models({"models": []})


def test_http_error_mapping() -> None:
    e = http_error("b", 429, '{"error":{"message":"slow"}}', {"Retry-After": "3"})
    assert isinstance(e, RateLimited) and e.retry_after == 3 and "slow" in str(e)
    assert http_error("b", 502, "bad gateway", {}).retryable
    assert not http_error("b", 400, '{"error":"bad"}', {}).retryable
    assert error_message('{"detail":"nope"}') == "nope"
    assert error_message("") == "(empty body)"
    t = transport_error("b", TimeoutError())
    assert t.retryable and "timed out" in str(t)


def test_auth_headers_and_parsing() -> None:
    assert BearerAuth(token="t").headers() == {"Authorization": "Bearer t"}
    assert BasicAuth(username="u", password="p").headers() == {"Authorization": "Basic dTpw"}
    assert HeaderAuth(name="X-Key", value="v").headers() == {"X-Key": "v"}
    assert isinstance(parse_auth({"type": "basic", "username": "u", "password": "p"}), BasicAuth)
    assert parse_auth(None) is None
    with pytest.raises(ValidationError):
        parse_auth({"type": "digest"})
    with pytest.raises(ValidationError):
        parse_auth({"type": "header", "name": "", "value": "v"})


def test_absurdly_nested_upstream_json_is_a_backend_error() -> None:
    from router.backends.ollama_wire import parse_stream_line

    nested = "[" * 100_000 + "]" * 100_000
    with pytest.raises(BackendError, match="not JSON"):
        parse_stream_data(nested, "up")
    with pytest.raises(BackendError, match="not JSON"):
        parse_stream_line(nested, "up")
    assert error_message(nested) == nested[:300]
