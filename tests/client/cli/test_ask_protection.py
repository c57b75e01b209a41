"""`swarm ask` shows how each agreeing answer was protected (the CLI runs its loop in a thread)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from client.cli import main
from relay_mock import Relay
from tests.support.copy_actors import ANSWER, Copycat, honest_node


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_ask_sealed_commit_reveal(relay: Relay, capsys: pytest.CaptureFixture[str]) -> None:
    async with honest_node(relay.url), honest_node(relay.url):
        code = await run_cli(
            "ask",
            "Capital of France?",
            "-r",
            relay.url,
            "-k",
            "2",
            "-t",
            "15",
            "--sealing",
            "require",
            "--commit-reveal",
            "--commit-quota",
            "2",
        )
    out, err = capsys.readouterr()
    assert code == 0 and out == f"{ANSWER}\n"
    assert "protection of the agreeing answers: 2 committed" in err
    assert "copyable" not in err


async def test_ask_json_marks_a_copycat_copyable(
    relay: Relay, capsys: pytest.CaptureFixture[str]
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        cat = await stack.enter_async_context(Copycat(relay.url))
        a = await stack.enter_async_context(honest_node(relay.url))
        await stack.enter_async_context(honest_node(relay.url, gate=cat.acted))
        code = await run_cli(
            "ask",
            "Capital of France?",
            "-r",
            relay.url,
            "-k",
            "2",
            "-t",
            "15",
            "--sealing",
            "off",
            "--json",
            "--quiet",
        )
    out, _ = capsys.readouterr()
    data = json.loads(out)
    assert code == 0 and data["text"] == ANSWER
    assert data["protection"] == {a.public_key: "clear", cat.pubkey: "clear"}
    assert cat.pubkey in data["copyable"]


async def test_ask_prefer_is_the_default_and_summary_names_copyable(
    relay: Relay, capsys: pytest.CaptureFixture[str]
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        cat = await stack.enter_async_context(Copycat(relay.url))
        await stack.enter_async_context(honest_node(relay.url))
        await stack.enter_async_context(honest_node(relay.url, gate=cat.acted))
        code = await run_cli("ask", "Capital of France?", "-r", relay.url, "-k", "2", "-t", "15")
    out, err = capsys.readouterr()
    assert code == 0 and out == f"{ANSWER}\n"
    # Sealed by default: the copy did not open, both agreeing answers were sealed.
    assert "protection of the agreeing answers: 2 sealed" in err and "decrypt 1" in err


async def test_ask_bad_commit_quota(relay: Relay, capsys: pytest.CaptureFixture[str]) -> None:
    code = await run_cli("ask", "?", "-r", relay.url, "--commit-reveal", "--commit-quota", "0")
    _, err = capsys.readouterr()
    assert code == 2 and "quota" in err
