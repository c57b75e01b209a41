"""`swarm ask` against relay_mock and scripted providers (the CLI runs its own loop in a thread)."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from rich.console import Console

from client.cli import main
from client.cli.ask import _Board
from client.customer.quorum import Decision
from client.customer.swarm import Progress
from client.nostr.keys import Keys
from relay_mock import Relay
from tests.support.scripted import ScriptedProvider, dead_url


async def run_cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_ask_prints_the_agreed_answer(
    relay: Relay, capsys: pytest.CaptureFixture[str]
) -> None:
    async with ScriptedProvider([relay.url], "Paris"), ScriptedProvider([relay.url], "Paris"):
        code = await run_cli(
            "ask",
            "Capital of France?",
            "--relay",
            relay.url,
            "--quorum",
            "2",
            "--timeout",
            "10",
            "--model",
            "m",
        )
    out, err = capsys.readouterr()
    assert code == 0
    assert out == "Paris\n"
    assert "2 agreeing" in err and "paid 0 sats" in err


async def test_ask_json_and_key(relay: Relay, capsys: pytest.CaptureFixture[str]) -> None:
    keys = Keys.generate()
    async with ScriptedProvider([relay.url], "4") as a, ScriptedProvider([relay.url], "4"):
        code = await run_cli(
            "ask",
            "2+2?",
            "-r",
            relay.url,
            "-k",
            "2",
            "--json",
            "--key",
            keys.nsec,
            "--param",
            "top_k=5",
            "--quiet",
        )
        assert a.seen[0].customer == keys.public_key and a.seen[0].top_k == 5
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["text"] == "4" and data["reached"] and len(data["agreeing"]) == 2


async def test_ask_no_quorum_exit_code(relay: Relay, capsys: pytest.CaptureFixture[str]) -> None:
    async with ScriptedProvider([relay.url], "yes") as a, ScriptedProvider([relay.url], "no") as b:
        code = await run_cli(
            "ask", "?", "-r", relay.url, "-k", "2", "-t", "10", "-p", a.pubkey, "-p", b.pubkey
        )
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert "no agreement possible" in err and "NOT agreed" in err


async def test_ask_dead_relay_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code = await run_cli("ask", "?", "-r", dead_url(), "-t", "0.5", "-k", "1")
    assert code == 3
    assert "relay trouble" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["ask", "?"], "--relay"),
        (["ask", "?", "-r", "ws://x", "--key", "nonsense"], "secret key"),
        (["ask", "?", "-r", "ws://x", "--encrypt", "nip44"], "--target"),
        (["ask", "?", "-r", "ws://x", "--param", "novalue"], "NAME=VALUE"),
        (["ask", "?", "-r", "ws://x", "-k", "0"], "--quorum"),
        (["ask", "?", "-r", "ws://x", "-p", "npub1bad"], "npub"),
    ],
)
def test_ask_usage_errors(
    argv: list[str],
    needle: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SWARM_RELAYS", raising=False)
    monkeypatch.delenv("SWARM_KEY", raising=False)
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_board_renders_live_status() -> None:
    a, b = "a" * 64, "b" * 64
    board = _Board(2)
    board.update(Progress("published", 1.0, detail="job"))
    board.update(Progress("feedback", 2.0, a, "processing"))
    board.update(Progress("result", 3.0, b, "answered", "Lyon"))
    board.update(Progress("rejected", 3.5, b, "forged"))
    d = Decision(True, 2, "Paris", (a,), (b,), ())
    board.update(Progress("reached", 4.0, status="reached", decision=d))
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(board.render())
    text = console.export_text()
    assert "quorum reached" in text and "agreed" in text and "dissented" in text
    assert "Lyon" in text and "1 bad event(s) ignored" in text
