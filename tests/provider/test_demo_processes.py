"""`swarm demo` runs the local stand-ins (relay, wallet service) as child processes and stops them
whatever happens; provider/ imports none of relay_mock. Mock models, so no `local` extra: the
same demo as tests/provider/test_demo.py, minutes faster."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provider.demo import DemoError, child_process, demo_swarm, run_demo
from router.backends.base import LmBackend
from router.backends.mock import MockBackend

ROOT = Path(__file__).resolve().parents[2]


def honest_mock(index: int, model_path: str | None) -> LmBackend:
    # Slower than the liar (as a real model is), so the liar's vote is in before the quorum.
    mock = MockBackend(f"mock-{index}").with_model("m").with_response("Paris.")
    return mock.with_usage(20, 2).with_latency(300)


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_the_demo_pays_the_agreeing_and_reads_every_balance_over_nwc(tmp_path: Path) -> None:
    report = await run_demo(quorum=3, timeout=30, backend_factory=honest_mock, workdir=tmp_path)
    assert report.ok and report.result is not None and report.result.text == "Paris."
    assert sorted(report.name(p) for p in report.result.agreeing) == [
        "honest-1",
        "honest-2",
        "honest-3",
    ]
    assert [report.name(p) for p in report.result.dissenting] == ["liar"]
    paid = report.paid_msats
    assert paid["liar"] == 0 and all(paid[f"honest-{i}"] > 0 for i in (1, 2, 3))
    assert report.customer_spent_msats == sum(paid.values())
    assert report.ledger_total_before == report.ledger_total_after == 10_000_000
    assert report.relay_url.startswith("ws://127.0.0.1:")
    assert report.customer_uri.startswith("nostr+walletconnect://")
    # The wallet service's ledger is a file in the work folder: its own tool agrees.
    accounts = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "client.cli", "wallet", "accounts", "--db", "lightning.db"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert accounts.returncode == 0, accounts.stderr
    assert "total 10,000 sats on regtest: conserved" in accounts.stdout


async def test_children_run_while_the_swarm_is_up_and_stop_with_it(tmp_path: Path) -> None:
    async with demo_swarm(workdir=tmp_path, backend_factory=honest_mock) as swarm:
        pids = dict(swarm.processes)
        assert set(pids) == {"relay", "wallet"} and all(running(p) for p in pids.values())
        assert set(await swarm.balances()) == {"honest-1", "honest-2", "honest-3", "liar"}
    assert not any(running(p) for p in pids.values())


async def test_children_stop_when_the_demo_fails_or_is_cancelled(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    pids: dict[str, int] = {}
    with pytest.raises(RuntimeError, match="boom"):
        async with demo_swarm(workdir=tmp_path / "a", backend_factory=honest_mock) as swarm:
            pids.update(swarm.processes)
            raise RuntimeError("boom")
    assert pids and not any(running(p) for p in pids.values())

    up = asyncio.Event()
    pids.clear()

    async def hold() -> None:
        async with demo_swarm(workdir=tmp_path / "b", backend_factory=honest_mock) as swarm:
            pids.update(swarm.processes)
            up.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hold())
    await asyncio.wait_for(up.wait(), 60)
    task.cancel()  # what Ctrl-C does to `swarm demo`
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert pids and not any(running(p) for p in pids.values())


async def test_a_child_that_cannot_start_is_a_clear_error(tmp_path: Path) -> None:
    exits = [sys.executable, "-c", "import sys; sys.stderr.write('port in use'); sys.exit(3)"]
    with pytest.raises(
        DemoError, match=r"the relay exited \(3\) before it was ready:\nport in use"
    ):
        async with child_process("the relay", exits, log_path=tmp_path / "r.log"):
            pass
    silent = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(DemoError, match=r"did not start within 0\.5 s"):
        async with child_process(
            "the wallet", silent, log_path=tmp_path / "w.log", ready_timeout=0.5
        ):
            pass


def test_provider_imports_no_stand_in() -> None:
    """provider -> router -> client only: no module of provider/ imports relay_mock, and the
    demo and the node's assembly load none of it."""
    found = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "provider").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        for name in _imported(node)
        if name == "relay_mock" or name.startswith("relay_mock.")
    ]
    assert found == []
    code = (
        "import sys, provider.demo, provider.cli_demo, provider.assemble, provider.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'relay_mock'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    return []
