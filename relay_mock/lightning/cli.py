"""The local ledger's actions of `swarm wallet`: `serve` (the NWC wallet service), `new-account`
and `accounts`. They are registered in pyproject.toml's ``nostr_swarm.wallet_commands`` group,
so `swarm wallet` (in ``client``, which imports nothing above it) finds them by name.

Modules are imported when an action runs, not when `swarm wallet` builds its parser.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import TYPE_CHECKING, Any, TypeAlias

from client.cli.common import add_relay_option
from client.cli.wallet import fail, sats
from client.nostr.errors import NostrSwarmError

if TYPE_CHECKING:
    from relay_mock.lightning.ledger import Ledger

NETWORKS = ("regtest", "signet", "testnet", "bitcoin")
# A string: argparse's class is generic in its stubs only, not at run time.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register_serve(ws: Subparsers) -> None:
    serve = ws.add_parser(
        "serve",
        help="run the NWC wallet service for a local ledger's accounts",
        description="Answer NIP-47 requests for the accounts of a local ledger (a SQLite file "
        "that plays the Lightning network) on the given relays until interrupted (Ctrl-C). "
        "The first line on stdout says it is serving (with --json: one JSON object, with the "
        "URIs of the accounts --new-account opened).",
    )
    add_relay_option(serve, required=True, what="relay to answer NWC requests on")
    serve.add_argument(
        "--db", required=True, metavar="PATH", help="ledger file (created if missing)"
    )
    serve.add_argument(
        "--network",
        default=None,
        choices=NETWORKS,
        help="network of the invoices, fixed when the ledger is created (default: regtest)",
    )
    serve.add_argument(
        "--nip04-only", action="store_true", help="offer only NIP-04 encryption (legacy clients)"
    )
    serve.add_argument(
        "--new-account",
        action="append",
        default=[],
        type=_account_spec,
        metavar="NAME[=SATS]",
        help="open an account with SATS sats (default 0) before serving and print its "
        "connection URI; repeat for several",
    )
    serve.add_argument(
        "--json",
        action="store_true",
        help="print the ready line as JSON: service_pubkey, network, relays, new_accounts "
        "(account, name, balance_msats, uri)",
    )
    serve.set_defaults(handler=_serve)


def register_new_account(ws: Subparsers) -> None:
    new = ws.add_parser(
        "new-account",
        help="open a local ledger account and print its NWC connection URI",
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
        choices=NETWORKS,
        help="network of the invoices, fixed when the ledger is created (default: regtest; "
        "bitcoin gives lnbc… invoices, which other DVM software can parse)",
    )
    new.set_defaults(handler=_new_account)


def register_accounts(ws: Subparsers) -> None:
    accounts = ws.add_parser(
        "accounts",
        help="list a local ledger's accounts and check that its total is conserved",
        description="List the accounts of a local ledger, their balances, and the total against "
        "all deposits (they must be equal: payments only move money).",
    )
    accounts.add_argument("--db", required=True, metavar="PATH", help="ledger file")
    accounts.add_argument("--json", action="store_true", help="print JSON")
    accounts.set_defaults(handler=_accounts)


def _account_spec(text: str) -> tuple[str, int]:
    """``NAME[=SATS]`` as (name, sats)."""
    name, sep, amount = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME or NAME=SATS")
    if not sep:
        return name, 0
    if not amount.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: SATS must be a whole number, 0 or more")
    return name, int(amount)


# --- serve ---------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from relay_mock.lightning.ledger import Ledger
    from relay_mock.lightning.service import connection_uri

    try:
        ledger = Ledger(args.db, network=args.network)
    except NostrSwarmError as exc:
        return fail(str(exc), 2)
    encryptions = ("nip04",) if args.nip04_only else ("nip44_v2", "nip04")
    try:
        opened = []
        for name, amount in args.new_account:
            account = ledger.create_account(name, msats=amount * 1000)
            uri = connection_uri(ledger, account.id, args.relay)
            opened.append(
                {
                    "account": account.id,
                    "name": account.name,
                    "balance_msats": account.balance_msats,
                    "uri": uri,
                }
            )
        asyncio.run(_run_service(ledger, args.relay, encryptions, opened, as_json=args.json))
    finally:
        ledger.close()
    return 0


async def _run_service(
    ledger: Ledger,
    relays: list[str],
    encryptions: tuple[str, ...],
    opened: list[dict[str, Any]],
    *,
    as_json: bool,
) -> None:
    from relay_mock.lightning.service import WalletService

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with WalletService(ledger, relays, encryptions=encryptions) as service:
        # Printed once the service listens: a client may use a URI as soon as it reads it.
        if as_json:
            ready = {
                "service_pubkey": service.pubkey,
                "network": ledger.network,
                "relays": list(relays),
                "new_accounts": opened,
            }
            print(json.dumps(ready), flush=True)
        else:
            print(
                f"NWC wallet service {service.pubkey} ({ledger.network}) serving "
                f"{len(ledger.accounts())} account(s) on {', '.join(relays)}",
                flush=True,
            )
            for a in opened:
                print(f"account {a['account']} {a['name']}: {a['uri']}", flush=True)
        await stop.wait()
    print(f"stopped after {service.served} request(s)", file=sys.stderr)


# --- accounts ------------------------------------------------------------------------------


def _new_account(args: argparse.Namespace) -> int:
    from relay_mock.lightning.ledger import Ledger
    from relay_mock.lightning.service import connection_uri

    if args.sats < 0:
        return fail("--sats must be 0 or more", 2)
    try:
        with Ledger(args.db, network=args.network) as ledger:
            account = ledger.create_account(args.name, msats=args.sats * 1000)
            uri = connection_uri(ledger, account.id, args.relay)
            service = ledger.service_keys.public_key
    except NostrSwarmError as exc:
        return fail(str(exc), 2)
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
    from relay_mock.lightning.ledger import Ledger

    try:
        with Ledger(args.db) as ledger:
            rows = ledger.accounts()
            total, deposited = ledger.total_msats(), ledger.deposits_msats()
            network = ledger.network
    except NostrSwarmError as exc:
        return fail(str(exc), 2)
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
