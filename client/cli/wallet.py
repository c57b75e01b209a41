"""`swarm wallet`: run the local NWC wallet service, open accounts, show balances and history."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from typing import Any

from client.cli.common import add_relay_option
from client.nostr.errors import NostrSwarmError
from client.wallet.interface import Transaction
from client.wallet.nwc import NwcWallet
from client.wallet.payment_ledger import PaymentLedger
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.service import WalletService, connection_uri

URI_ENV = "SWARM_NWC"  # the same variable `swarm ask` and the gateway read
LEGACY_URI_ENV = "NOSTR_SWARM_NWC"  # accepted too


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "wallet",
        help="local Lightning wallet service (NWC) and wallet inspection",
        description=(
            "Payments in sats. `serve` runs a NIP-47 (Nostr Wallet Connect) wallet service over "
            "any relay, backed by a local SQLite ledger that plays the Lightning network (real "
            "signed BOLT11 invoices, settled between its accounts). `new-account` opens a "
            "funded account and prints its nostr+walletconnect:// URI. `balance` and `history` "
            "work on an NWC URI (any wallet), on a ledger account, or on a customer's payment "
            "ledger."
        ),
    )
    ws = p.add_subparsers(dest="wallet_command", metavar="ACTION", required=True)

    serve = ws.add_parser(
        "serve",
        help="run the NWC wallet service for a ledger's accounts",
        description="Answer NIP-47 requests on the given relays until interrupted (Ctrl-C).",
    )
    add_relay_option(serve, required=True, what="relay to answer NWC requests on")
    serve.add_argument(
        "--db", required=True, metavar="PATH", help="ledger file (created if missing)"
    )
    serve.add_argument(
        "--network",
        default=None,
        choices=("regtest", "signet", "testnet", "bitcoin"),
        help="network of the invoices, fixed when the ledger is created (default: regtest)",
    )
    serve.add_argument(
        "--nip04-only", action="store_true", help="offer only NIP-04 encryption (legacy clients)"
    )
    serve.set_defaults(handler=_serve)

    new = ws.add_parser(
        "new-account",
        help="open an account and print its NWC connection URI",
        description="Open a ledger account, fund it with --sats, print a nostr+walletconnect:// "
        "URI. The URI holds a secret: whoever has it can spend from the account.",
    )
    new.add_argument("--db", required=True, metavar="PATH", help="ledger file (created if missing)")
    add_relay_option(new, required=True, what="relay the service listens on (written into the URI)")
    new.add_argument("--sats", type=int, default=0, help="starting balance in sats (default 0)")
    new.add_argument("--name", default="", help="a label for the account")
    new.add_argument("--json", action="store_true", help="print JSON instead of the bare URI")
    new.add_argument(
        "--network",
        default=None,
        choices=("regtest", "signet", "testnet", "bitcoin"),
        help="network of the invoices, fixed when the ledger is created (default: regtest; "
        "bitcoin gives lnbc… invoices, which other DVM software can parse)",
    )
    new.set_defaults(handler=_new_account)

    for name, helptext, fn in (
        ("balance", "show a wallet's balance", _balance),
        ("history", "list a wallet's payments and invoices", _history),
    ):
        cmd = ws.add_parser(
            name,
            help=helptext,
            description=f"{helptext[0].upper()}{helptext[1:]}: of an NWC wallet (--uri, or "
            f"${URI_ENV}), of a ledger account (--db with --account)"
            + (", or of a customer's payment ledger (--payments)." if name == "history" else "."),
        )
        cmd.add_argument("--uri", default=None, help=f"NWC connection URI (default: ${URI_ENV})")
        cmd.add_argument("--db", default=None, metavar="PATH", help="a local ledger file")
        cmd.add_argument("--account", type=int, default=None, help="account id in --db")
        if name == "history":
            cmd.add_argument(
                "--payments", default=None, metavar="PATH", help="a customer's payment ledger file"
            )
            cmd.add_argument(
                "--limit", type=int, default=20, help="most entries to show (default 20)"
            )
        cmd.add_argument(
            "--timeout", type=float, default=10.0, help="seconds to wait for an NWC wallet"
        )
        cmd.add_argument("--json", action="store_true", help="print JSON")
        cmd.set_defaults(handler=fn)

    accounts = ws.add_parser(
        "accounts",
        help="list a ledger's accounts and check that its total is conserved",
        description="List the accounts of a local ledger, their balances, and the total against "
        "all deposits (they must be equal: payments only move money).",
    )
    accounts.add_argument("--db", required=True, metavar="PATH", help="ledger file")
    accounts.add_argument("--json", action="store_true", help="print JSON")
    accounts.set_defaults(handler=_accounts)


def sats(msats: int) -> str:
    """Sats for people, exact: '21 sats', '21.005 sats'."""
    if msats % 1000 == 0:
        return f"{msats // 1000:,} sats"
    return f"{msats // 1000:,}.{msats % 1000:03d} sats"


def _fail(message: str, code: int = 1) -> int:
    print(f"swarm wallet: {message}", file=sys.stderr)
    return code


# --- serve ---------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    try:
        ledger = Ledger(args.db, network=args.network)
    except NostrSwarmError as exc:
        return _fail(str(exc), 2)
    encryptions = ("nip04",) if args.nip04_only else ("nip44_v2", "nip04")
    try:
        asyncio.run(_run_service(ledger, args.relay, encryptions))
    finally:
        ledger.close()
    return 0


async def _run_service(ledger: Ledger, relays: list[str], encryptions: tuple[str, ...]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with WalletService(ledger, relays, encryptions=encryptions) as service:
        print(
            f"NWC wallet service {service.pubkey} ({ledger.network}) serving "
            f"{len(ledger.accounts())} account(s) on {', '.join(relays)}",
            flush=True,
        )
        await stop.wait()
    print(f"stopped after {service.served} request(s)", file=sys.stderr)


# --- accounts ------------------------------------------------------------------------------


def _new_account(args: argparse.Namespace) -> int:
    if args.sats < 0:
        return _fail("--sats must be 0 or more", 2)
    try:
        with Ledger(args.db, network=args.network) as ledger:
            account = ledger.create_account(args.name, msats=args.sats * 1000)
            uri = connection_uri(ledger, account.id, args.relay)
            service = ledger.service_keys.public_key
    except NostrSwarmError as exc:
        return _fail(str(exc), 2)
    if args.json:
        print(
            json.dumps(
                {
                    "account": account.id,
                    "name": account.name,
                    "balance_msats": account.balance_msats,
                    "service_pubkey": service,
                    "uri": uri,
                },
                indent=2,
            )
        )
    else:
        print(uri)
        print(
            f"account {account.id} with {sats(account.balance_msats)}; keep the URI secret",
            file=sys.stderr,
        )
    return 0


def _accounts(args: argparse.Namespace) -> int:
    try:
        with Ledger(args.db) as ledger:
            rows = ledger.accounts()
            total, deposited = ledger.total_msats(), ledger.deposits_msats()
            network = ledger.network
    except NostrSwarmError as exc:
        return _fail(str(exc), 2)
    if args.json:
        print(
            json.dumps(
                {
                    "network": network,
                    "accounts": [
                        {"id": a.id, "name": a.name, "balance_msats": a.balance_msats} for a in rows
                    ],
                    "total_msats": total,
                    "deposits_msats": deposited,
                    "conserved": total == deposited,
                },
                indent=2,
            )
        )
    else:
        for a in rows:
            print(f"{a.id:>4}  {a.name or '-':<20} {sats(a.balance_msats):>20}")
        state = (
            "conserved" if total == deposited else f"OUT OF BALANCE (deposits {sats(deposited)})"
        )
        print(f"total {sats(total)} on {network}: {state}")
    return 0 if total == deposited else 1


# --- balance and history -------------------------------------------------------------------


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
        _fail(
            f"give exactly one of --uri (or ${URI_ENV}), --db with --account"
            + (", --payments" if hasattr(args, "payments") else ""),
            2,
        )
        return None
    if chosen[0] == "db" and args.account is None:
        _fail("--db needs --account", 2)
        return None
    args.uri = uri
    return chosen[0]


def _balance(args: argparse.Namespace) -> int:
    source = _source(args)
    if source is None:
        return 2
    try:
        if source == "db":
            with Ledger(args.db) as ledger:
                msats = ledger.balance(args.account)
        else:
            msats = asyncio.run(_nwc_balance(args.uri, args.timeout))
    except NostrSwarmError as exc:
        return _fail(str(exc))
    print(json.dumps({"balance_msats": msats}) if args.json else sats(msats))
    return 0


async def _nwc_balance(uri: str, wait: float) -> int:
    async with NwcWallet(uri, timeout=wait) as wallet:
        return await wallet.get_balance()


async def _nwc_history(uri: str, wait: float, limit: int) -> list[Transaction]:
    async with NwcWallet(uri, timeout=wait) as wallet:
        return await wallet.list_transactions(limit=limit, unpaid=True)


def _history(args: argparse.Namespace) -> int:
    source = _source(args)
    if source is None:
        return 2
    try:
        if source == "payments":
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
            if source == "db":
                with Ledger(args.db) as ledger:
                    txs = ledger.transactions(args.account, limit=args.limit, unpaid=True)
            else:
                txs = asyncio.run(_nwc_history(args.uri, args.timeout, args.limit))
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
        return _fail(str(exc))
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
