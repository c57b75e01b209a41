"""`swarm state migrate|check`: the gateway's durable state (state.url, state.redis)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .gateway.config import load_config
from .gateway.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "state",
        help="create, upgrade and check the gateway's state store (SQLite or PostgreSQL)",
        description="The gateway keeps spend, reservations, payments of unknown outcome and "
        "admin-made keys in `state.url` (SQLite by default, PostgreSQL to share them between "
        "gateways) and counts key limits in `state.redis`. `migrate` creates or upgrades the "
        "schema (the gateway also does it when it starts); `check` connects to both and prints "
        "what they hold. Exit code 0 when everything answers, 1 otherwise.",
    )
    actions = p.add_subparsers(dest="state_command", metavar="ACTION", required=True)
    for name, help_text in (
        ("migrate", "create or upgrade the schema, then say which version it is at"),
        ("check", "connect to the state store and Redis; print accounts and pending payments"),
    ):
        a = actions.add_parser(name, help=help_text, description=help_text)
        a.add_argument("--config", "-c", required=True, metavar="FILE", help="gateway config")
        a.add_argument("--json", action="store_true", help="print JSON")
        a.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"swarm state: error: {exc}", file=sys.stderr)
        return 2
    from .gateway.key_db import KeyRecords
    from .spend import SCHEMA_VERSION, SpendBook
    from .state_db import StateUnavailable

    target = cfg.state.target()
    shown = target.split("@")[-1] if "://" in target else target  # no password on screen
    out: dict[str, Any] = {"store": shown, "schema_version": SCHEMA_VERSION}
    ok = True
    try:
        book = SpendBook(target)  # creates or upgrades the schema
        KeyRecords(target).close()
        out["shared"] = book.shared
        if args.state_command == "check":
            out["accounts"] = [
                {
                    "name": st.name,
                    "spent_msats": st.spent_msats,
                    "reserved_msats": st.reserved_msats,
                    "pending_msats": st.pending_msats,
                    "budget_msats": st.budget_msats,
                }
                for st in book.statuses()
            ]
            out["pending_payments"] = len(book.pending())
            out["problems"] = book.audit()
            ok = not out["problems"]
        book.close()
    except StateUnavailable as exc:
        out["error"] = str(exc)
        ok = False
    if args.state_command == "check" and cfg.state.redis:
        out["redis"] = _redis(cfg.state.redis)
        ok = ok and out["redis"] == "ok"
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"state store: {shown} (schema version {SCHEMA_VERSION})")
        if "error" in out:
            print(f"  unavailable: {out['error']}")
        for acct in out.get("accounts", []):
            print(
                f"  {acct['name']:<24} spent {acct['spent_msats'] // 1000} sats, held "
                f"{(acct['reserved_msats'] + acct['pending_msats']) // 1000} sats"
            )
        if "pending_payments" in out:
            print(f"  payments of unknown outcome: {out['pending_payments']}")
        for problem in out.get("problems", []):
            print(f"  PROBLEM: {problem}")
        if "redis" in out:
            print(f"redis: {out['redis']}")
        if args.state_command == "migrate" and ok:
            print("schema is up to date")
    return 0 if ok else 1


def _redis(url: str) -> str:
    try:
        import redis

        redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2).ping()
    except Exception as exc:  # any failure is the answer
        return f"unavailable: {exc}"
    return "ok"
