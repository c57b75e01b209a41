"""`swarm state migrate|check`: every durable store a gateway (config.yaml) or a provider node
(provider.toml) keeps, and the gateways' Redis."""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from client.storage import (
    Schema,
    SchemaStatus,
    SchemaTooNew,
    StorageError,
    is_postgres_url,
    migrate,
    open_store,
    shown,
    sqlite_path,
    status,
)

from .gateway.config import load_config
from .gateway.errors import ConfigError

#: Where packages above router say which stores their configuration names (provider: its job
#: store), by the option's name: ``provider`` answers ``--provider-config``.
SOURCE_GROUP = "nostr_swarm.state_sources"

Stores = list[tuple[str, tuple[Schema, ...]]]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "state",
        help="create, upgrade and check the durable stores (SQLite or PostgreSQL) and Redis",
        description="A gateway keeps spend, reservations, payments of unknown outcome and "
        "admin-made keys in `state.url` (SQLite by default, PostgreSQL to share them between "
        "gateways; on PostgreSQL also the swarm's payment and reputation ledgers) and counts "
        "key limits in `state.redis`; a provider node keeps its job store in `[state] url` or "
        "`node.store`. Each store's schema is versioned. `migrate` brings every store to this "
        "code's version (gateways and nodes also do it when they start); `check` changes "
        "nothing and says what is wrong: a store that does not answer, a schema behind this "
        "code (run migrate) or ahead of it (a newer release migrated it). Exit code 0 when "
        "everything is in order, 1 otherwise, 2 for a configuration that cannot be read.",
    )
    actions = p.add_subparsers(dest="state_command", metavar="ACTION", required=True)
    for name, help_text in (
        ("migrate", "create or upgrade every store's schema, then print the versions"),
        ("check", "print every store's schema version and what it holds; say what is wrong"),
    ):
        a = actions.add_parser(name, help=help_text, description=help_text)
        a.add_argument("--config", "-c", metavar="FILE", help="a gateway's config.yaml")
        a.add_argument("--provider-config", metavar="FILE", help="a provider node's provider.toml")
        a.add_argument("--json", action="store_true", help="print JSON")
        a.set_defaults(handler=_run)


def gateway_stores(target: str) -> Stores:
    """What a gateway keeps at ``state.url``: its spend book and key records, and on PostgreSQL
    also its swarm client's payment and reputation ledgers (shared by every gateway)."""
    from client.customer.reputation import SCHEMA as REPUTATION
    from client.wallet.payment_ledger import SCHEMA as PAYMENTS

    from .gateway.key_db import SCHEMA as KEYS
    from .spend import SCHEMA as SPEND

    schemas = (SPEND, KEYS, PAYMENTS, REPUTATION) if is_postgres_url(target) else (SPEND, KEYS)
    return [(target, schemas)]


def _source(name: str, path: str) -> Stores:
    found = [ep for ep in entry_points(group=SOURCE_GROUP) if ep.name == name]
    if not found:
        raise ConfigError("", f"--{name}-config: the {name} package is not installed")
    try:
        source = found[0].load()
    except ImportError as exc:
        msg = f"--{name}-config: the {name} package cannot be loaded: {exc}"
        raise ConfigError("", msg) from None
    stores: Stores = source(path)
    return stores


def _run(args: argparse.Namespace) -> int:
    if not args.config and not args.provider_config:
        print("swarm state: error: give --config, --provider-config or both", file=sys.stderr)
        return 2
    stores: Stores = []
    redis_url = None
    try:
        if args.config:
            cfg = load_config(args.config)
            stores += gateway_stores(cfg.state.target())
            redis_url = cfg.state.redis
        if args.provider_config:
            stores += _source("provider", args.provider_config)
    except ValueError as exc:  # a ConfigError, the gateway's or the provider's
        print(f"swarm state: error: {exc}", file=sys.stderr)
        return 2
    reports = [_store(target, schemas, args.state_command) for target, schemas in stores]
    out: dict[str, Any] = {"stores": reports}
    ok = all(not r["problems"] for r in reports)
    if redis_url and args.state_command == "check":
        out["redis"] = _redis(redis_url)
        ok = ok and out["redis"] == "ok"
    out["ok"] = ok
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        _print(out, args.state_command)
    return 0 if ok else 1


