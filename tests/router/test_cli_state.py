"""`swarm state migrate|check` on SQLite and PostgreSQL, for a gateway and a provider node: the
versions of every store, what check finds wrong (behind, ahead, unreachable), and Redis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from client.cli import main
from client.nostr.keys import Keys
from client.storage import open_store
from tests.support.servers import Redis, free_port
from tests.support.state_files import v1_file


def write(tmp: Path, state: dict[str, str]) -> str:
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump({"backends": [{"name": "m", "type": "mock"}], "state": state}))
    return str(path)


def provider_toml(tmp: Path, state_url: str | None = None) -> str:
    path = tmp / "provider.toml"
    text = (
        f'[node]\nsecret_key = "{Keys.generate().secret_hex}"\n'
        'relays = ["ws://127.0.0.1:1"]\nstore = "jobs.sqlite"\n\n[[backends]]\ntype = "mock"\n'
    )
    if state_url:
        text += f'\n[state]\nurl = "{state_url}"\n'
    path.write_text(text)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["state", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def states(report: dict[str, Any]) -> dict[str, tuple[int, int, str]]:
    return {s["component"]: (s["found"], s["known"], s["state"]) for s in report["schemas"]}


def test_migrate_and_check_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, {"url": f"sqlite:///{tmp_path / 's.sqlite'}"})
    assert main(["state", "check", "--config", cfg]) == 1  # nothing there yet, and none made
    assert "does not exist yet: run swarm state migrate" in capsys.readouterr().out
    assert not (tmp_path / "s.sqlite").exists()
    assert main(["state", "migrate", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "spend        schema version 2 of 2 (migrated from 0): current" in out
    assert "every schema is up to date" in out
    code, report = run(capsys, "check", "--config", cfg)
    (store,) = report["stores"]
    assert code == 0 and report["ok"] and store["shared"] is False and store["problems"] == []
    assert states(store) == {"spend": (2, 2, "current"), "keys": (1, 1, "current")}
    assert store["accounts"] == [] and store["pending_payments"] == 0


def test_a_v1_file_is_behind_until_migrated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = v1_file("gateway", tmp_path / "gateway.sqlite")
    cfg = write(tmp_path, {"url": str(path)})
    code, report = run(capsys, "check", "--config", cfg)
    assert code == 1 and states(report["stores"][0])["spend"] == (0, 2, "behind")
    assert (
        "spend: schema version 0, this code's is 2: run swarm state migrate"
        in (report["stores"][0]["problems"])
    )
    assert main(["state", "migrate", "--config", cfg]) == 0
    capsys.readouterr()
    code, report = run(capsys, "check", "--config", cfg)
    (store,) = report["stores"]
    assert code == 0 and [a["name"] for a in store["accounts"]] == ["key:alice"]
    assert store["accounts"][0]["spent_msats"] == 5_000 and store["pending_payments"] == 1


def test_a_store_ahead_of_the_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, {"url": str(tmp_path / "s.sqlite")})
    assert main(["state", "migrate", "--config", cfg]) == 0
    db = open_store(tmp_path / "s.sqlite", lock="accounts")
    db.execute("INSERT INTO schema_migrations VALUES ('keys', 2, 'from the future', 0)")
    db.close()
    capsys.readouterr()
    code, report = run(capsys, "check", "--config", cfg)
    assert code == 1 and states(report["stores"][0])["keys"] == (2, 1, "ahead")
    assert main(["state", "migrate", "--config", cfg]) == 1
    assert "PROBLEM: the keys store in" in capsys.readouterr().out


def test_every_store_on_postgres_and_redis(
    tmp_path: Path, pg_url: str, redis_server: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path, {"url": pg_url, "redis": redis_server.url})
    toml = provider_toml(tmp_path, pg_url)
    code, report = run(capsys, "check", "--config", cfg, "--provider-config", toml)
    assert code == 1 and not report["ok"]  # a fresh database: every schema is behind
    code, report = run(capsys, "migrate", "--config", cfg, "--provider-config", toml)
    assert code == 0
    gateway, provider = report["stores"]
    # The gateway's ledgers for the swarm share its PostgreSQL; the node's job store too.
    assert set(states(gateway)) == {"spend", "keys", "payments", "reputation"}
    assert states(provider) == {"jobs": (2, 2, "current")}
    code, report = run(capsys, "check", "--config", cfg, "--provider-config", toml)
    assert code == 0 and report["redis"] == "ok"
    assert report["stores"][0]["store"].startswith("postgresql://127.0.0.1:")  # no user shown
    assert report["stores"][0]["shared"] is True


def test_a_provider_nodes_sqlite_job_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = provider_toml(tmp_path)
    assert main(["state", "migrate", "--provider-config", toml]) == 0
    out = capsys.readouterr().out
    assert f"store: {tmp_path / 'jobs.sqlite'}" in out
    assert "jobs         schema version 2 of 2" in out


def test_stores_that_do_not_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(
        tmp_path,
        {
            "url": f"postgresql://x@127.0.0.1:{free_port()}/none",
            "redis": f"redis://127.0.0.1:{free_port()}/0",
        },
    )
    assert main(["state", "check", "--config", cfg]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM: unreachable: PostgreSQL is unreachable" in out
    assert "redis: unavailable" in out


def test_what_it_needs_to_be_told(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["state", "check"]) == 2
    assert "give --config, --provider-config or both" in capsys.readouterr().err
    assert main(["state", "check", "--provider-config", str(tmp_path / "none.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
