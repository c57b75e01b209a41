"""`swarm serve`: config errors at start, --check, and a real process that shuts down gracefully
on SIGTERM while a request is in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import openai
import pytest

from client.cli import main
from tests.support.upstreams import FakeOpenAI

ROOT = Path(__file__).resolve().parents[3]


def test_bad_config_fails_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("backends:\n  - name: a\n    url: http://x\n    auth: {type: bearer}\n")
    assert main(["serve", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "swarm serve: error:" in err and "backends[0] (a).auth" in err and "token" in err


def test_check_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VLLM_KEY", raising=False)
    assert (
        main(["serve", "--check", "--config", str(ROOT / "examples" / "gateway-seed-format.yaml")])
        == 2
    )
    assert "VLLM_KEY is not set" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("backends:\n  - {name: canned, type: mock, models: [echo]}\n")
    assert main(["serve", "--check", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "config OK: 1 backend(s)" in out and "canned" in out and "echo" in out


def test_help_lists_serve(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--config" in capsys.readouterr().out


async def test_serve_process_finishes_in_flight_request_on_sigterm(tmp_path: Path) -> None:
    async with FakeOpenAI(models=["m"], reply="finished anyway") as up:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(f"refresh_interval: 0\nbackends:\n  - name: up\n    url: {up.base_url}\n")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "client.cli",
            "serve",
            "--config",
            str(cfg),
            "--port",
            "0",
            "--loop",
            "asyncio",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert "listening on http://127.0.0.1:" in line, line
            url = line.split("listening on ")[1].split()[0]
            up.hold()
            async with openai.AsyncOpenAI(
                base_url=url + "/v1",
                api_key="x",
                max_retries=0,
                http_client=openai.DefaultAsyncHttpxClient(verify=False),
            ) as c:
                pending = asyncio.create_task(
                    c.chat.completions.create(
                        model="m", messages=[{"role": "user", "content": "q"}]
                    )
                )
                await asyncio.wait_for(up.wait_for_requests(1), 20)
                proc.send_signal(signal.SIGTERM)
                assert proc.stderr is not None
                note = await asyncio.wait_for(proc.stderr.readline(), 20)
                assert b"shutting down" in note
                up.release()
                resp = await asyncio.wait_for(pending, 20)
                assert resp.choices[0].message.content == "finished anyway"
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
