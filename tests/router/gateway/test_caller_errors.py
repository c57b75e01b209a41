"""A caller's mistake is not a backend failure: an upstream 4xx that says the request is wrong
goes back unchanged, never counts toward a breaker and never fails over. Upstream faults (5xx,
timeouts, connection errors, 429) still do. Real upstreams on 127.0.0.1, the official client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from tests.support.gateway import client, gateway, user
from tests.support.upstreams import FakeOpenAI


@pytest.fixture
async def two() -> AsyncIterator[tuple[FakeOpenAI, FakeOpenAI]]:
    async with (
        FakeOpenAI(models=["gpt-x", "other"], reply="from a") as a,
        FakeOpenAI(models=["gpt-x"], reply="from b") as b,
    ):
        yield a, b


def config(a: FakeOpenAI, b: FakeOpenAI) -> dict[str, object]:
    return {
        "backends": [
            {"name": "a", "url": a.base_url, "priority": 0},
            {"name": "b", "url": b.base_url, "priority": 1},
        ],
        "resilience": {
            "retry": {"max_attempts": 3},
            "circuit_breaker": {"failure_threshold": 3, "window_s": 60, "reset_timeout_s": 30},
        },
    }


@pytest.mark.parametrize("status", [400, 413, 422])
async def test_a_caller_error_comes_back_unchanged_and_harms_nobody(
    two: tuple[FakeOpenAI, FakeOpenAI], status: int
) -> None:
    a, b = two
    async with gateway(config(a, b)) as gw:
        c = client(gw)
        for _ in range(5):  # more than the breaker's threshold
            a.fail_next(status=status, message="This model's maximum context length is 8 tokens")
            with pytest.raises(openai.APIStatusError) as e:
                await c.chat.completions.create(model="gpt-x", messages=user("x" * 100))
            assert e.value.status_code == status  # not 502: the caller's to fix
            body = e.value.body
            assert isinstance(body, dict)
            assert body["message"] == "This model's maximum context length is 8 tokens"
            assert body["type"] == "invalid_request_error"
        assert a.completion_calls == 5 and b.completion_calls == 0  # no failover, no retry
        assert gw.router.breaker_state("a") == "closed"
        ok = await c.chat.completions.create(model="other", messages=user("hi"))
        assert ok.choices[0].message.content == "from a"  # the backend still serves others


@pytest.mark.parametrize("status", [500, 503])
async def test_an_upstream_fault_still_fails_over_and_counts(
    two: tuple[FakeOpenAI, FakeOpenAI], status: int
) -> None:
    a, b = two
    async with gateway(config(a, b)) as gw:
        c = client(gw)
        a.fail_next(n=9, status=status)
        for _ in range(3):
            r = await c.chat.completions.create(model="gpt-x", messages=user("q"))
            assert r.choices[0].message.content == "from b"
        assert gw.router.breaker_state("a") == "open"


async def test_an_upstream_429_is_retried_not_passed_on(
    two: tuple[FakeOpenAI, FakeOpenAI],
) -> None:
    a, b = two
    async with gateway(config(a, b)) as gw:
        a.fail_next(status=429, retry_after=0.01)
        r = await client(gw).chat.completions.create(model="gpt-x", messages=user("q"))
        assert r.choices[0].message.content in ("from a", "from b")
