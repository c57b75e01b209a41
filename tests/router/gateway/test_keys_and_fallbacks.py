"""Keys as a LiteLLM user configures them (model allowlists, rpm, tpm, max_parallel, budget
periods) and model-level fallbacks (the config's mapping and a request's ``models`` list),
through the official openai client against mock and real HTTP upstreams."""

from __future__ import annotations

import asyncio
import time

import openai
import pytest

from router.gateway.key_limits import KeyGate, KeyLimits
from tests.support.gateway import HeldMock, client, gateway, user
from tests.support.upstreams import FakeOpenAI

KEYS = {
    "backends": [
        {"name": "gpt", "type": "mock", "models": ["gpt-x", "gpt-x-mini"], "response": "gpt"},
        {"name": "other", "type": "mock", "models": ["claude-y"], "response": "claude"},
    ],
    "keys": [
        {"name": "alice", "key": "sk-alice", "models": ["gpt-x*"], "rpm": 3},
        {"name": "bob", "key": "sk-bob", "tpm": 100},
    ],
}


async def test_a_key_uses_only_its_models() -> None:
    async with gateway(KEYS) as gw:
        alice = client(gw, "sk-alice")
        r = await alice.chat.completions.create(model="gpt-x-mini", messages=user("q"))
        assert r.choices[0].message.content == "gpt"
        with pytest.raises(openai.PermissionDeniedError) as e:
            await alice.chat.completions.create(model="claude-y", messages=user("q"))
        assert e.value.code == "model_not_allowed" and "gpt-x*" in e.value.message


async def test_requests_per_minute() -> None:
    async with gateway(KEYS) as gw:
        alice = client(gw, "sk-alice")
        for _ in range(3):
            await alice.chat.completions.create(model="gpt-x", messages=user("q"))
        with pytest.raises(openai.RateLimitError) as e:
            await alice.chat.completions.create(model="gpt-x", messages=user("q"))
        assert e.value.code == "rate_limit_exceeded" and "3 requests per minute" in e.value.message
        assert int(e.value.response.headers["retry-after"]) >= 1
        # bob has no rpm limit
        await client(gw, "sk-bob").chat.completions.create(model="gpt-x", messages=user("q"))


async def test_tokens_per_minute_count_the_estimate_then_what_was_used() -> None:
    async with gateway(KEYS) as gw:
        bob = client(gw, "sk-bob")
        # The estimate (1 + 60) is taken, then corrected to what the mock used (5 + 3 tokens):
        # five requests fit a 100-token minute although five estimates would not.
        for _ in range(5):
            await bob.chat.completions.create(model="gpt-x", messages=user("q"), max_tokens=60)
        # 40 used, about 60 left: a request that may use 96 must wait.
        with pytest.raises(openai.RateLimitError) as e:
            await bob.chat.completions.create(model="gpt-x", messages=user("q"), max_tokens=95)
        assert "100 tokens per minute (this request may use 96)" in e.value.message


def test_key_gate_rolls_back_what_a_refused_request_took() -> None:
    gate = KeyGate("k", KeyLimits(rpm=10, tpm=50))
    now = time.monotonic()
    assert gate.admit("m", 40, now) == 40
    with pytest.raises(Exception, match="tokens per minute"):
        gate.admit("m", 40, now)
    assert gate.in_flight == 1 and gate._requests is not None
    assert gate._requests.tokens == pytest.approx(9)  # the refused one got its request back
    gate.correct(40, 10)
    gate.release()
    assert gate.admit("m", 40, now) == 40  # 30 given back made room
    assert gate.in_flight == 1


async def test_max_parallel() -> None:
    cfg = {
        "backends": [{"name": "held", "type": "mock", "models": ["m"]}],
        "keys": [{"name": "alice", "key": "sk-alice", "max_parallel": 2}],
    }
    async with gateway(cfg) as gw:
        held = HeldMock("held").with_models("m")
        gw.router._states["held"].backend.inner = held  # type: ignore[attr-defined]
        c = client(gw, "sk-alice")
        running = [
            asyncio.create_task(c.chat.completions.create(model="m", messages=user("q")))
            for _ in range(2)
        ]
        await held.arrivals(2)
        with pytest.raises(openai.RateLimitError) as e:
            await c.chat.completions.create(model="m", messages=user("q"))
        assert "max_parallel 2" in e.value.message
        held.gate.set()
        await asyncio.gather(*running)
        await c.chat.completions.create(model="m", messages=user("q"))  # slots are back


async def test_a_budget_period_starts_the_budget_again(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = {
        "backends": [{"name": "paid", "type": "mock", "models": ["m"], "cost_sats": 4}],
        "keys": [{"name": "alice", "key": "sk-alice", "budget_sats": 5, "budget_period": "30d"}],
    }
    async with gateway(cfg) as gw:
        c = client(gw, "sk-alice")
        await c.chat.completions.create(model="m", messages=user("q"))
        with pytest.raises(openai.RateLimitError):
            await c.chat.completions.create(model="m", messages=user("q"))
        later = time.time() + 31 * 86400
        monkeypatch.setattr(gw.book, "_clock", lambda: later)
        await c.chat.completions.create(model="m", messages=user("q"))  # a new month
        assert gw.keys.accounts["alice"].spent_sats == 4


async def test_model_fallbacks_from_the_config_and_the_request() -> None:
    async with FakeOpenAI(models=["gpt-x", "gpt-x-mini"], reply="upstream") as up:
        cfg = {
            "backends": [
                {"name": "up", "url": up.base_url},
                {"name": "local", "type": "mock", "models": ["local-m"], "response": "local"},
            ],
            "fallbacks": {"gpt-x": ["gpt-x-mini", "local-m"]},
        }
        async with gateway(cfg) as gw:
            c = client(gw)
            up.fail_next(n=1, status=503)
            raw = await c.chat.completions.with_raw_response.create(
                model="gpt-x", messages=user("q")
            )
            assert raw.parse().choices[0].message.content == "upstream"  # gpt-x-mini
            assert raw.headers["x-swarm-model-fallback"].startswith("gpt-x -> gpt-x-mini")
            up.fail_next(n=2, status=503)
            r = await c.chat.completions.create(model="gpt-x", messages=user("q"))
            assert r.choices[0].message.content == "local"
            # A caller's mistake is not a reason to try another model.
            up.fail_next(n=1, status=400, message="bad")
            with pytest.raises(openai.BadRequestError):
                await c.chat.completions.create(model="gpt-x", messages=user("q"))
            # OpenRouter's per-request list, tried in order; `model` may be left out.
            up.fail_next(n=1, status=500)
            r = await c.chat.completions.create(
                model="gpt-x-mini", messages=user("q"), extra_body={"models": ["local-m"]}
            )
            assert r.choices[0].message.content == "local"
            with pytest.raises(openai.BadRequestError) as e:
                await c.chat.completions.create(
                    model="gpt-x", messages=user("q"), extra_body={"models": "local-m"}
                )
            assert e.value.param == "models"
