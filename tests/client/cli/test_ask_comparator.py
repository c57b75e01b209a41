"""`swarm ask --comparator auto`: the comparator picked by the question decides the quorum."""

from __future__ import annotations

import asyncio
import json

import pytest

from client.cli import main
from relay_mock import Relay
from tests.support.scripted import ScriptedProvider


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_auto_agrees_on_the_number_and_leaves_the_liar_out(
    relay: Relay, capsys: pytest.CaptureFixture[str]
) -> None:
    async with (
        ScriptedProvider([relay.url], "6 × 7 = 42") as a,
        ScriptedProvider([relay.url], "The answer is 42.") as b,
    ):
        code = await run_cli(
            "ask",
            "What is 6 times 7?",
            "-r",
            relay.url,
            "-k",
            "2",
            "--json",
            "--quiet",
            "--comparator",
            "auto",
            "--timeout",
            "10",
        )
    out, _ = capsys.readouterr()
    assert code == 0
    data = json.loads(out)
    assert data["reached"] and sorted(data["agreeing"]) == sorted(
        [a.keys.public_key, b.keys.public_key]
    )


async def test_normalized_does_not_agree_on_the_same_two_answers(
    relay: Relay, capsys: pytest.CaptureFixture[str]
) -> None:
    async with (
        ScriptedProvider([relay.url], "6 × 7 = 42"),
        ScriptedProvider([relay.url], "The answer is 42."),
    ):
        code = await run_cli(
            "ask",
            "What is 6 times 7?",
            "-r",
            relay.url,
            "-k",
            "2",
            "--json",
            "--quiet",
            "--compare",
            "normalized",
            "--timeout",
            "2",
        )
    out, _ = capsys.readouterr()
    assert code != 0 and not json.loads(out)["reached"]
