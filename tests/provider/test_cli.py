"""`swarm provider init|run|status`: the file it writes, and a real node process serving a job."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
from pathlib import Path

import pytest

from client.cli import main
from client.dvm.nip90 import JobSpec
from provider.config import load_config
from relay_mock import Relay
from tests.support.customer import Customer


def test_init_writes_a_private_loadable_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "conf" / "provider.toml"
    args = ["provider", "init", "--config", str(path), "--relay", "wss://r1", "--relay", "wss://r2"]
    assert main([*args, "--backend", "openai", "--model", "qwen", "--name", "Mine"]) == 0
    out = capsys.readouterr().out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = load_config(path, env={})
    assert cfg.node.relays == ["wss://r1", "wss://r2"] and cfg.node.name == "Mine"
    assert cfg.backends[0].type == "openai" and cfg.backends[0].models == ["qwen"]
    assert cfg.node.keys.npub in out
    # Never clobbers a key by accident.
    assert main(["provider", "init", "--config", str(path)]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["provider", "init", "--config", str(path), "--force"]) == 0
    assert load_config(path, env={}).node.keys.npub != cfg.node.keys.npub


def test_run_with_a_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "provider.toml"
    path.write_text('[node]\nsecret_key = "nope"\nrelays = ["ws://x"]\n')
    assert main(["provider", "run", "--config", str(path)]) == 2
    assert "node.secret_key" in capsys.readouterr().err


async def test_run_serves_jobs_and_stops_on_sigterm(
    tmp_path: Path, relay: Relay, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "provider.toml"
    init = ["provider", "init", "--config", str(path), "--backend", "mock", "--model", "m"]
    assert main(init) == 0
    env = {
        **os.environ,
        "SWARM_PROVIDER_RELAYS": relay.url,  # the environment beats the file's relay
        "SWARM_PROVIDER_BACKENDS": '[{"type": "mock", "models": ["m"], "response": "served"}]',
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client.cli",
        "provider",
        "run",
        "--config",
        str(path),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert b"serving m" in line
        async with Customer([relay.url]) as alice:
            job = await alice.submit(JobSpec(prompt="hi", model="m"))
            assert (await alice.result(job, within=30)).content == "served"
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"done: 1 jobs completed" in out
    assert f"job {job.id[:12]}".encode() in err  # the per-job log line
    capsys.readouterr()
    assert main(["provider", "status", "--config", str(path)]) == 0
    status = capsys.readouterr().out
    assert "jobs done 1" in status and job.id[:12] in status


def test_auto_backend_choice() -> None:
    from provider.cli import choose_backend

    assert choose_backend(True, True) == "ollama"
    assert choose_backend(False, True) == "embedded"
    assert choose_backend(False, False) == "ollama"
