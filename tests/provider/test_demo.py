"""`swarm demo` end to end with the embedded model: three honest providers reach exact quorum,
the liar dissents and is not paid, the ledger balances; SIGTERM stops it and its children."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import signal
from urllib.parse import urlsplit

import pytest

from client.cli import main
from tests.support.demo import running_demo

pytestmark = pytest.mark.local_model


def test_swarm_demo_reaches_quorum_and_pays_only_the_agreeing() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["demo", "--json", "--quorum", "3", "--timeout", "300"])
    summary = json.loads(out.getvalue())
    assert code == 0 and summary["ok"] is True
    assert "paris" in summary["answer"].lower()
    # Quorum 3 of 4: the three honest providers on the real model agree exactly.
    assert sorted(summary["agreeing"]) == ["honest-1", "honest-2", "honest-3"]
    assert summary["dissenting"] == ["liar"]
    paid = summary["paid_sats"]
    assert paid["liar"] == 0
    assert all(paid[name] > 0 for name in ("honest-1", "honest-2", "honest-3"))
    assert summary["customer_spent_sats"] == sum(paid.values())
    assert summary["ledger_conserved"] is True


async def test_sigterm_stops_a_kept_running_demo_and_its_relay() -> None:
    async with running_demo("--keep-running") as (proc, lines):
        relay = urlsplit(next(ln for ln in lines if ln.startswith("relay:")).split()[-1])
        _, writer = await asyncio.open_connection(relay.hostname, relay.port)
        writer.close()  # the relay is up while the demo runs
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    with pytest.raises(OSError):  # and stopped with it
        await asyncio.open_connection(relay.hostname, relay.port)
