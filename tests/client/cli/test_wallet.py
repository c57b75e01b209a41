"""`swarm wallet`: new-account, accounts, balance, history in process; `serve` as a real process
answering NWC over relay_mock. The ledger's actions and `--db` come from entry points that
relay_mock registers: client/ imports none of relay_mock."""

from __future__ import annotations

import ast
import asyncio
import json
import signal
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from client.cli import main
from client.cli import wallet as wallet_cli
from client.cli.wallet import sats
from client.wallet import nip47
from client.wallet.invoices import decode_invoice
from client.wallet.nwc import NwcWallet
from client.wallet.payment_ledger import PaymentLedger
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger

RELAY = "ws://127.0.0.1:7777"


def test_sats_formatting_is_exact() -> None:
    assert sats(21_000) == "21 sats"
    assert sats(21_005) == "21.005 sats"
    assert sats(1_234_567_000) == "1,234,567 sats"
    assert sats(7) == "0.007 sats"


def test_new_account_prints_a_working_uri(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "w.db"
    assert main(["wallet", "new-account", "--db", str(db), "--relay", RELAY, "--sats", "21"]) == 0
    uri = nip47.NwcUri.parse(capsys.readouterr().out.strip())
    assert uri.relays == (RELAY,)
    with Ledger(db) as ledger:
        assert uri.wallet_pubkey == ledger.service_keys.public_key
        account = ledger.account_for_client(uri.client_keys.public_key)
        assert account is not None and ledger.balance(account) == 21_000
    assert main(["wallet", "new-account", "--db", str(db), "--relay", RELAY, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["account"] == 2 and info["balance_msats"] == 0


def test_accounts_balance_and_history_on_a_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "w.db"
    with Ledger(db) as ledger:
        a = ledger.create_account("alice", msats=50_000)
        b = ledger.create_account("bob")
        tx = ledger.make_invoice(b.id, 1_500, "coffee")
        ledger.pay_invoice(a.id, tx.invoice or "")
    assert main(["wallet", "accounts", "--db", str(db), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["conserved"] and listing["total_msats"] == 50_000
    assert main(["wallet", "balance", "--db", str(db), "--account", str(a.id)]) == 0
    assert capsys.readouterr().out.strip() == "48.500 sats"
    assert main(["wallet", "history", "--db", str(db), "--account", str(b.id), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["type"], row["state"], row["amount_msats"]) == ("incoming", "settled", 1_500)


def test_history_of_a_customer_payment_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from client.nostr.keys import Keys
    from client.wallet.invoices import make_invoice

    path = tmp_path / "payments.db"
    inv = decode_invoice(
        make_invoice(Keys.generate().secret_hex, amount_msats=2_000, created_at=1).bolt11
    )
    with PaymentLedger(path) as book:
        book.begin(inv, job_id="j" * 64, provider="p" * 64, now=10)
        book.mark_paid(inv.payment_hash, "00" * 32, 11)
    assert main(["wallet", "history", "--payments", str(path), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["state"], row["amount_msats"], row["provider"]) == ("paid", 2_000, "p" * 64)


def test_bad_invocations_fail_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "w.db"
    assert main(["wallet", "balance", "--db", str(db)]) == 2
    assert "--account" in capsys.readouterr().err
    assert main(["wallet", "balance", "--uri", "not-a-uri"]) == 1
    assert "nostr+walletconnect" in capsys.readouterr().err
    assert main(["wallet", "new-account", "--db", str(db), "--relay", RELAY, "--sats", "-1"]) == 2


async def test_serve_answers_nwc_over_a_relay(
    relay: Relay,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = str(tmp_path / "w.db")
    uris = []
    for amount in ("100", "0"):
        code = await asyncio.to_thread(
            main,
            ["wallet", "new-account", "--db", db, "--relay", relay.url, "--sats", amount, "--json"],
        )
        assert code == 0
        uris.append(json.loads(capsys.readouterr().out)["uri"])
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client.cli",
        "wallet",
        "serve",
        "--relay",
        relay.url,
        "--db",
        db,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)  # type: ignore[union-attr]
        assert b"serving 2 account(s)" in line
        async with NwcWallet(uris[0], timeout=5) as payer, NwcWallet(uris[1], timeout=5) as payee:
            invoice = await payee.make_invoice(30_000, "via cli service")
            await payer.pay_invoice(invoice)
            assert await payee.get_balance() == 30_000
        monkeypatch.setenv("SWARM_NWC", uris[0])
        assert await asyncio.to_thread(main, ["wallet", "balance", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"balance_msats": 70_000}
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == 0
    with Ledger(db) as ledger:
        assert ledger.balance(1) == 70_000 and ledger.check_conservation() == 100_000


async def test_history_shows_an_unknown_payment_and_how_it_was_resolved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The wallet pays but its answer is lost: the ledger says unknown, the history shows it,
    and after a lookup it says paid and how that was learned."""
    from client.nostr.errors import WalletTimeout
    from client.wallet import Payer
    from relay_mock.lightning.wallet import LedgerWallet
    from tests.support.lightning import SpyWallet

    with Ledger(tmp_path / "network.db") as net:
        customer = net.create_account("c", msats=100_000).id
        seller = net.create_account("s").id
        bolt11 = net.make_invoice(seller, 3_000, "x").invoice
        assert bolt11 is not None
        wallet = SpyWallet(LedgerWallet(net, customer))
        wallet.fail_after = WalletTimeout("pay_invoice: the wallet did not answer within 1s")
        path = tmp_path / "payments.db"
        with PaymentLedger(path) as book:
            payer = Payer(wallet, book)
            out = await payer.pay("j" * 64, "p" * 64, bolt11, quote_msats=3_000, bid_msats=3_000)
            assert out.status == "unknown" and out.amount_msats == 3_000
            assert main(["wallet", "history", "--payments", str(path)]) == 0
            shown = capsys.readouterr().out
            assert "unknown" in shown and "did not answer" in shown
            await payer.resolve_open()
        assert net.balance(customer) == 97_000 and wallet.pay_calls == 1  # never paid again
        assert main(["wallet", "history", "--payments", str(path), "--json"]) == 0
        [row] = json.loads(capsys.readouterr().out)
        assert row["state"] == "paid"
        assert row["error"].startswith("resolved by lookup_invoice: paid; outcome was unknown")


async def test_serve_opens_accounts_and_prints_one_json_ready_line(
    relay: Relay, tmp_path: Path
) -> None:
    """What `swarm demo` reads: the service key, and each new account with its URI, in the
    first line it prints, once it answers."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client.cli",
        "wallet",
        "serve",
        "--relay",
        relay.url,
        "--db",
        str(tmp_path / "w.db"),
        "--json",
        "--new-account",
        "customer=21",
        "--new-account",
        "shop",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)  # type: ignore[union-attr]
        ready = json.loads(line)
        assert ready["relays"] == [relay.url] and ready["network"] == "regtest"
        customer, shop = ready["new_accounts"]
        assert (customer["name"], customer["balance_msats"], shop["name"]) == (
            "customer",
            21_000,
            "shop",
        )
        async with (
            NwcWallet(customer["uri"], timeout=5) as a,
            NwcWallet(shop["uri"], timeout=5) as b,
        ):
            assert a.wallet_pubkey == ready["service_pubkey"]
            await a.pay_invoice(await b.make_invoice(1_000, "tea"))
            assert (await a.get_balance(), await b.get_balance()) == (20_000, 1_000)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == 0


def test_new_account_spec_must_be_a_name_and_whole_sats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for bad in ("x=1.5", "=3", "x=-1"):
        with pytest.raises(SystemExit) as e:
            main(
                [
                    "wallet",
                    "serve",
                    "--db",
                    str(tmp_path / "w.db"),
                    "--relay",
                    RELAY,
                    "--new-account",
                    bad,
                ]
            )
        assert e.value.code == 2
        assert "NAME" in capsys.readouterr().err


def test_an_action_whose_package_is_broken_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken_wallet_cmd.py").write_text(
        "import ledger_dependency_not_installed  # noqa: F401\n\ndef register(ws): ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint("serve", "broken_wallet_cmd:register", wallet_cli.ACTIONS_GROUP)
    monkeypatch.setattr(wallet_cli, "entry_points", lambda group: [ep])
    assert main(["wallet", "serve", "--db", "x.db", "--relay", RELAY]) == 2
    err = capsys.readouterr().err
    assert (
        "swarm wallet serve is unavailable: No module named 'ledger_dependency_not_installed'"
        in err
    )
    # balance and history are client's own: still there.
    assert main(["wallet", "balance", "--uri", "not-a-uri"]) == 1


def test_client_imports_no_stand_in() -> None:
    """relay_mock -> client only: no module of client/ imports relay_mock; importing `swarm
    wallet` and the wallet registry loads none of it (the entry points do, when run)."""
    root = Path(__file__).resolve().parents[3]
    found = [
        f"{path.relative_to(root)}: {alias}"
        for path in sorted((root / "client").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        for alias in (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.level == 0
            else []
        )
        if alias.split(".")[0] == "relay_mock"
    ]
    assert found == []
    code = (
        "import sys, client.cli.wallet, client.wallet, client.wallet.registry; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'relay_mock'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
