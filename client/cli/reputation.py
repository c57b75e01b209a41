"""`swarm reputation`: what this customer's ledger remembers about providers; forget it."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from client.cli.common import add_json_option, add_key_option
from client.customer.directory import npub_of
from client.customer.reputation import (
    LEDGER_ENV,
    ProviderRecord,
    ReputationLedger,
    default_ledger_path,
)
from client.nostr.errors import InvalidKey, ReputationError
from client.nostr.keys import Keys, parse_pubkey

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2

EPILOG = f"""\
The ledger is updated by every SwarmClient completion made with a reputation ledger (see
docs/discovery.md). Default file: ${LEDGER_ENV}, else ~/.local/share/nostr-swarm/reputation.sqlite.
Records are per customer key: --key (or SWARM_KEY) picks yours; without it the file's only
customer is used. Counts decay (half-life 14 days), so they are shown with decimals.

exit codes: 0 done; 1 no record of that provider; 2 bad arguments or unreadable ledger.

examples:
  swarm reputation show                 # every provider, best first
  swarm reputation show npub1…          # one provider in detail
  swarm reputation reset npub1…         # forget one provider
  swarm reputation reset --yes          # forget every provider
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "reputation",
        help="show or reset the providers' reputation ledger",
        description="Show or reset what this customer's reputation ledger remembers about "
        "providers: results, agreement with the quorum, dissent, timeouts, errors, latency, "
        "price and the score used to choose providers.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    acts = p.add_subparsers(dest="reputation_command", metavar="ACTION", required=True)
    show = acts.add_parser(
        "show",
        help="show one provider's record, or every record",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("npub", nargs="?", help="provider (npub1… or hex); default: every provider")
    _common(show)
    add_json_option(show)
    show.set_defaults(handler=_show)
    reset = acts.add_parser(
        "reset",
        help="forget one provider, or (with --yes) every provider",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reset.add_argument("npub", nargs="?", help="provider (npub1… or hex) to forget")
    _common(reset)
    reset.add_argument("--yes", action="store_true", help="needed to forget every provider")
    reset.set_defaults(handler=_reset)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ledger",
        metavar="PATH",
        help=f"ledger file (default: ${LEDGER_ENV} or "
        "~/.local/share/nostr-swarm/reputation.sqlite)",
    )
    add_key_option(p, what="whose records")
    p.add_argument("--customer", metavar="NPUB", help="whose records, by public key")


def open_ledger(args: argparse.Namespace, *, create: bool = False) -> ReputationLedger:
    """The ledger and customer the arguments name. Raises ValueError with a message for the
    user (bad key, no such file, several customers and none chosen)."""
    given = getattr(args, "ledger", None)
    path = Path(given).expanduser() if given else default_ledger_path()
    if not create and not path.exists():
        raise ValueError(f"no reputation ledger at {path} (nothing recorded yet?)")
    customer = _customer(args)
    try:
        if customer is None:
            with ReputationLedger(path) as probe:
                found = probe.customers()
            if len(found) > 1:
                raise ValueError(
                    f"{path} holds records of {len(found)} customers: choose one with --key or "
                    "--customer (" + ", ".join(npub_of(c)[:16] + "…" for c in found) + ")"
                )
            customer = found[0] if found else ""
        return ReputationLedger(path, customer=customer)
    except ReputationError as exc:
        raise ValueError(str(exc)) from exc


def _customer(args: argparse.Namespace) -> str | None:
    try:
        if getattr(args, "customer", None):
            return parse_pubkey(args.customer)
        secret = getattr(args, "key", None) or os.environ.get("SWARM_KEY")
        return Keys.from_secret(secret).public_key if secret else None
    except InvalidKey as exc:
        raise ValueError(f"bad key: {exc}") from exc


def record_dict(rec: ProviderRecord, score: float) -> dict[str, Any]:
    return {
        "pubkey": rec.provider,
        "npub": npub_of(rec.provider),
        "score": round(score, 4),
        "jobs": rec.jobs,
        "results": round(rec.results, 3),
        "agreed": round(rec.agreed, 3),
        "dissented": round(rec.dissented, 3),
        "unmatched": round(rec.unmatched, 3),
        "timeouts": round(rec.timeouts, 3),
        "errors": round(rec.errors, 3),
        "agreement_rate": rec.agreement_rate,
        "latency_ms": rec.latency_ms,
        "price_msats": rec.price_msats,
        "paid_msats": rec.paid_msats,
        "first_seen": rec.first_seen,
        "last_seen": rec.last_seen,
    }


def _ago(t: float, now: float) -> str:
    if not t:
        return "never"
    s = max(0.0, now - t)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.0f}{unit} ago"
    return f"{s:.0f}s ago"


