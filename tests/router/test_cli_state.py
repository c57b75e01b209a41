"""`swarm state migrate|check` on SQLite and PostgreSQL, and what it says when a store is away."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from client.cli import main
from tests.support.servers import Redis, free_port


def write(tmp: Path, state: dict[str, str]) -> str:
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump({"backends": [{"name": "m", "type": "mock"}], "state": state}))
    return str(path)


def test_migrate_and_check_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, {"url": f"sqlite:///{tmp_path / 's.sqlite'}"})
    assert main(["state", "migrate", "--config", cfg]) == 0
    assert "schema is up to date" in capsys.readouterr().out
    assert main(["state", "check", "--config", cfg, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["shared"] is False and out["problems"] == [] and out["pending_payments"] == 0


def test_check_on_postgres_and_redis(
    tmp_path: Path, pg_url: str, redis_server: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path, {"url": pg_url, "redis": redis_server.url})
    assert main(["state", "check", "--config", cfg, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["shared"] is True and out["redis"] == "ok"
    assert out["store"].startswith("127.0.0.1:")  # user (and any password) left out


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
    assert "unavailable: PostgreSQL is unreachable" in out and "redis: unavailable" in out
