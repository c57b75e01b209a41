"""`swarm wallet`: balances and history of a wallet; installed packages add their own actions.

`balance` and `history` are here: of an NWC wallet (any), of a customer's payment ledger, or of
an account of a local ledger (``--db``, opened as the ``ledger`` wallet kind through
``client.wallet.open_wallet``). Other actions come from the ``nostr_swarm.wallet_commands``
entry-point group: relay_mock's local Lightning ledger registers `serve`, `new-account` and
`accounts` there (relay_mock/lightning/cli.py), so this bottom-layer package never imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from importlib.metadata import entry_points
from typing import Any

from client.cli.command import load_command
from client.nostr.errors import NostrSwarmError
from client.wallet.interface import Transaction, Wallet

URI_ENV = "SWARM_NWC"  # the same variable `swarm ask` and the gateway read
LEGACY_URI_ENV = "NOSTR_SWARM_NWC"  # accepted too
ACTIONS_GROUP = "nostr_swarm.wallet_commands"
# The actions in the order `swarm wallet --help` lists them (others alphabetically after).
ORDER = ("serve", "new-account", "balance", "history", "accounts")
LEDGER_KIND = "ledger"  # the wallet kind --db opens


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "wallet",
        help="local Lightning wallet service (NWC) and wallet inspection",
        description=(
            "Payments in sats. `balance` and `history` work on an NWC URI (any wallet), on an "
            "account of a local ledger (--db with --account), or (history) on a customer's "
            "payment ledger. With relay_mock installed, `serve` runs a NIP-47 (Nostr Wallet "
            "Connect) wallet service over any relay, backed by a local SQLite ledger that plays "
            "the Lightning network (real signed BOLT11 invoices, settled between its accounts); "
            "`new-account` opens a funded account and prints its nostr+walletconnect:// URI; "
            "`accounts` lists a ledger's accounts."
        ),
    )
    ws = p.add_subparsers(dest="wallet_command", metavar="ACTION", required=True)
    own = {"balance": _register_balance, "history": _register_history}
    plugins = {ep.name: ep for ep in entry_points(group=ACTIONS_GROUP) if ep.name not in own}
    names = [n for n in ORDER if n in own or n in plugins]
    names += sorted(n for n in plugins if n not in ORDER)
    for name in names:
        if name in own:
            own[name](ws)
        else:
            load_command(plugins[name], parent="swarm wallet")(ws)


def sats(msats: int) -> str:
    """Sats for people, exact: '21 sats', '21.005 sats'."""
    if msats % 1000 == 0:
        return f"{msats // 1000:,} sats"
    return f"{msats // 1000:,}.{msats % 1000:03d} sats"


def fail(message: str, code: int = 1) -> int:
    """Say what went wrong on stderr (``swarm wallet: …``); return the exit code."""
    print(f"swarm wallet: {message}", file=sys.stderr)
    return code


# --- balance and history -------------------------------------------------------------------


def _add_source_options(cmd: argparse.ArgumentParser, *, payments: bool) -> None:
    cmd.add_argument("--uri", default=None, help=f"NWC connection URI (default: ${URI_ENV})")
    cmd.add_argument(
        "--db", default=None, metavar="PATH", help="a local ledger file (with --account)"
    )
    cmd.add_argument("--account", type=int, default=None, help="account id in --db")
    if payments:
        cmd.add_argument(
            "--payments", default=None, metavar="PATH", help="a customer's payment ledger file"
        )
    cmd.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for an NWC wallet"
    )
    cmd.add_argument("--json", action="store_true", help="print JSON")


def _register_balance(ws: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = ws.add_parser(
        "balance",
        help="show a wallet's balance",
        description=f"Show a wallet's balance: of an NWC wallet (--uri, or ${URI_ENV}), of a "
        "local ledger account (--db with --account).",
    )
    _add_source_options(cmd, payments=False)
    cmd.set_defaults(handler=_balance)


def _register_history(ws: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = ws.add_parser(
        "history",
        help="list a wallet's payments and invoices",
        description=f"List a wallet's payments and invoices: of an NWC wallet (--uri, or "
        f"${URI_ENV}), of a local ledger account (--db with --account), or of a customer's "
        "payment ledger (--payments).",
    )
    _add_source_options(cmd, payments=True)
    cmd.add_argument("--limit", type=int, default=20, help="most entries to show (default 20)")
    cmd.set_defaults(handler=_history)


def _source(args: argparse.Namespace) -> str | None:
    """'uri', 'db', 'payments', or None after printing what is missing."""
    uri = args.uri or os.environ.get(URI_ENV) or os.environ.get(LEGACY_URI_ENV)
    chosen = [
        name
        for name, on in (
            (
                "uri",
                bool(args.uri) or (uri and not args.db and not getattr(args, "payments", None)),
            ),
            ("db", args.db is not None),
            ("payments", getattr(args, "payments", None) is not None),
        )
        if on
    ]
    if len(chosen) != 1:
        fail(
            f"give exactly one of --uri (or ${URI_ENV}), --db with --account"
            + (", --payments" if hasattr(args, "payments") else ""),
            2,
        )
        return None
    if chosen[0] == "db" and args.account is None:
        fail("--db needs --account", 2)
        return None
    args.uri = uri
    return chosen[0]


def _open(args: argparse.Namespace, source: str) -> Wallet:
    """The wallet ``source`` names: NWC, or an account of a local ledger."""
    if source == "db":
        from client.wallet.registry import open_wallet

        return open_wallet(LEDGER_KIND, args.db, account=args.account)
    from client.wallet.nwc import NwcWallet

    return NwcWallet(args.uri, timeout=args.timeout)


async def _read_balance(wallet: Wallet) -> int:
    async with wallet:
        return await wallet.get_balance()


async def _read_history(wallet: Wallet, limit: int) -> list[Transaction]:
    async with wallet:
        return await wallet.list_transactions(limit=limit, unpaid=True)


def _balance(args: argparse.Namespace) -> int:
    source = _source(args)
    if source is None:
        return 2
    try:
        msats = asyncio.run(_read_balance(_open(args, source)))
    except NostrSwarmError as exc:
        return fail(str(exc))
    print(json.dumps({"balance_msats": msats}) if args.json else sats(msats))
    return 0


def _history(args: argparse.Namespace) -> int:
    source = _source(args)
    if source is None:
        return 2
    try:
        if source == "payments":
            from client.wallet.payment_ledger import PaymentLedger

            with PaymentLedger(args.payments) as book:
                records = book.history(limit=args.limit)
            rows: list[dict[str, Any]] = [
                {
                    "when": r.updated_at,
                    "state": r.state,
                    "amount_msats": r.amount_msats,
                    "job": r.job_id,
                    "provider": r.provider,
                    "payment_hash": r.payment_hash,
                    "error": r.error,
                }
                for r in records
            ]
        else:
            txs = asyncio.run(_read_history(_open(args, source), args.limit))
            rows = [
                {
                    "when": t.settled_at or t.created_at,
                    "state": t.state or ("settled" if t.settled else "?"),
                    "type": t.type,
                    "amount_msats": t.amount,
                    "description": t.description,
                    "payment_hash": t.payment_hash,
                }
                for t in txs
            ]
    except NostrSwarmError as exc:
        return fail(str(exc))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no payments yet")
    for row in rows:
        sign = "-" if row.get("type", "outgoing") == "outgoing" else "+"
        who = row.get("provider") or row.get("description") or ""
        print(
            f"{row['when']:>11}  {row['state']:<8} {sign}{sats(row['amount_msats']):>16}  "
            f"{row['payment_hash'][:16]}…  {str(who)[:40]}"
        )
        if row.get("error"):  # why it failed, why it is unknown, or how it was resolved
            print(f"{'':>11}  {row['error']}")
    return 0
