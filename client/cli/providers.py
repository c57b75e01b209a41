"""`swarm providers`: who sells kind-5050 completions on these relays, from their NIP-89
announcements and heartbeats, with this customer's reputation figures when a ledger exists."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from client.cli.common import add_json_option, add_key_option, add_relay_option
from client.cli.reputation import open_ledger, record_dict
from client.customer.directory import ProviderDirectory, ProviderInfo, discover
from client.customer.reputation import ReputationLedger
from client.net.pool import RelayPool
from client.nostr.errors import NostrSwarmError

EXIT_OK = 0
EXIT_NONE = 1
EXIT_USAGE = 2
EXIT_RELAY = 3

EPILOG = """\
Reads kind-31990 announcements with ["k", "5050"] (docs/provider-guide.md). A provider is online
while its heartbeat is fresh: status online and at most 2 heartbeats + 60 s old, not expired.
Score and jobs come from your reputation ledger (`swarm reputation show`), if there is one.
Environment: SWARM_RELAYS (comma- or space-separated) when --relay is not given.

exit codes: 0 listed; 1 no provider found; 2 bad arguments; 3 no relay reachable.

example:
  swarm providers --relay ws://127.0.0.1:7447
  swarm providers --relay wss://relay.example --model llama3.2:1b --json
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "providers",
        help="list the providers announced on the relays (NIP-89) as a table",
        description="List the kind-5050 providers announced on the relays: models, prices, "
        "payment policy, encryption, last heartbeat, and your reputation figures for them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_relay_option(p)
    p.add_argument("--model", "-m", help="only providers serving this model")
    p.add_argument(
        "--all",
        action="store_true",
        help="also providers that are offline or missed their heartbeats",
    )
    p.add_argument(
        "--swarm-only",
        action="store_true",
        help="only nostr-swarm nodes (the 't' tag), not other NIP-90 services",
    )
    p.add_argument(
        "--timeout",
        "-t",
        type=float,
        default=5.0,
        help="seconds to wait for the relays' stored announcements (5)",
    )
    p.add_argument("--ledger", metavar="PATH", help="reputation ledger to show scores from")
    add_key_option(p, what="whose reputation records to show")
    p.add_argument("--customer", metavar="NPUB", help="whose reputation records, by public key")
    add_json_option(p)
    p.set_defaults(handler=_providers)


def _ago(t: float, now: float) -> str:
    s = max(0.0, now - t)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.0f}{unit} ago"
    return f"{s:.0f}s ago"


def _price(info: ProviderInfo, model: str | None) -> str:
    if info.is_free:
        return "free"
    price = info.price_for(model)
    if price is None:
        return "?"
    min_sats = -(-price.min_msats // 1000)
    return (
        f"min {min_sats} sats; {price.msats_per_1k_prompt}/{price.msats_per_1k_completion} "
        "msats per 1k"
    )


def _models(info: ProviderInfo) -> str:
    if not info.models:
        return "any"
    shown = ", ".join(info.models[:3])
    return shown + (f" +{len(info.models) - 3}" if len(info.models) > 3 else "")


def build_rows(
    directory: ProviderDirectory,
    ledger: ReputationLedger | None,
    *,
    model: str | None,
    include_dead: bool,
) -> list[dict[str, Any]]:
    """One dict per provider (alive first, best score first), as ``--json`` prints them."""
    now = directory.clock()
    infos = [i for i in directory.all() if i.serves(model) and (include_dead or i.alive(now))]
    rows: list[dict[str, Any]] = []
    for info in infos:
        row = info.to_dict(now)
        rec = ledger.get(info.pubkey) if ledger is not None else None
        if ledger is not None:
            row["reputation"] = (
                record_dict(rec, rec.score_with(ledger.weights)) if rec is not None else None
            )
            row["score"] = ledger.score(info.pubkey)
        rows.append(row)
    rows.sort(key=lambda r: (not r["alive"], -r.get("score", 0.5), -r["last_seen"]))
    return rows


def _table(rows: list[dict[str, Any]], infos: dict[str, ProviderInfo], model: str | None) -> Table:
    now = time.time()
    t = Table(title=f"{len(rows)} provider(s)", title_justify="left")
    for col in ("provider", "name", "status", "models", "payment", "price", "enc", "seen"):
        t.add_column(col, overflow="fold" if col == "price" else "ellipsis")
    with_rep = any("score" in r for r in rows)
    if with_rep:
        t.add_column("score", justify="right")
        t.add_column("jobs", justify="right")
    styles = {"online": "green", "offline": "red", "stale": "yellow", "expired": "red"}
    for r in rows:
        info = infos[r["pubkey"]]
        npub = r["npub"]
        status = r["status"]
        cells = [
            npub[:14] + "…" + npub[-4:],
            (info.name or "")[:24],
            f"[{styles.get(status, 'dim')}]{status}[/]",
            _models(info),
            info.payment,
            _price(info, model),
            ",".join(info.encryption) or "-",
            _ago(info.created_at, now),
        ]
        if with_rep:
            rep = r.get("reputation")
            cells += [f"{r['score']:.2f}", str(rep["jobs"]) if rep else "0"]
        t.add_row(*cells)
    return t


async def _discover(relays: list[str], wait_s: float, swarm_only: bool) -> ProviderDirectory:
    async with RelayPool(relays, connect_timeout=min(wait_s, 5.0)) as pool:
        if not pool.connected_urls():
            raise ConnectionError("no relay reachable: " + ", ".join(relays))
        return await discover(pool, timeout=wait_s, swarm_only=swarm_only)


def _providers(args: argparse.Namespace) -> int:
    out, err = Console(highlight=False), Console(stderr=True, highlight=False)
    if not out.is_terminal:  # piped: do not squeeze the table into 80 columns
        out = Console(highlight=False, width=160)
    relays = args.relay  # the flags, else SWARM_RELAYS
    if not relays:
        err.print("swarm providers: give at least one --relay URL (or set SWARM_RELAYS)")
        return EXIT_USAGE
    if args.timeout <= 0:
        err.print("swarm providers: --timeout must be positive")
        return EXIT_USAGE
    ledger: ReputationLedger | None = None
    try:
        ledger = open_ledger(args)
    except ValueError as exc:
        if args.ledger or args.key or args.customer:  # asked for explicitly: say why not
            err.print(f"swarm providers: {exc}")
            return EXIT_USAGE
    try:
        directory = asyncio.run(_discover(relays, args.timeout, args.swarm_only))
    except (ConnectionError, NostrSwarmError, OSError) as exc:
        err.print(f"swarm providers: {exc}")
        return EXIT_RELAY
    try:
        rows = build_rows(directory, ledger, model=args.model, include_dead=args.all)
    finally:
        if ledger is not None:
            ledger.close()
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        out.print(_table(rows, {i.pubkey: i for i in directory.all()}, args.model))
    else:
        what = f" serving {args.model}" if args.model else ""
        err.print(
            f"no provider{what} online on {', '.join(relays)}"
            + ("" if args.all else " (--all shows offline ones too)")
        )
    return EXIT_OK if rows else EXIT_NONE
