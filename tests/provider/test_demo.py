"""`swarm demo` end to end with the embedded model: three honest providers reach exact quorum,
the liar dissents and is not paid, the ledger balances."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from client.cli import main

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
