"""`swarm providers` against relay_mock with real announcements; `swarm reputation show/reset`
on a ledger file."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from client.cli import main
from client.customer.reputation import Observation, ReputationLedger
from client.net.pool import RelayPool
from client.nostr.keys import Keys
from relay_mock import Relay
from tests.support.announcements import announcement
from tests.support.scripted import dead_url

CUSTOMER = Keys.generate()


async def run_cli(*argv: str) -> int:
    # The handlers call asyncio.run: give them a thread of their own.
    return await asyncio.to_thread(main, list(argv))


async def announce(relay: Relay) -> tuple[Keys, Keys, Keys]:
    online, cheap, gone = Keys.generate(), Keys.generate(), Keys.generate()
    now = int(time.time())
    for keys, ev in (
        (online, announcement(online, now - 5, name="alpha", models=("llama3",))),
        (cheap, announcement(cheap, now - 2, name="beta", payment="free", models=("phi3",))),
        (gone, announcement(gone, now - 1, name="gamma", online=False)),
    ):
        async with RelayPool([relay.url], keys=keys) as pool:
            await pool.publish(ev)
    return online, cheap, gone


async def test_providers_json_lists_the_live_ones(
    relay: Relay, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    online, cheap, gone = await announce(relay)
    assert len({online.npub, cheap.npub, gone.npub}) == 3
    missing = str(tmp_path / "none.sqlite")
    assert await run_cli("providers", "--relay", relay.url, "--json", "--ledger", missing) == 2
    assert "no reputation ledger" in capsys.readouterr().err
    ledger_path = tmp_path / "rep.sqlite"
    with ReputationLedger(ledger_path, customer=CUSTOMER.public_key) as led:
        led.record([Observation(online.public_key, "agreed", 700.0, 2000)] * 3)
    base = ["providers", "--relay", relay.url, "--ledger", str(ledger_path)]
    assert await run_cli(*base, "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["alpha", "beta"]  # best score first; gamma is offline
    alpha, beta = rows
    assert alpha["npub"] == online.npub and alpha["status"] == "online"
    assert alpha["models"] == ["llama3"] and alpha["payment"] == "after"
    assert alpha["price"]["min_msats"] == 2000 and alpha["encryption"] == ["nip44", "nip04"]
    assert alpha["reputation"]["agreed"] == pytest.approx(3.0) and alpha["score"] > 0.7
    assert beta["payment"] == "free" and beta["reputation"] is None and beta["score"] == 0.5
    assert await run_cli(*base, "--json", "--all") == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"]: r["status"] for r in rows} == {
        "alpha": "online",
        "beta": "online",
        "gamma": "offline",
    }
    assert await run_cli(*base, "--json", "--model", "phi3") == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["beta"]
    assert await run_cli(*base, "--model", "mistral") == 1
    assert "no provider serving mistral" in capsys.readouterr().err
    # The table.
    assert await run_cli(*base) == 0
    table = capsys.readouterr().out
    assert "alpha" in table and "beta" in table and "gamma" not in table
    assert "free" in table and "online" in table and online.npub[:14] in table


async def test_providers_usage_and_relay_errors(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SWARM_RELAYS", raising=False)
    assert await run_cli("providers") == 2
    assert "--relay" in capsys.readouterr().err
    assert await run_cli("providers", "--relay", dead_url(), "--timeout", "1") == 3
    assert "no relay reachable" in capsys.readouterr().err


async def test_reputation_show_and_reset(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "rep.sqlite"
    good, bad = Keys.generate(), Keys.generate()
    with ReputationLedger(path, customer=CUSTOMER.public_key) as led:
        led.record([Observation(good.public_key, "agreed", 500.0, 1000, 1000)] * 4)
        led.record([Observation(bad.public_key, "dissented", 200.0)] * 2)
    base = ["--ledger", str(path)]
    assert await run_cli("reputation", "show", good.npub, *base, "--json") == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["npub"] == good.npub and rec["agreed"] == pytest.approx(4.0)
    assert rec["paid_msats"] == 4000 and rec["score"] > 0.8
    assert await run_cli("reputation", "show", *base, "--json") == 0
    assert [r["npub"] for r in json.loads(capsys.readouterr().out)] == [good.npub, bad.npub]
    assert await run_cli("reputation", "show", *base) == 0
    assert good.npub[:14] in capsys.readouterr().out
    # Another customer's records are kept apart: choose with --key / --customer.
    other = Keys.generate()
    with ReputationLedger(path, customer=other.public_key) as led:
        led.record([Observation(good.public_key, "dissented")])
    assert await run_cli("reputation", "show", *base) == 2
    assert "2 customers" in capsys.readouterr().err
    assert await run_cli("reputation", "show", good.npub, *base, "--key", other.nsec, "--json") == 0
    assert json.loads(capsys.readouterr().out)["dissented"] == pytest.approx(1.0)
    mine = ["--customer", CUSTOMER.npub]
    assert await run_cli("reputation", "reset", bad.npub, *base, *mine) == 0
    capsys.readouterr()
    assert await run_cli("reputation", "show", bad.npub, *base, *mine) == 1
    assert "no record" in capsys.readouterr().err
    assert await run_cli("reputation", "reset", *base, *mine) == 2  # everything needs --yes
    assert "--yes" in capsys.readouterr().err
    assert await run_cli("reputation", "reset", *base, *mine, "--yes") == 0
    assert "forgot 1" in capsys.readouterr().err
    with ReputationLedger(path, customer=CUSTOMER.public_key) as led:
        assert len(led) == 0
    with ReputationLedger(path, customer=other.public_key) as led:
        assert len(led) == 1
    assert await run_cli("reputation", "show", "npub1bad", *base) == 2
    assert await run_cli("reputation", "show", "--ledger", str(tmp_path / "nope")) == 2
