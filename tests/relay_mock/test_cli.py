"""`swarm relay` from the shell: prints its URL, serves, keeps events in --db, stops on Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from client.nostr.event import Event
from client.nostr.keys import Keys
from tests.support.wire import Wire

SWARM_RELAY = ("client.cli", "relay")  # what `swarm relay` runs
STANDALONE = ("relay_mock",)  # `python -m relay_mock`, same options, starts faster


async def start_cli(command: tuple[str, ...], *args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        *command,
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    return proc, line.decode().strip()


async def stop_cli(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGINT)
    return await asyncio.wait_for(proc.wait(), 30)


async def test_cli_serves_and_persists(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    keys = Keys.generate()
    event = Event.create(keys, 1, "from the shell")
    proc, url = await start_cli(SWARM_RELAY, "--db", str(db))
    try:
        assert url.startswith("ws://127.0.0.1:")
        async with await Wire.open(url) as wire:
            assert (await wire.publish(event))[2] is True
    finally:
        assert await stop_cli(proc) == 0
    proc, url = await start_cli(STANDALONE, "--db", str(db))
    try:
        async with await Wire.open(url) as wire:
            events, _ = await wire.req("s", {"authors": [keys.public_key]})
        assert [e["id"] for e in events] == [event.id]
    finally:
        assert await stop_cli(proc) == 0


def test_cli_rejects_bad_settings(capsys) -> None:  # type: ignore[no-untyped-def]
    from client.cli import main

    assert main(["relay", "--max-subscriptions", "0"]) == 2
    assert "swarm relay:" in capsys.readouterr().err


def test_cli_help_names_the_options(capsys) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from client.cli import main

    with pytest.raises(SystemExit):
        main(["relay", "--help"])
    out = capsys.readouterr().out
    for option in ("--host", "--port", "--db", "--auth-required"):
        assert option in out
