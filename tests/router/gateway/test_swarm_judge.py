"""The gateway's swarm with a judge (``swarm.judge``: a backend and model of its own): ``auto``
asks that model whether two paragraph answers make the same claims. The judge here is the fake
OpenAI upstream scripted to answer yes or no; the providers are scripted on relay_mock so a test
decides who answers first."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from relay_mock import Relay
from router.gateway.config import parse_config
from router.gateway.errors import ConfigError
from tests.support.gateway import client, gateway, user
from tests.support.scripted import ScriptedProvider
from tests.support.upstreams import FakeOpenAI

QUESTION = "Explain why the sky is blue. Answer in one short paragraph."
HONEST_A = (
    "The sky looks blue because air molecules scatter the short blue wavelengths of sunlight "
    "far more than the long red ones, so blue light reaches our eyes from every direction."
)
HONEST_B = (
    "Sunlight holds every colour. Nitrogen and oxygen in the atmosphere scatter its blue part "
    "much more strongly than red, which is called Rayleigh scattering, and the sky glows blue."
)
LIE = (
    "The sky looks blue because the atmosphere reflects the colour of the oceans, which cover "
    "most of the planet, back down to our eyes."
)


def judge_says(prompt: str, model: str) -> str:
    return "no" if "oceans" in prompt else "yes"


def config(relay: Relay, upstream: str, **judge: Any) -> dict[str, Any]:
    return {
        "backends": [{"name": "judges", "url": upstream + "/v1", "models": ["judge-m"]}],
        "swarm": {
            "relays": [relay.url],
            "quorum": 2,
            "bid_sats": 0,
            "models": ["m1"],
            "job_timeout_s": 20,
            "judge": {"backend": "judges", "model": "judge-m", **judge},
        },
    }


@contextlib.asynccontextmanager
async def providers(*made: ScriptedProvider) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for p in made:
            await stack.enter_async_context(p)
        yield


async def test_auto_asks_the_configured_judge_and_the_liar_dissents(relay: Relay) -> None:
    gates = [asyncio.Event() for _ in range(3)]
    liar = ScriptedProvider([relay.url], LIE, gate=gates[0])
    a = ScriptedProvider([relay.url], HONEST_A, gate=gates[1])
    b = ScriptedProvider([relay.url], HONEST_B, gate=gates[2])
    async with (
        FakeOpenAI(models=["judge-m"], reply=judge_says) as up,
        providers(liar, a, b),
        gateway(config(relay, up.base_url)) as gw,
    ):
        call = asyncio.ensure_future(
            client(gw).chat.completions.with_raw_response.create(
                model="swarm/m1", messages=user(QUESTION), extra_body={"comparator": "auto"}
            )
        )
        for gate, p in zip(gates, (liar, a, b), strict=True):  # the liar first
            await p.saw.wait()
            gate.set()
            await p.answered.wait()
        raw = await call
        assert raw.parse().choices[0].message.content == HONEST_A
        assert set(raw.headers["x-swarm-agreeing"].split(",")) == {a.pubkey, b.pubkey}
        note = raw.headers["x-swarm-comparator"]
        assert note.startswith("auto picked judge") and note.endswith("judge: 3 call(s)")
        assert up.completion_calls == 3
        body = up.requests[-1].json
        assert body["model"] == "judge-m" and body["temperature"] == 0.0
        assert "<<<QUESTION" in body["messages"][1]["content"]


async def test_a_judge_that_fails_leaves_the_pair_to_the_comparator_without_it(
    relay: Relay,
) -> None:
    reworded = HONEST_A.replace("so blue light", "so that blue light")
    async with (
        FakeOpenAI(models=["judge-m"], reply=judge_says) as up,
        providers(*(ScriptedProvider([relay.url], t) for t in (HONEST_A, reworded))),
        gateway(config(relay, up.base_url)) as gw,
    ):
        up.fail_next(5, status=503)
        raw = await client(gw).chat.completions.with_raw_response.create(
            model="swarm/m1", messages=user(QUESTION), extra_body={"comparator": "judge"}
        )
        assert raw.parse().choices[0].message.content in (HONEST_A, reworded)
        note = raw.headers["x-swarm-comparator"]
        assert note.startswith("judge: 1 call(s), 1 failed") and "decided by" in note
        assert up.completion_calls == 1


async def test_judge_without_a_configured_judge_is_a_bad_request(relay: Relay) -> None:
    data = config(relay, "http://127.0.0.1:9")
    del data["swarm"]["judge"]
    async with gateway(data) as gw:
        with pytest.raises(openai.BadRequestError) as e:
            await client(gw).chat.completions.create(
                model="swarm/m1", messages=user(QUESTION), extra_body={"comparator": "judge"}
            )
    assert "needs a judge model" in e.value.message


@pytest.mark.parametrize(
    ("judge", "words"),
    [
        ({"backend": "nope", "model": "m"}, "unknown backend 'nope'"),
        ({"backend": "swarm", "model": "m"}, "is a swarm"),
    ],
)
def test_the_judge_must_name_a_backend_that_is_not_a_swarm(
    judge: dict[str, str], words: str
) -> None:
    data = {
        "backends": [{"name": "judges", "url": "http://127.0.0.1:9/v1"}],
        "swarm": {"relays": ["ws://127.0.0.1:9"], "judge": judge},
    }
    with pytest.raises(ConfigError) as e:
        parse_config(data, env={})
    assert e.value.field == "swarm.judge.backend" and words in e.value.message


def test_the_judge_section_takes_its_bounds_and_nothing_else() -> None:
    data: dict[str, Any] = {
        "backends": [{"name": "judges", "url": "http://127.0.0.1:9/v1"}],
        "swarm": {
            "relays": ["ws://127.0.0.1:9"],
            "judge": {"backend": "judges", "model": "m", "max_calls": 4, "timeout_s": 5},
        },
    }
    judge = parse_config(data, env={}).swarm.judge  # type: ignore[union-attr]
    assert judge is not None and (judge.max_calls, judge.timeout_s, judge.threshold) == (4, 5, 0.5)
    data["swarm"]["judge"]["temperature"] = 0
    with pytest.raises(ConfigError) as e:
        parse_config(data, env={})
    assert e.value.field == "swarm.judge.temperature"
