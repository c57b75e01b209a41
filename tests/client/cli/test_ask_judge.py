"""`swarm ask --judge-url URL --judge-model M`: a judge model on an OpenAI-compatible endpoint (the
fake upstream, scripted to answer yes or no) decides paragraph answers for `auto` and `judge`."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from client.cli import main
from relay_mock import Relay
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
    return "No." if "oceans" in prompt else "Yes."


async def test_auto_with_a_judge_endpoint(relay: Relay, capsys: pytest.CaptureFixture[str]) -> None:
    gates = [asyncio.Event() for _ in range(3)]
    made = [
        ScriptedProvider([relay.url], text, gate=gate)
        for text, gate in zip((LIE, HONEST_A, HONEST_B), gates, strict=True)
    ]
    async with (
        FakeOpenAI(reply=judge_says, bearer_token="k3y") as up,
        contextlib.AsyncExitStack() as s,
    ):
        for p in made:
            await s.enter_async_context(p)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("JUDGE_KEY", "k3y")
            argv = [
                "ask", QUESTION, "-r", relay.url, "-k", "2", "-t", "20",
                "--comparator", "auto",
                "--judge-url", up.base_url + "/v1",
                "--judge-model", "judge-m",
                "--judge-key-env", "JUDGE_KEY",
                "--judge-timeout", "10",
            ]  # fmt: skip
            run = asyncio.ensure_future(asyncio.to_thread(main, argv))
            for gate, p in zip(gates, made, strict=True):  # the liar answers first
                await p.saw.wait()
                gate.set()
                await p.answered.wait()
            code = await run
        assert up.completion_calls == 3
        assert all(r.json["model"] == "judge-m" for r in up.requests)
    out, err = capsys.readouterr()
    assert code == 0 and out == HONEST_A + "\n"
    assert "compared by auto: auto picked judge" in err and "judge: 3 call(s)" in err
    assert "dissent" in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--judge-url", "http://127.0.0.1:9/v1"], "--judge-url needs --judge-model"),
        (["--judge-model", "m"], "--judge-model needs --judge-url"),
        (["--judge-url", "ftp://x", "--judge-model", "m"], "must be http"),
        (["--comparator", "judge"], "needs a judge model"),
        (
            [
                "--comparator",
                "normalized",
                "--judge-url",
                "http://127.0.0.1:9",
                "--judge-model",
                "m",
            ],
            "does not use a judge",
        ),
        (
            ["--judge-url", "http://127.0.0.1:9", "--judge-model", "m", "--judge-key-env", "NOPE_"],
            "NOPE_ is not set",
        ),
        (
            ["--judge-url", "http://127.0.0.1:9", "--judge-model", "m", "--judge-timeout", "0"],
            "must be > 0",
        ),
    ],
)
def test_judge_options_that_cannot_work_are_usage_errors(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["ask", QUESTION, "-r", "ws://127.0.0.1:9", "--comparator", "auto"]
    assert main([*base, *argv]) == 2
    assert words in capsys.readouterr().err