def _store(target: str, schemas: tuple[Schema, ...], action: str) -> dict[str, Any]:
    """One store: open it, migrate or read each schema's version, and (check) what it holds."""
    report: dict[str, Any] = {
        "store": shown(target),
        "shared": is_postgres_url(target),
        "schemas": [],
        "problems": [],
    }
    path = sqlite_path(target)
    if action == "check" and path is not None and not Path(path).exists():
        report["problems"].append(f"{path} does not exist yet: run swarm state migrate")
        return report
    try:
        store = open_store(target, lock=schemas[0].lock)
    except StorageError as exc:  # StateUnavailable: PostgreSQL does not answer
        report["problems"].append(f"unreachable: {exc}")
        return report
    try:
        for schema in schemas:
            try:
                if action == "migrate":
                    before = migrate(store, schema)
                    entry = {
                        "component": schema.component,
                        "found": schema.version,
                        "known": schema.version,
                        "state": "current",
                        "migrated_from": before.found,
                    }
                else:
                    st = status(store, schema)
                    entry = _status(st)
                    if st.state == "behind":
                        report["problems"].append(
                            f"{schema.component}: schema version {st.found}, this code's is "
                            f"{st.known}: run swarm state migrate"
                        )
                    elif st.state == "ahead":
                        report["problems"].append(
                            f"{schema.component}: schema version {st.found} is newer than "
                            f"this code's ({st.known}): run the release that migrated it"
                        )
            except SchemaTooNew as exc:
                entry = {
                    "component": schema.component,
                    "found": exc.found,
                    "known": exc.known,
                    "state": "ahead",
                }
                report["problems"].append(str(exc))
            except StorageError as exc:
                entry = {"component": schema.component, "state": "unreachable"}
                report["problems"].append(f"unreachable: {exc}")
            report["schemas"].append(entry)
    finally:
        store.close()
    spend = next((s for s in report["schemas"] if s["component"] == "spend"), None)
    if action == "check" and spend is not None and spend["state"] == "current":
        _spend_figures(target, report)
    return report


def _status(st: SchemaStatus) -> dict[str, Any]:
    return {"component": st.component, "found": st.found, "known": st.known, "state": st.state}


def _spend_figures(target: str, report: dict[str, Any]) -> None:
    from .spend import SpendBook

    try:
        book = SpendBook(target)  # at the current version: opening changes nothing
    except StorageError as exc:
        report["problems"].append(f"unreachable: {exc}")
        return
    try:
        report["accounts"] = [
            {
                "name": st.name,
                "spent_msats": st.spent_msats,
                "reserved_msats": st.reserved_msats,
                "pending_msats": st.pending_msats,
                "budget_msats": st.budget_msats,
            }
            for st in book.statuses()
        ]
        report["pending_payments"] = len(book.pending())
        report["problems"] += book.audit()
    except StorageError as exc:
        report["problems"].append(f"unreachable: {exc}")
    finally:
        book.close()


def _print(out: dict[str, Any], action: str) -> None:
    for r in out["stores"]:
        print(f"store: {r['store']}")
        for s in r["schemas"]:
            if s["state"] == "unreachable":
                continue
            line = f"  {s['component']:<12} schema version {s['found']} of {s['known']}"
            if "migrated_from" in s and s["migrated_from"] != s["found"]:
                line += f" (migrated from {s['migrated_from']})"
            print(f"{line}: {s['state']}")
        for acct in r.get("accounts", []):
            print(
                f"  {acct['name']:<24} spent {acct['spent_msats'] // 1000} sats, held "
                f"{(acct['reserved_msats'] + acct['pending_msats']) // 1000} sats"
            )
        if "pending_payments" in r:
            print(f"  payments of unknown outcome: {r['pending_payments']}")
        for problem in r["problems"]:
            print(f"  PROBLEM: {problem}")
    if "redis" in out:
        print(f"redis: {out['redis']}")
    if out["ok"]:
        print("every schema is up to date" if action == "migrate" else "everything is in order")


def _redis(url: str) -> str:
    try:
        import redis

        redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2).ping()
    except Exception as exc:  # any failure is the answer
        return f"unavailable: {exc}"
    return "ok"