def _table(ledger: ReputationLedger, records: list[ProviderRecord]) -> Table:
    now = time.time()
    t = Table(title=f"reputation ({ledger.path})", title_justify="left")
    for col, justify in (
        ("provider", "left"),
        ("score", "right"),
        ("jobs", "right"),
        ("agreed", "right"),
        ("dissent", "right"),
        ("timeouts", "right"),
        ("errors", "right"),
        ("latency ms", "right"),
        ("price sats", "right"),
        ("paid sats", "right"),
        ("last seen", "right"),
    ):
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in records:
        score = r.score_with(ledger.weights)
        style = "green" if score >= 0.8 else "red" if score < 0.4 else "yellow"
        npub = npub_of(r.provider)
        t.add_row(
            npub[:14] + "…" + npub[-4:],
            f"[{style}]{score:.2f}[/]",
            str(r.jobs),
            f"{r.agreed:.1f}",
            f"{r.dissented + r.unmatched:.1f}",
            f"{r.timeouts:.1f}",
            f"{r.errors:.1f}",
            f"{r.latency_ms:.0f}" if r.latency_ms is not None else "-",
            f"{r.price_msats / 1000:.1f}" if r.price_msats is not None else "-",
            f"{r.paid_msats // 1000}",
            _ago(r.last_seen, now),
        )
    return t


def _show(args: argparse.Namespace) -> int:
    out, err = Console(highlight=False), Console(stderr=True, highlight=False)
    if not out.is_terminal:  # piped: do not squeeze the table into 80 columns
        out = Console(highlight=False, width=160)
    try:
        provider = parse_pubkey(args.npub) if args.npub else None
        ledger = open_ledger(args)
    except (InvalidKey, ValueError) as exc:
        err.print(f"swarm reputation show: {exc}")
        return EXIT_USAGE
    with ledger:
        if provider is not None:
            rec = ledger.get(provider)
            if rec is None:
                err.print(f"swarm reputation show: no record of {npub_of(provider)}")
                return EXIT_NOT_FOUND
            records = [rec]
        else:
            records = ledger.records()
        if args.json:
            data = [record_dict(r, r.score_with(ledger.weights)) for r in records]
            print(json.dumps(data[0] if provider is not None else data, indent=2))
        elif not records:
            err.print("no providers on record yet")
        else:
            out.print(_table(ledger, records))
    return EXIT_OK


def _reset(args: argparse.Namespace) -> int:
    err = Console(stderr=True, highlight=False)
    try:
        provider = parse_pubkey(args.npub) if args.npub else None
        if provider is None and not args.yes:
            raise ValueError("resetting every provider needs --yes (or name one npub)")
        ledger = open_ledger(args)
    except (InvalidKey, ValueError) as exc:
        err.print(f"swarm reputation reset: {exc}")
        return EXIT_USAGE
    with ledger:
        gone = ledger.reset(provider)
    if provider is not None and not gone:
        err.print(f"swarm reputation reset: no record of {npub_of(provider)}")
        return EXIT_NOT_FOUND
    err.print(f"forgot {gone} provider record(s)")
    return EXIT_OK
