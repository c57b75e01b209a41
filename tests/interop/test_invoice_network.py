"""`swarm wallet new-account --network`: a local ledger that issues mainnet-prefixed (`lnbc…`)
invoices, the only kind nostrdvm's invoice reader understands (it cuts four characters,
``lnbc``, and reads the amount after them: ``lnbcrt…`` breaks it)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from client.cli import main
from relay_mock.lightning.ledger import Ledger
from tests.interop.peers import NOSTRDVM_PYTHON, require_nostrdvm

RELAY = "ws://127.0.0.1:7777"
READ_AMOUNT = (
    "import sys\n"
    "from nostr_dvm.utils.zap_utils import parse_amount_from_bolt11_invoice as parse\n"
    "try:\n    print(parse(sys.argv[1]))\nexcept Exception as exc:\n    print('error', exc)\n"
)


def _nostrdvm_reads(invoice: str) -> str:
    out = subprocess.run(
        [str(NOSTRDVM_PYTHON), "-c", READ_AMOUNT, invoice],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def _invoice(db: Path, msats: int) -> str:
    with Ledger(db) as ledger:
        account = ledger.create_account("provider")
        invoice = ledger.make_invoice(account.id, msats, "job").invoice
    assert invoice is not None
    return invoice


def test_new_account_on_bitcoin_issues_invoices_nostrdvm_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_nostrdvm()
    db = tmp_path / "wallet.db"
    args = ["wallet", "new-account", "--db", str(db), "--relay", RELAY, "--json"]
    assert main([*args, "--network", "bitcoin"]) == 0
    assert json.loads(capsys.readouterr().out)["account"] == 1
    invoice = _invoice(db, 21_000)
    assert invoice.startswith("lnbc210n1")
    assert _nostrdvm_reads(invoice) == "21"
    # The network is fixed once the ledger exists: asking for another one is refused.
    assert main([*args, "--network", "regtest"]) == 2
    assert "bitcoin" in capsys.readouterr().err


def test_the_default_regtest_invoices_are_what_nostrdvm_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_nostrdvm()
    db = tmp_path / "wallet.db"
    assert main(["wallet", "new-account", "--db", str(db), "--relay", RELAY]) == 0
    invoice = _invoice(db, 21_000)
    assert invoice.startswith("lnbcrt")
    assert _nostrdvm_reads(invoice).startswith("error")
